//! Command-line helpers for the examples: arguments read with `args_os` (an argument that is
//! not valid UTF-8 is an error message, not a panic as `std::env::args` gives), flag values
//! parsed with the flag named, and errors printed with `Display` rather than `main`'s `Debug`.
// Each example uses part of this module.
#![allow(dead_code)]

use std::error::Error;
use std::fmt::Display;
use std::process::ExitCode;
use std::str::FromStr;

/// The arguments after the program name.
pub fn utf8_args() -> Result<Vec<String>, String> {
    std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument `{}` is not valid UTF-8", a.to_string_lossy()))
        })
        .collect()
}

/// `value` parsed as the value of `flag`; the error names both.
pub fn parse<T: FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: Display,
{
    value.parse().map_err(|e| format!("{flag} {value:?}: {e}"))
}

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
