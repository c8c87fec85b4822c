//! The probe protocol's features on disk: each split of each task is encoded once per
//! backbone, route and layer, and read back by every later probe (another fraction or seed,
//! another invocation, a task with the same sentences: Brown POS and Brown names share theirs).
//!
//! A file is keyed by what its states depend on: the backbone's weights (the SHA-256 of its
//! files), the route, the layer, how states are kept (every token's, or mean-pooled) and the
//! token ids of every row. The key's hash names the file, and the key itself is kept in the
//! file's metadata; a file whose key is not the one asked for (copied from another folder,
//! say) is refused, never read as if it were. Files are written to a temporary name and
//! renamed, so an interrupted write leaves nothing behind.

use std::fmt;
use std::path::{Path, PathBuf};

use lora_bert::encoder::tensor_file::{StoredTensor, write_safetensors};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped whenever what a file holds changes meaning.
const VERSION: u32 = 1;

/// What a cached file's states depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub version: u32,
    /// SHA-256 of the backbone's files ([`backbone_id`]).
    pub backbone: String,
    /// The route's name (`base`, or a group's).
    pub route: String,
    /// `last`, or `hidden-K`.
    pub layer: String,
    /// `tokens` (every token's state) or `mean` (mean-pooled per row).
    pub pooling: String,
    /// Width of a state.
    pub hidden: usize,
    /// Rows and the SHA-256 of their token ids.
    pub rows: usize,
    pub inputs: String,
}

impl Key {
    /// The key of `rows` (token ids per row) under the rest of the settings.
    pub fn new(
        backbone: &str,
        route: &str,
        layer: &str,
        pooling: &str,
        hidden: usize,
        rows: &[&[u32]],
    ) -> Key {
        let mut h = Sha256::new();
        for row in rows {
            h.update((row.len() as u64).to_le_bytes());
            for id in *row {
                h.update(id.to_le_bytes());
            }
        }
        Key {
            version: VERSION,
            backbone: backbone.to_owned(),
            route: route.to_owned(),
            layer: layer.to_owned(),
            pooling: pooling.to_owned(),
            hidden,
            rows: rows.len(),
            inputs: hex(&h.finalize()),
        }
    }

    fn file_name(&self) -> String {
        let json = serde_json::to_vec(self).expect("a key serialises");
        format!("{}.safetensors", &hex(&Sha256::digest(json))[..24])
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backbone {}…, route {}, layer {}, {} states, {} rows {}…",
            &self.backbone[..self.backbone.len().min(12)],
            self.route,
            self.layer,
            self.pooling,
            self.rows,
            &self.inputs[..self.inputs.len().min(12)]
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity of a model folder: the SHA-256 of its `*.json` and `*.safetensors` files
/// (adapter groups in subfolders included), by relative path.
pub fn backbone_id(dir: &Path) -> crate::Result<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> crate::Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path
                .extension()
                .is_some_and(|e| e == "json" || e == "safetensors")
            {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    if !files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "safetensors"))
    {
        return Err(format!("{}: no weights to identify", dir.display()).into());
    }
    let mut h = Sha256::new();
    for file in &files {
        let name = file.strip_prefix(dir).unwrap_or(file).to_string_lossy();
        h.update(name.as_bytes());
        h.update(lora_bert::assets::sha256_file(file)?.as_bytes());
    }
    Ok(hex(&h.finalize()))
}

/// Why a cached file was not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("feature cache {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "feature cache {path} holds states of another model or data ({found}; wanted {wanted}); \
         remove it"
    )]
    OtherKey {
        path: PathBuf,
        found: Box<Key>,
        wanted: Box<Key>,
    },
}

/// A folder of cached states.
pub struct FeatureCache {
    dir: PathBuf,
}

impl FeatureCache {
    pub fn new(dir: impl Into<PathBuf>) -> FeatureCache {
        FeatureCache { dir: dir.into() }
    }

