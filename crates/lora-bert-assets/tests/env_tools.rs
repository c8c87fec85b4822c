//! The download step with missing or fake `python3`/`npm` binaries (`LORA_BERT_PYTHON`,
//! `LORA_BERT_NPM`). Environment variables are process-wide, so this file holds a single
//! test. No network: the fake binaries copy local archives.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use lora_bert_assets::{AssetCache, AssetError, Package, Source, sha256_file};

fn set(name: &str, value: &Path) {
    // SAFETY: the only test of this binary, and the variables are set while no other thread
    // of it runs.
    unsafe { std::env::set_var(name, value) }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn fake(name: &str, source: Source, archive: &Path) -> Package {
    Package {
        name: leak(format!("lora-bert-test-{name}")),
        version: "0.0.1",
        source,
        sha256: leak(sha256_file(archive).unwrap()),
    }
}

/// Writes an executable shell script.
#[cfg(unix)]
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A fake pip/npm: logs its arguments to `log` and copies `archive` into the directory given
/// after `-d` or `--pack-destination`.
#[cfg(unix)]
fn fake_downloader(dir: &Path, name: &str, archive: &Path, log: &Path) -> PathBuf {
    let body = format!(
        r#"echo "$@" >> '{log}'
prev=""
for a in "$@"; do
  if [ "$prev" = "-d" ] || [ "$prev" = "--pack-destination" ]; then dest="$a"; fi
  prev="$a"
done
sleep 0.2
cp '{archive}' "$dest/""#,
        log = log.display(),
        archive = archive.display()
    );
    script(dir, name, &body)
}

#[test]
fn download_tools_missing_failing_and_faked() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("cache");
    let cache = AssetCache::new(&root);

    let wheel = work.path().join("lora_bert_test-0.0.1-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(File::create(&wheel).unwrap());
    zip.start_file("pkg/data.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"from a fake pip").unwrap();
    zip.finish().unwrap();
    let package = fake("wheel", Source::PypiWheel, &wheel);
    let npm_package = Package {
        source: Source::Npm,
        ..package
    };

    // Missing interpreter / npm binary.
    let nowhere = work.path().join("no/such/python3");
    set("LORA_BERT_PYTHON", &nowhere);
    let err = cache.fetch(&package).unwrap_err();
    assert!(
        matches!(&err, AssetError::ToolMissing { tool, package: p, .. }
            if tool.contains("no/such/python3") && p == "lora-bert-test-wheel==0.0.1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("LORA_BERT_PYTHON"), "{err}");
    set("LORA_BERT_NPM", &work.path().join("no/such/npm"));
    let err = cache.fetch(&npm_package).unwrap_err();
    assert!(
        matches!(&err, AssetError::ToolMissing { tool, package: p, .. }
            if tool.contains("no/such/npm") && p == "lora-bert-test-wheel@0.0.1"),
        "{err:?}"
    );
    assert_eq!(cache.cached(&package), None);

    #[cfg(unix)]
    {
        // A Python without pip.
        let no_pip = script(
            work.path(),
            "python-no-pip",
            "echo '/usr/bin/python3: No module named pip' >&2; exit 1",
        );
        set("LORA_BERT_PYTHON", &no_pip);
        let err = cache.fetch(&package).unwrap_err();
        assert!(
            matches!(&err, AssetError::ToolMissing { tool, .. } if tool == "pip"),
            "{err:?}"
        );

        // pip runs and fails.
        let failing = script(
            work.path(),
            "python-failing",
            "echo 'noise' >&2; echo 'ERROR: No matching distribution found' >&2; exit 3",
        );
        set("LORA_BERT_PYTHON", &failing);
        let err = cache.fetch(&package).unwrap_err();
        let AssetError::DownloadFailed {
            package: p,
            status,
            stderr,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(p, "lora-bert-test-wheel==0.0.1");
        assert!(status.contains('3'), "{status}");
        assert!(
            stderr.ends_with("ERROR: No matching distribution found"),
            "{stderr}"
        );
        assert!(
            err.to_string().contains("lora-bert-test-wheel==0.0.1"),
            "{err}"
        );

        // pip "succeeds" without leaving an archive.
        let silent = script(work.path(), "python-silent", "exit 0");
        set("LORA_BERT_PYTHON", &silent);
        let err = cache.fetch(&package).unwrap_err();
        assert!(
            matches!(&err, AssetError::DownloadFailed { status, .. } if status.contains("0 files")),
            "{err:?}"
        );
        assert_eq!(cache.cached(&package), None);
        let leftovers: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // A working fake pip, four threads at once: one download, one directory.
        let log = work.path().join("pip.log");
        let pip = fake_downloader(work.path(), "python-fake", &wheel, &log);
        set("LORA_BERT_PYTHON", &pip);
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (root, barrier) = (root.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    AssetCache::new(root).fetch(&package)
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
            "from a fake pip"
        );
        let calls = fs::read_to_string(&log).unwrap();
        assert_eq!(calls.lines().count(), 1, "{calls}");
        for arg in [
            "-m pip download lora-bert-test-wheel==0.0.1 --no-deps --only-binary :all:",
            "--disable-pip-version-check",
            "--quiet",
            " -d ",
        ] {
            assert!(calls.contains(arg), "{arg:?} not in {calls}");
        }
        assert!(
            !dirs[0]
                .join("lora_bert_test-0.0.1-py3-none-any.whl")
                .exists()
        );

        // An sdist and an npm tarball through their fake clients.
        let tgz = work.path().join("lora-bert-test-0.0.1.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(File::create(&tgz).unwrap(), Default::default());
            let mut tar = tar::Builder::new(gz);
            let mut header = tar::Header::new_gnu();
            header.set_size(4);
            header.set_mode(0o644);
            tar.append_data(&mut header, "package/data.txt", &b"tgz!"[..])
                .unwrap();
            tar.into_inner().unwrap().finish().unwrap();
        }
        let sdist = fake("sdist", Source::PypiSdist, &tgz);
        let npm = Package {
            name: "@lora-bert-test/npm",
            ..fake("npm", Source::Npm, &tgz)
        };
        set(
            "LORA_BERT_PYTHON",
            &fake_downloader(work.path(), "python-sdist", &tgz, &log),
        );
        let dir = cache.fetch(&sdist).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("package/data.txt")).unwrap(),
            "tgz!"
        );
        set(
            "LORA_BERT_NPM",
            &fake_downloader(work.path(), "npm-fake", &tgz, &log),
        );
        let dir = cache.fetch(&npm).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("package/data.txt")).unwrap(),
            "tgz!"
        );
        let calls = fs::read_to_string(&log).unwrap();
        assert!(
            calls.contains("lora-bert-test-sdist==0.0.1 --no-deps --no-binary :all:"),
            "{calls}"
        );
        assert!(calls.contains("pack @lora-bert-test/npm@0.0.1"), "{calls}");
        assert!(calls.contains("--pack-destination"), "{calls}");
    }
}
