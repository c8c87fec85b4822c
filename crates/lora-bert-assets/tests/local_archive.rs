//! Installing from archives built here: sha256 checks, extraction, the path-traversal guard,
//! corrupt archives, cache reuse and concurrent installs. No network.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use lora_bert_assets::{AssetCache, AssetError, Package, Source, sha256_file};
use zip::write::SimpleFileOptions;

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A package that exists in no registry, pinned to `archive`'s sha256.
fn fake(name: &str, source: Source, archive: &Path) -> Package {
    Package {
        name: leak(format!("lora-bert-test-{name}")),
        version: "0.0.1",
        source,
        sha256: leak(sha256_file(archive).unwrap()),
    }
}

fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
    for (name, data) in entries {
        if name.ends_with('/') {
            zip.add_directory(*name, SimpleFileOptions::default())
                .unwrap();
        } else {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(data).unwrap();
        }
    }
    zip.finish().unwrap();
}

/// A `.tgz`; entry names are written raw, so unsafe ones can be made too.
fn write_tgz(path: &Path, entries: &[(&str, tar::EntryType, &[u8])]) {
    let gz = flate2::write::GzEncoder::new(File::create(path).unwrap(), Default::default());
    let mut tar = tar::Builder::new(gz);
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        if kind.is_symlink() {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn wheel(dir: &Path) -> PathBuf {
    let path = dir.join("lora_bert_test-0.0.1-py3-none-any.whl");
    write_zip(
        &path,
        &[
            ("pkg/", b""),
            ("pkg/data.txt", b"hello"),
            ("pkg/sub/weights.bin", &[7u8; 70_000]),
            ("pkg-0.0.1.dist-info/RECORD", b""),
        ],
    );
    path
}

/// The names in the cache root, sorted.
fn root_entries(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Asserts the cache root holds only package directories and lock files.
fn assert_no_leftovers(root: &Path) {
    for name in root_entries(root) {
        assert!(!name.starts_with(".tmp-"), "left over: {name}");
    }
}

#[test]
fn sha256_file_matches_known_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[u8], &str); 3] = [
        (
            b"",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            b"abc",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            &[b'a'; 1_000_000],
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
        ),
    ];
    for (i, (data, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("{i}.bin"));
        fs::write(&path, data).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), *expected);
    }
    let missing = dir.path().join("missing.bin");
    let err = sha256_file(&missing).unwrap_err();
    assert!(
        matches!(&err, AssetError::Io { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.bin"), "{err}");
}

#[test]
fn a_wheel_is_checked_extracted_and_reused() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("cache");
    let cache = AssetCache::new(&root);
    let archive = wheel(work.path());
    let package = fake("wheel", Source::PypiWheel, &archive);

    assert_eq!(cache.cached(&package), None);
    let dir = cache.install_archive(&package, &archive).unwrap();
    assert!(dir.starts_with(&root));
    assert_eq!(
        fs::read_to_string(dir.join("pkg/data.txt")).unwrap(),
        "hello"
    );
    assert_eq!(
        fs::read(dir.join("pkg/sub/weights.bin")).unwrap(),
        [7u8; 70_000]
    );
    assert!(dir.join(".complete").is_file());
    assert!(archive.is_file(), "the caller's archive is left in place");
    assert_eq!(cache.cached(&package), Some(dir.clone()));
    assert_no_leftovers(&root);

    // Reuse: neither the archive nor a download is needed any more.
    let gone = work.path().join("gone.whl");
    assert_eq!(cache.install_archive(&package, &gone).unwrap(), dir);
    assert_eq!(cache.fetch(&package).unwrap(), dir);
    assert_eq!(AssetCache::new(&root).cached(&package), Some(dir));
}

#[test]
fn a_wrong_archive_is_refused_before_extraction() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("cache");
    let cache = AssetCache::new(&root);
    let archive = wheel(work.path());
    let expected = "0123456789abcdef".repeat(4);
    let package = Package {
        sha256: leak(expected.clone()),
        ..fake("wrong-sha", Source::PypiWheel, &archive)
    };
    let err = cache.install_archive(&package, &archive).unwrap_err();
    let AssetError::ShaMismatch {
        path,
        expected: e,
        actual,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(path, &archive);
    assert_eq!(e, &expected);
    assert_eq!(actual, &sha256_file(&archive).unwrap());
    let message = err.to_string();
    for part in [
        &expected,
        actual,
        &"lora_bert_test-0.0.1-py3-none-any.whl".to_string(),
    ] {
        assert!(message.contains(part.as_str()), "{message}");
    }
    assert_eq!(cache.cached(&package), None);
    assert_no_leftovers(&root);
}

#[test]
fn zip_entries_escaping_the_directory_are_refused() {
    for name in ["../../../evil.txt", "pkg/../../../../evil.txt"] {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("cache");
        let cache = AssetCache::new(&root);
        let archive = work.path().join("evil-1.0-py3-none-any.whl");
        write_zip(&archive, &[("ok.txt", b"fine"), (name, b"gotcha")]);
        let package = fake("zip-traversal", Source::PypiWheel, &archive);
        let err = cache.install_archive(&package, &archive).unwrap_err();
        assert!(
            matches!(&err, AssetError::UnsafeEntry { entry, archive: a, .. } if entry == name && *a == archive),
            "{err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(cache.cached(&package), None);
        assert!(!work.path().join("evil.txt").exists());
        assert!(!root.join("evil.txt").exists());
        assert_no_leftovers(&root);
    }
}

#[test]
fn absolute_zip_entries_stay_inside_the_directory() {
    let work = tempfile::tempdir().unwrap();
    let cache = AssetCache::new(work.path().join("cache"));
    let archive = work.path().join("abs-1.0-py3-none-any.whl");
    let name = format!("/lora-bert-abs-test-{}.txt", std::process::id());
    write_zip(&archive, &[(name.as_str(), b"contained")]);
    let package = fake("zip-absolute", Source::PypiWheel, &archive);
    let dir = cache.install_archive(&package, &archive).unwrap();
    assert!(!Path::new(&name).exists());
    let inside = dir.join(name.trim_start_matches('/'));
    assert_eq!(fs::read_to_string(inside).unwrap(), "contained");
}

#[test]
fn a_corrupt_zip_is_an_archive_error() {
    let work = tempfile::tempdir().unwrap();
    let cache = AssetCache::new(work.path().join("cache"));
    let archive = work.path().join("corrupt-1.0-py3-none-any.whl");
    fs::write(&archive, b"PK\x03\x04 this is not really a zip file").unwrap();
    let package = fake("corrupt", Source::PypiWheel, &archive);
    let err = cache.install_archive(&package, &archive).unwrap_err();
    assert!(
        matches!(&err, AssetError::Archive { path, .. } if *path == archive),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("corrupt-1.0-py3-none-any.whl"),
        "{err}"
    );
    assert_eq!(cache.cached(&package), None);
}

#[test]
fn a_tgz_is_extracted_and_its_unsafe_entries_refused() {
    let work = tempfile::tempdir().unwrap();
    let cache = AssetCache::new(work.path().join("cache"));
    let regular = tar::EntryType::Regular;

    let good = work.path().join("good-1.0.0.tgz");
    write_tgz(
        &good,
        &[
            ("package/", tar::EntryType::Directory, b""),
            ("package/package.json", regular, b"{}"),
            ("package/data/a.txt", regular, b"spam"),
        ],
    );
    let package = fake("tgz", Source::Npm, &good);
    let dir = cache.install_archive(&package, &good).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("package/data/a.txt")).unwrap(),
        "spam"
    );

    for (name, kind) in [
        ("package/../../../evil.txt", regular),
        ("/abs-evil.txt", regular),
        ("package/link", tar::EntryType::Symlink),
    ] {
        let bad = work.path().join("bad-1.0.0.tar.gz");
        write_tgz(
            &bad,
            &[("package/ok.txt", regular, b"ok"), (name, kind, b"x")],
        );
        let package = fake("tgz-bad", Source::PypiSdist, &bad);
        let err = cache.install_archive(&package, &bad).unwrap_err();
        assert!(
            matches!(&err, AssetError::UnsafeEntry { entry, .. } if entry == name),
            "{name}: {err:?}"
        );
        assert_eq!(cache.cached(&package), None);
    }
    assert_no_leftovers(cache.root());
}

