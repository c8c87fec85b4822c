//! Safetensors files as the workspace writes and reads them: one writer (atomic, any dtype)
//! for checkpoints, adapter groups, heads and caches, and one reader of named float tensors
//! that checks each tensor's shape and values as it is taken.
//!
//! ```
//! use lora_bert_encoder::tensor_file::{StoredTensor, TensorFile, write_safetensors};
//!
//! # fn main() -> Result<(), lora_bert_encoder::CheckpointError> {
//! let dir = std::env::temp_dir().join(format!("tensor-file-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("head.safetensors");
//! let weight = StoredTensor::f32(vec![2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
//! write_safetensors(&path, [("classifier.weight", &weight)], None)?;
//!
//! let mut file = TensorFile::read(&path)?;
//! assert_eq!(file.take("classifier.weight", &[2, 3])?, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
//! file.finish()?; // nothing left untaken
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::checkpoint::CheckpointError;

/// A tensor as a safetensors file stores it: dtype, shape and little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTensor {
    /// The element type.
    pub dtype: Dtype,
    /// The shape.
    pub shape: Vec<usize>,
    /// The elements, little-endian, row-major.
    pub data: Vec<u8>,
}

impl StoredTensor {
    /// A tensor of any dtype from its bytes (checked against the shape when written).
    pub fn new(dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) -> Self {
        Self { dtype, shape, data }
    }

    /// An `F32` tensor.
    pub fn f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self::new(Dtype::F32, shape, f32_bytes(values))
    }
}

/// The little-endian bytes of `values`, as safetensors stores F32 data.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes little-endian safetensors data of a float dtype (F32, F16, BF16, F64) into `f32`s;
/// `None` for any other dtype.
pub fn decode_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

/// The safetensors bytes of `tensors` (stored sorted by name) and one metadata entry: `meta`,
/// or `"format": "pt"` (what PyTorch's `safe_open` expects) when it is `None`. `path` only
/// names the file in errors.
///
/// One entry, because safetensors writes its metadata map in hash order: with two, the same
/// tensors could give other bytes on another run, and files are compared by checksum.
///
/// # Errors
///
/// [`CheckpointError::Write`] when a tensor's bytes do not match its dtype and shape.
pub fn safetensors_bytes<'a, N: AsRef<str> + 'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (N, &'a StoredTensor)>,
    meta: Option<(&str, String)>,
) -> Result<Vec<u8>, CheckpointError> {
    let write_err = |message: String| CheckpointError::Write {
        path: path.to_owned(),
        message,
    };
    let mut views = Vec::new();
    for (name, t) in tensors {
        let name = name.as_ref().to_owned();
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.data)
            .map_err(|e| write_err(format!("tensor `{name}`: {e}")))?;
        views.push((name, view));
    }
    let (key, value) = meta.unwrap_or(("format", "pt".to_owned()));
    let metadata = HashMap::from([(key.to_owned(), value)]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| write_err(e.to_string()))
}

/// Writes `tensors` and `meta` to `path` as [`safetensors_bytes`] serialises them,
/// atomically ([`write_atomically`]).
///
/// # Errors
///
/// As [`safetensors_bytes`]; [`CheckpointError::Io`] when the file cannot be written.
pub fn write_safetensors<'a, N: AsRef<str> + 'a>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (N, &'a StoredTensor)>,
    meta: Option<(&str, String)>,
) -> Result<(), CheckpointError> {
    let path = path.as_ref();
    write_atomically(path, &safetensors_bytes(path, tensors, meta)?)
}

