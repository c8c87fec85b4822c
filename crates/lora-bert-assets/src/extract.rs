//! Unpacking wheels (zip) and `.tar.gz`/`.tgz` archives, refusing entries that would escape
//! the target directory.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::io_err;
use crate::{AssetError, Package};

/// The archive formats this crate unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    Zip,
    TarGz,
}

/// Tells the archive format from the file name.
pub(crate) fn kind_of(package: &Package, archive: &Path) -> Result<ArchiveKind, AssetError> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".whl") || name.ends_with(".zip") {
        Ok(ArchiveKind::Zip)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Ok(ArchiveKind::TarGz)
    } else {
        Err(AssetError::Unsupported {
            package: package.to_string(),
            what: format!(
                "archive {} (only .whl/.zip and .tar.gz/.tgz are unpacked)",
                archive.display()
            ),
        })
    }
}

/// Unpacks `archive` into the existing directory `dest`.
pub(crate) fn extract(kind: ArchiveKind, archive: &Path, dest: &Path) -> Result<(), AssetError> {
    match kind {
        ArchiveKind::Zip => extract_zip(archive, dest),
        ArchiveKind::TarGz => extract_tar_gz(archive, dest),
    }
}

fn extract_zip(archive: &Path, dest: &Path) -> Result<(), AssetError> {
    let zip_err = |source| AssetError::Archive {
        path: archive.to_path_buf(),
        source,
    };
    let file = File::open(archive).map_err(io_err(archive))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(zip_err)?;
        let shown = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("<entry {index}>"));
        let unsafe_entry = |reason| AssetError::UnsafeEntry {
            archive: archive.to_path_buf(),
            entry: shown.clone(),
            reason,
        };
        let Some(relative) = entry.enclosed_name() else {
            return Err(unsafe_entry("its path leaves the extraction directory"));
        };
        if entry.is_symlink() {
            return Err(unsafe_entry("links are not extracted"));
        }
        let out = dest.join(relative);
        if entry.is_dir() {
            fs::create_dir_all(&out).map_err(io_err(&out))?;
        } else {
            copy_out(&mut entry, &out, |e| zip_err(zip::result::ZipError::Io(e)))?;
        }
    }
    Ok(())
}

fn extract_tar_gz(archive: &Path, dest: &Path) -> Result<(), AssetError> {
    let file = File::open(archive).map_err(io_err(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    for entry in tar.entries().map_err(io_err(archive))? {
        let mut entry = entry.map_err(io_err(archive))?;
        let path = entry.path().map_err(io_err(archive))?.into_owned();
        let unsafe_entry = |reason| AssetError::UnsafeEntry {
            archive: archive.to_path_buf(),
            entry: path.display().to_string(),
            reason,
        };
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let Some(relative) = enclosed(&path) else {
            return Err(unsafe_entry("its path leaves the extraction directory"));
        };
        let out = dest.join(relative);
        if kind.is_dir() {
            fs::create_dir_all(&out).map_err(io_err(&out))?;
        } else if kind.is_file() || kind.is_contiguous() {
            copy_out(&mut entry, &out, io_err(archive))?;
        } else if kind.is_symlink() || kind.is_hard_link() {
            return Err(unsafe_entry("links are not extracted"));
        } else {
            return Err(unsafe_entry("special files are not extracted"));
        }
    }
    Ok(())
}

/// `path` if it is relative and has no `..`, root or prefix component (`.` is dropped).
fn enclosed(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Copies one entry's bytes to the new file `out`; read errors (corrupt data) go through
/// `on_read`, write errors are reported against `out`.
fn copy_out(
    reader: &mut impl Read,
    out: &Path,
    on_read: impl FnOnce(io::Error) -> AssetError,
) -> Result<(), AssetError> {
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let mut file = File::create(out).map_err(io_err(out))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(on_read(e)),
        };
        file.write_all(&buf[..n]).map_err(io_err(out))?;
    }
    file.flush().map_err(io_err(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enclosed_refuses_escaping_paths() {
        assert_eq!(enclosed(Path::new("a/./b")), Some(PathBuf::from("a/b")));
        assert_eq!(
            enclosed(Path::new("package/x.txt")),
            Some("package/x.txt".into())
        );
        assert_eq!(enclosed(Path::new("../x")), None);
        assert_eq!(enclosed(Path::new("a/../../x")), None);
        assert_eq!(enclosed(Path::new("/etc/passwd")), None);
        assert_eq!(enclosed(Path::new(".")), None);
    }
}