#[test]
fn unknown_archive_formats_are_unsupported() {
    let work = tempfile::tempdir().unwrap();
    let cache = AssetCache::new(work.path().join("cache"));
    let archive = work.path().join("thing-1.0.tar.bz2");
    fs::write(&archive, b"whatever").unwrap();
    let package = fake("bz2", Source::PypiSdist, &archive);
    let err = cache.install_archive(&package, &archive).unwrap_err();
    assert!(matches!(err, AssetError::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string().contains("lora-bert-test-bz2==0.0.1"),
        "{err}"
    );
}

#[test]
fn an_incomplete_directory_is_not_trusted() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("cache");
    let cache = AssetCache::new(&root);
    let archive = wheel(work.path());
    let package = fake("incomplete", Source::PypiWheel, &archive);

    // Learn where the package goes, then fake an interrupted, non-atomic copy there.
    let dir = cache.install_archive(&package, &archive).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    fs::create_dir_all(dir.join("pkg")).unwrap();
    fs::write(dir.join("pkg/data.txt"), "trunc").unwrap();
    assert_eq!(cache.cached(&package), None);

    assert_eq!(cache.install_archive(&package, &archive).unwrap(), dir);
    assert_eq!(
        fs::read_to_string(dir.join("pkg/data.txt")).unwrap(),
        "hello"
    );
    assert!(dir.join("pkg/sub/weights.bin").is_file());
    assert_no_leftovers(&root);
}

#[test]
fn concurrent_installs_agree_on_one_directory() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("cache");
    let archive = wheel(work.path());
    let package = fake("concurrent", Source::PypiWheel, &archive);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (root, archive, barrier) = (root.clone(), archive.clone(), barrier.clone());
            std::thread::spawn(move || {
                let cache = AssetCache::new(root);
                barrier.wait();
                cache.install_archive(&package, &archive)
            })
        })
        .collect();
    let dirs: Vec<PathBuf> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert!(dirs.iter().all(|d| *d == dirs[0]), "{dirs:?}");
    assert_eq!(
        fs::read_to_string(dirs[0].join("pkg/data.txt")).unwrap(),
        "hello"
    );
    assert_no_leftovers(&root);
    let packages: Vec<_> = root_entries(&root)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(packages.len(), 1, "{packages:?}");
}