    pub fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// The states of `key`, `[total, hidden]` row-major, when cached: `Ok(None)` when there
    /// is no file; an error when the file is unreadable, damaged or made under another key.
    pub fn get(&self, key: &Key) -> crate::Result<Option<Vec<f32>>> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display()).into()),
        };
        let corrupt = |message: String| CacheError::Corrupt {
            path: path.clone(),
            message,
        };
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let found: Key = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("key"))
            .ok_or_else(|| corrupt("no key in its metadata".into()))
            .and_then(|k| serde_json::from_str(k).map_err(|e| corrupt(format!("its key: {e}"))))?;
        if &found != key {
            return Err(CacheError::OtherKey {
                path,
                found: Box::new(found),
                wanted: Box::new(key.clone()),
            }
            .into());
        }
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let states = tensors
            .tensor("states")
            .map_err(|e| corrupt(format!("tensor `states`: {e}")))?;
        let shape = states.shape();
        if states.dtype() != Dtype::F32 || shape.len() != 2 || shape[1] != key.hidden {
            return Err(corrupt(format!(
                "tensor `states` is {:?} {shape:?}, not F32 [_, {}]",
                states.dtype(),
                key.hidden
            ))
            .into());
        }
        let values: Vec<f32> = states
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(corrupt(format!("a non-finite state at value {bad}")).into());
        }
        Ok(Some(values))
    }

    /// Writes `states` (`[total, hidden]` row-major) under `key`, atomically.
    pub fn put(&self, key: &Key, states: &[f32]) -> crate::Result<()> {
        if key.hidden == 0 || !states.len().is_multiple_of(key.hidden) {
            return Err(format!(
                "{} values are not rows of {} states",
                states.len(),
                key.hidden
            )
            .into());
        }
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(key);
        let states = StoredTensor::f32(vec![states.len() / key.hidden, key.hidden], states);
        write_safetensors(
            &path,
            [("states", &states)],
            Some(("key", serde_json::to_string(key)?)),
        )?;
        Ok(())
    }

    /// The cached states of `key`, or `compute`'s, cached for next time. Returns whether they
    /// were read from the cache.
    pub fn get_or(
        &self,
        key: &Key,
        compute: impl FnOnce() -> crate::Result<Vec<f32>>,
    ) -> crate::Result<(Vec<f32>, bool)> {
        if let Some(states) = self.get(key)? {
            return Ok((states, true));
        }
        let states = compute()?;
        self.put(key, &states)?;
        Ok((states, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(backbone: &str, route: &str, rows: &[&[u32]]) -> Key {
        Key::new(backbone, route, "last", "tokens", 2, rows)
    }

    #[test]
    fn states_round_trip_and_other_keys_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::new(dir.path());
        let rows: [&[u32]; 2] = [&[101, 7, 102], &[101, 102]];
        let k = key("aa", "base", &rows);
        assert!(cache.get(&k).unwrap().is_none());
        let states: Vec<f32> = (0..10).map(|i| i as f32 * 0.5 - 1.0).collect();
        cache.put(&k, &states).unwrap();
        assert_eq!(cache.get(&k).unwrap().unwrap(), states);
        // Another backbone, group or input is another file.
        for other in [
            key("ab", "base", &rows),
            key("aa", "ner", &rows),
            key("aa", "base", &[&[101, 8, 102], &[101, 102]]),
            key("aa", "base", &[&[101, 7], &[102, 101, 102]]),
        ] {
            assert_ne!(cache.path(&other), cache.path(&k));
            assert!(cache.get(&other).unwrap().is_none());
        }
        let (again, hit) = cache.get_or(&k, || panic!("cached")).unwrap();
        assert!(hit);
        assert_eq!(again, states);
    }

    /// A file under the right name with another key (made from another backbone or group and
    /// copied in) is refused; so is a damaged one.
    #[test]
    fn a_file_of_another_key_or_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::new(dir.path());
        let rows: [&[u32]; 1] = [&[101, 102]];
        let (ours, theirs) = (key("aa", "ner", &rows), key("aa", "tc", &rows));
        cache.put(&theirs, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        std::fs::rename(cache.path(&theirs), cache.path(&ours)).unwrap();
        let err = cache.get(&ours).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("another model or data") && message.contains("route tc"),
            "{message}"
        );
        let bytes = std::fs::read(cache.path(&ours)).unwrap();
        for cut in [0, 7, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(cache.path(&ours), &bytes[..cut]).unwrap();
            assert!(cache.get(&ours).is_err(), "cut at {cut}");
        }
        assert!(cache.put(&ours, &[1.0, 2.0, 3.0]).is_err());
    }
}