/// Writes `bytes` to `path` atomically: to a temporary file in the same directory, synced,
/// then renamed over `path`. A reader never sees a partial file; a failed write leaves the
/// previous file (if any) in place and removes the temporary one.
///
/// # Errors
///
/// [`CheckpointError::Io`] naming `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    // Unique per process and per call, so concurrent writers never share a temporary file.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp{}-{n}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// The float tensors of a safetensors file, decoded to `f32` and taken one by one: each
/// [`take`](Self::take) checks a tensor's shape, and [`finish`](Self::finish) refuses a file
/// with tensors nobody took.
///
/// Every tensor must have a float dtype (F32, F16, BF16, F64) and finite values; anything
/// else is refused when the file is parsed, naming the tensor.
#[derive(Debug)]
pub struct TensorFile {
    path: PathBuf,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TensorFile {
    /// Parses safetensors `bytes` read from `path` (which names the file in errors).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Corrupt`] for bytes that are not a safetensors file;
    /// [`CheckpointError::Dtype`] and [`CheckpointError::NonFinite`] naming the tensor.
    pub fn parse(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self, CheckpointError> {
        Self::parse_renamed(path, bytes, str::to_owned)
    }

    /// [`parse`](Self::parse), with each tensor known by `rename(stored name)` (for files
    /// whose names carry optional prefixes).
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse); [`CheckpointError::Duplicate`] when two stored names rename
    /// alike (one of them would otherwise be silently unused).
    pub fn parse_renamed(
        path: impl Into<PathBuf>,
        bytes: &[u8],
        rename: impl Fn(&str) -> String,
    ) -> Result<Self, CheckpointError> {
        let path = path.into();
        let file = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut tensors = BTreeMap::new();
        let mut stored: BTreeMap<String, String> = BTreeMap::new();
        for (name, view) in file.tensors() {
            let renamed = rename(&name);
            if let Some(other) = stored.insert(renamed.clone(), name.clone()) {
                let (first, second) = if other < name {
                    (other, name)
                } else {
                    (name, other)
                };
                return Err(CheckpointError::Duplicate {
                    path,
                    first,
                    second,
                });
            }
            let values =
                decode_f32(view.dtype(), view.data()).ok_or_else(|| CheckpointError::Dtype {
                    path: path.clone(),
                    name: name.clone(),
                    dtype: format!("{:?}", view.dtype()),
                })?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(CheckpointError::NonFinite { path, name });
            }
            tensors.insert(renamed, (view.shape().to_vec(), values));
        }
        Ok(Self { path, tensors })
    }

    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`]; as [`parse`](Self::parse).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &bytes)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the tensors not taken yet.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Removes the tensor `name` and returns its values, checking its shape.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Missing`]; [`CheckpointError::Shape`].
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, CheckpointError> {
        let Some((actual, values)) = self.tensors.remove(name) else {
            return Err(CheckpointError::Missing {
                path: self.path.clone(),
                names: vec![name.to_owned()],
            });
        };
        if actual != shape {
            return Err(CheckpointError::Shape {
                path: self.path.clone(),
                name: name.to_owned(),
                expected: shape.to_vec(),
                actual,
            });
        }
        Ok(values)
    }

    /// Ends reading.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Unexpected`] when tensors are left that nobody took.
    pub fn finish(self) -> Result<(), CheckpointError> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        Err(CheckpointError::Unexpected {
            path: self.path,
            names: self.tensors.into_keys().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(tensors: &[(&str, StoredTensor)]) -> Vec<u8> {
        safetensors_bytes(
            Path::new("t"),
            tensors.iter().map(|(n, t)| (*n, t)),
            Some(("k", "v".to_owned())),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_with_metadata_and_dtypes() {
        let half: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let b = bytes(&[
            ("a", StoredTensor::f32(vec![1, 2], &[1.0, 2.0])),
            ("h", StoredTensor::new(Dtype::F16, vec![2], half)),
        ]);
        let (_, meta) = SafeTensors::read_metadata(&b).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta, HashMap::from([("k".to_owned(), "v".to_owned())]));
        let plain = safetensors_bytes(
            Path::new("p"),
            [("a", &StoredTensor::f32(vec![1], &[1.0]))],
            None,
        );
        let (_, plain) = SafeTensors::read_metadata(&plain.unwrap()).unwrap();
        let plain = plain.metadata().clone().unwrap();
        assert_eq!(
            plain,
            HashMap::from([("format".to_owned(), "pt".to_owned())])
        );
        let mut f = TensorFile::parse("t", &b).unwrap();
        assert_eq!(f.names().collect::<Vec<_>>(), ["a", "h"]);
        assert_eq!(f.take("h", &[2]).unwrap(), [1.5, -2.0]);
        assert!(matches!(
            f.take("a", &[2, 1]),
            Err(CheckpointError::Shape { .. })
        ));
        assert!(matches!(
            f.take("a", &[1, 2]),
            Err(CheckpointError::Missing { .. })
        ));
        f.finish().unwrap();
    }

    #[test]
    fn bad_files_are_refused_by_name() {
        let wrong = StoredTensor::new(Dtype::F32, vec![3], vec![0; 8]);
        let err = safetensors_bytes(Path::new("w.safetensors"), [("x", &wrong)], None).unwrap_err();
        assert!(matches!(err, CheckpointError::Write { .. }), "{err}");
        assert!(err.to_string().contains("w.safetensors"), "{err}");

        let nan = bytes(&[("x", StoredTensor::f32(vec![1], &[f32::NAN]))]);
        let err = TensorFile::parse("n", &nan).unwrap_err();
        assert!(matches!(err, CheckpointError::NonFinite { ref name, .. } if name == "x"));
        let ints = bytes(&[("i", StoredTensor::new(Dtype::I64, vec![1], vec![0; 8]))]);
        assert!(matches!(
            TensorFile::parse("i", &ints),
            Err(CheckpointError::Dtype { .. })
        ));
        assert!(matches!(
            TensorFile::parse("c", b"not safetensors"),
            Err(CheckpointError::Corrupt { .. })
        ));
        let twins = bytes(&[
            ("a", StoredTensor::f32(vec![1], &[1.0])),
            ("p.a", StoredTensor::f32(vec![1], &[2.0])),
        ]);
        let strip = |n: &str| n.trim_start_matches("p.").to_owned();
        assert!(matches!(
            TensorFile::parse_renamed("d", &twins, strip),
            Err(CheckpointError::Duplicate { .. })
        ));
        let left = TensorFile::parse("l", &twins).unwrap();
        assert!(matches!(
            left.finish(),
            Err(CheckpointError::Unexpected { .. })
        ));
    }
}
