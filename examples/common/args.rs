//! Command-line arguments for the examples, read with `args_os`: an argument that is not
//! valid UTF-8 is an error message, not a panic (as `std::env::args` gives).

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
