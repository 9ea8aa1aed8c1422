//! Evaluates one function of crunch-math on every point of a file, for the accuracy check
//! (`math/accuracy/check.py`, run by `just accuracy`).
//!
//! Usage: `accuracy_eval FUNCTION INPUT OUTPUT`, where FUNCTION is exp, log, cdf, cdf_upper,
//! pdf or ppf and both files hold raw little-endian f64 values.

use std::process::ExitCode;

use crunch_math::F64x2;

fn function(name: &str) -> Option<fn(F64x2) -> F64x2> {
    Some(match name {
        "exp" => crunch_math::exp,
        "log" => crunch_math::log,
        "cdf" => crunch_math::cdf,
        "cdf_upper" => |x| crunch_math::cdf_both(x).1,
        "pdf" => crunch_math::pdf,
        "ppf" => crunch_math::ppf,
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, input, output] = args.as_slice() else {
        eprintln!("usage: accuracy_eval FUNCTION INPUT OUTPUT (raw little-endian f64 files)");
        return ExitCode::FAILURE;
    };
    let Some(f) = function(name) else {
        eprintln!("unknown function `{name}` (exp, log, cdf, cdf_upper, pdf, ppf)");
        return ExitCode::FAILURE;
    };
    let bytes = match std::fs::read(input) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("reading {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let xs: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let mut out = Vec::with_capacity(bytes.len());
    for pair in xs.chunks(2) {
        let v = f(F64x2::new(pair[0], *pair.get(1).unwrap_or(&pair[0]))).to_array();
        for y in &v[..pair.len()] {
            out.extend_from_slice(&y.to_le_bytes());
        }
    }
    if let Err(e) = std::fs::write(output, out) {
        eprintln!("writing {output}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
