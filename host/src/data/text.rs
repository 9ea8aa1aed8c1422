//! Text that kernels (or any other untrusted source) control, made safe to echo: control
//! characters, terminal escape sequences and bidirectional overrides are escaped, and long text
//! is cut to a length with the rest counted.

use std::fmt::Write;

/// The most characters of one untrusted message echoed to a terminal or a log.
pub const ECHO_CHARS: usize = 1000;

/// The most bytes of one kernel error message the host keeps (the rest is counted).
pub const MESSAGE_BYTES: usize = 16 * 1024;

/// `text` with every character that could change what a terminal shows written as an escape
/// (`\u{1b}`, `\0`, `\u{202e}`, ...), cut to at most `limit` characters.
pub fn escaped(text: &str, limit: usize) -> String {
    escape(text, limit, false)
}

/// As [`escaped`], but line breaks are kept (for multi-line text the host formatted itself, such
/// as a trap with its backtrace).
pub fn escaped_lines(text: &str, limit: usize) -> String {
    escape(text, limit, true)
}

fn escape(text: &str, limit: usize, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(text.len().min(limit * 2));
    for (count, (at, c)) in text.char_indices().enumerate() {
        if count == limit {
            let _ = write!(out, "... ({} more bytes)", text.len() - at);
            break;
        }
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Control characters (C0, DEL, C1), bidirectional marks, embeddings, overrides and isolates,
/// invisible separators and the byte-order mark.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `message` cut to at most [`MESSAGE_BYTES`] bytes (on a character boundary), saying how many
/// bytes were left off.
pub fn capped(mut message: String) -> String {
    if message.len() <= MESSAGE_BYTES {
        return message;
    }
    let mut end = MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = message.len() - end;
    message.truncate(end);
    let _ = write!(message, "... ({dropped} more bytes)");
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        let text = "red \u{1b}[31mNUL\0 rtl\u{202e}txt\nnext\u{85}";
        assert_eq!(
            escaped(text, 100),
            "red \\u{1b}[31mNUL\\0 rtl\\u{202e}txt\\nnext\\u{85}"
        );
        assert_eq!(escaped_lines("a\nb\u{7}", 100), "a\nb\\u{7}");
        assert_eq!(escaped("plain ünïcode", 100), "plain ünïcode");
    }

    #[test]
    fn long_text_is_cut_and_counted() {
        assert_eq!(escaped("abcdef", 4), "abcd... (2 more bytes)");
        let long = "é".repeat(MESSAGE_BYTES);
        let cut = capped(long);
        assert!(cut.len() < MESSAGE_BYTES + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!("... ({} more bytes)", MESSAGE_BYTES)));
        assert_eq!(capped("short".into()), "short");
    }
}
