//! What a Redis failure means for the caller: wait and retry (the link dropped, or the server is
//! loading, busy, failing over), or give up at once with one line that says what to change
//! (an untrusted certificate, wrong credentials, a missing ACL permission).

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Why a Redis operation failed, as callers of [`Redis`](super::Redis) see it. Every message is
/// one line.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis stayed unreachable (or busy) longer than the store's patience.
    #[error("Redis at {url} has been unavailable for {waited:.1?}; gave up (last error: {last})")]
    Unavailable {
        /// The URL, without its password.
        url: String,
        /// How long it waited.
        waited: Duration,
        /// The last error seen.
        last: String,
    },
    /// The store was told to stop waiting (the process is shutting down).
    #[error("stopped waiting for Redis at {url}: shutting down")]
    Stopped {
        /// The URL, without its password.
        url: String,
    },
    /// The server's TLS certificate is not trusted, or TLS failed in a way no retry fixes.
    #[error(
        "Redis at {url}: TLS failed ({detail}); if the server's certificate is signed by a private CA, set CRUNCH_REDIS_CA to that CA's PEM file"
    )]
    Tls {
        /// The URL, without its password.
        url: String,
        /// What TLS said.
        detail: String,
    },
    /// The server refused the user name or password.
    #[error(
        "Redis at {url} refused the credentials ({detail}); check the user and password in the URL (redis://USER:PASSWORD@HOST:PORT)"
    )]
    Authentication {
        /// The URL, without its password.
        url: String,
        /// What the server said.
        detail: String,
    },
    /// The ACL user may not run a command Crunch needs, or touch a key it needs.
    #[error(
        "Redis at {url} denied a command ({detail}); give the ACL user every command on the keys crunch:*, e.g. `ACL SETUSER USER ~crunch:* +@all`"
    )]
    Permission {
        /// The URL, without its password.
        url: String,
        /// What the server said (the first refusal, and how many more there were).
        detail: String,
    },
    /// Any other error from Redis (a wrong type, a script error...).
    #[error("Redis at {url}: {detail}")]
    Command {
        /// The URL, without its password.
        url: String,
        /// The error, in one line.
        detail: String,
        /// The server's error code (`WRONGTYPE`, `ERR`...), when it sent one.
        code: Option<String>,
    },
}

impl StoreError {
    /// Whether the failure ends the work of whoever met it: Redis is gone for good (as far as
    /// the store's patience goes) or refuses this client. A worker stops on these instead of
    /// logging them batch after batch.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Command { .. })
    }

    /// The fatal [`StoreError`] in `error`'s chain, if there is one.
    pub fn fatal_in(error: &anyhow::Error) -> Option<&StoreError> {
        error
            .chain()
            .filter_map(|e| e.downcast_ref::<StoreError>())
            .find(|e| e.is_fatal())
    }
}

/// What to do about a failed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Wait, reconnect and try again: the link dropped or timed out, or the server says it
    /// cannot serve now (LOADING, BUSY, TRYAGAIN, MASTERDOWN, CLUSTERDOWN, READONLY).
    Transient,
    /// No retry can fix it: give up at once.
    Unfixable,
    /// An answer to this command (a wrong type, a script error): the caller's business.
    Command,
}

/// Server error codes that mean "not now": the command was not run, and the same command will
/// work once the server has loaded its data, finished a script, or a failover has settled.
const WAIT_CODES: &[&str] = &[
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "READONLY",
];

/// Classifies a Redis error.
pub(crate) fn fault(e: &RedisError) -> Fault {
    if tls_error(e).is_some() {
        return Fault::Unfixable;
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed
        | ErrorKind::InvalidClientConfig
        | ErrorKind::Server(ServerErrorKind::NoPerm) => return Fault::Unfixable,
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::ReadOnly,
        )
        | ErrorKind::ClusterConnectionNotFound => return Fault::Transient,
        _ => {}
    }
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        return Fault::Transient;
    }
    match first_server_error(e) {
        Some((code, _, _)) if WAIT_CODES.contains(&code.as_str()) => Fault::Transient,
        Some((code, _, _)) if matches!(code.as_str(), "WRONGPASS" | "NOAUTH" | "NOPERM") => {
            Fault::Unfixable
        }
        _ => Fault::Command,
    }
}

/// The [`StoreError`] for an error that is not retried (or no longer).
pub(crate) fn store_error(url: &str, e: &RedisError) -> StoreError {
    let url = url.to_string();
    if let Some(tls) = tls_error(e) {
        return StoreError::Tls {
            url,
            detail: tls.to_string(),
        };
    }
    let server = first_server_error(e);
    let detail = match &server {
        Some((code, detail, more)) => {
            let mut text = format!("{code} {detail}").trim().to_string();
            if *more > 0 {
                text.push_str(&format!(" (and {more} more refused the same way)"));
            }
            text
        }
        None => one_line(&e.to_string()),
    };
    let code = server.map(|(code, _, _)| code);
    match (e.kind(), code.as_deref()) {
        (ErrorKind::Server(ServerErrorKind::NoPerm), _) | (_, Some("NOPERM")) => {
            StoreError::Permission { url, detail }
        }
        (ErrorKind::AuthenticationFailed, _) | (_, Some("WRONGPASS" | "NOAUTH")) => {
            StoreError::Authentication { url, detail }
        }
        _ => StoreError::Command { url, detail, code },
    }
}

/// The first server error of `e` (a pipeline's first failing command): its code, its detail,
/// and how many other commands failed too.
fn first_server_error(e: &RedisError) -> Option<(String, String, usize)> {
    let errors = e.clone().into_server_errors()?;
    let (_, first) = errors.first()?;
    Some((
        first.code().to_string(),
        one_line(first.details().unwrap_or_default()),
        errors.len() - 1,
    ))
}

/// The TLS error behind `e`, if a TLS failure caused it.
fn tls_error(e: &RedisError) -> Option<&rustls::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(mut err) = next {
        // The redis crate keeps an I/O error behind an `Arc`, which `source` hands out as is.
        if let Some(shared) = err.downcast_ref::<Shared>() {
            err = shared.as_ref();
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        next = err.source();
    }
    None
}

/// `text` on one line, at most 300 characters.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a server's `-CODE detail` reply becomes.
    fn server(code: &str, detail: &str) -> RedisError {
        redis::parse_redis_value(format!("-{code} {detail}\r\n").as_bytes())
            .expect("a reply")
            .extract_error()
            .expect_err("a server error")
    }

    #[test]
    fn not_now_answers_are_retried_and_refusals_are_not() {
        for code in WAIT_CODES {
            assert_eq!(fault(&server(code, "not now")), Fault::Transient, "{code}");
        }
        assert_eq!(fault(&server("NOPERM", "no")), Fault::Unfixable);
        assert_eq!(fault(&server("WRONGPASS", "no")), Fault::Unfixable);
        assert_eq!(fault(&server("WRONGTYPE", "no")), Fault::Command);
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(fault(&dropped), Fault::Transient);
        let untrusted = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert_eq!(fault(&untrusted), Fault::Unfixable);
        assert!(matches!(
            store_error("u", &untrusted),
            StoreError::Tls { .. }
        ));
    }

    #[test]
    fn a_refusal_is_one_line_that_says_what_to_change() {
        let e = store_error(
            "redis://u:***@h:1",
            &server("NOPERM", "User u has no permissions"),
        );
        assert!(matches!(e, StoreError::Permission { .. }), "{e}");
        let text = e.to_string();
        assert!(
            !text.contains('\n') && text.contains("ACL SETUSER"),
            "{text}"
        );
    }
}
