//! What the examples share besides their command lines (each parses its own with clap): errors
//! printed with `Display` rather than `main`'s `Debug`.

use std::error::Error;
use std::process::ExitCode;

/// The exit status of an example's `run`: its error, if any, printed as `error: ...` with the
/// errors that caused it, and status 1.
pub fn exit(result: Result<(), Box<dyn Error>>) -> ExitCode {
    let Err(e) = result else {
        return ExitCode::SUCCESS;
    };
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
