//! One shard of a teacher cache: its safetensors layout, written and read back.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use lora_bert_encoder::tensor_file::{StoredTensor, safetensors_bytes};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use serde::{Deserialize, Serialize};

use super::{CacheDtype, HASH_LEN, SentenceHash, ShardEntry, sha256_file};
use crate::error::io_err;
use crate::teacher::WordStates;
use crate::{Result, TrainError};

/// The shard's safetensors `__metadata__` key.
const META_KEY: &str = "lora_bert_teacher_cache";
/// Largest safetensors header read (as the safetensors crate allows).
const MAX_HEADER: u64 = 100_000_000;

/// What a shard says about itself (its safetensors `__metadata__`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ShardMeta {
    pub(super) version: u32,
    pub(super) teacher: String,
    pub(super) hidden_size: usize,
    pub(super) dtype: CacheDtype,
    pub(super) first_sentence: usize,
    pub(super) num_sentences: usize,
}

/// A shard as [`TeacherCache`] reads it: everything but the states, which are read on demand.
#[derive(Debug)]
pub(super) struct Shard {
    pub(super) path: PathBuf,
    /// Absolute byte offset of the `states` data in the file.
    pub(super) states_at: u64,
    /// Per sentence, its first word; `num_sentences + 1` entries.
    pub(super) offsets: Vec<usize>,
    pub(super) present: Vec<bool>,
}

/// `Some((words, sha256))` when the shard at `path` can be kept.
pub(super) fn reusable(
    path: &Path,
    expect: &ShardMeta,
    hashes: &[SentenceHash],
    recorded: Option<&ShardEntry>,
) -> Option<(usize, String)> {
    if !path.is_file() {
        return None;
    }
    let (shard, found) = read_shard(path, expect).ok()?;
    if found != hashes {
        return None;
    }
    let sha = sha256_file(path).ok()?;
    if recorded.is_some_and(|r| r.sha256 != sha) {
        return None;
    }
    Some((shard.present.len(), sha))
}

/// The safetensors bytes of one shard.
pub(super) fn shard_bytes(
    meta: &ShardMeta,
    sentences: &[&[String]],
    hashes: &[SentenceHash],
    states: &[WordStates],
) -> Result<Vec<u8>> {
    let hidden = meta.hidden_size;
    if states.len() != sentences.len() {
        return Err(TrainError::Shape {
            what: "teacher output (one entry per sentence)".into(),
            expected: vec![sentences.len()],
            found: vec![states.len()],
        });
    }
    let words: usize = sentences.iter().map(|s| s.len()).sum();
    let esize = meta.dtype.size();
    let mut data = Vec::with_capacity(words * hidden * esize);
    let mut present = Vec::with_capacity(words);
    let mut offsets = Vec::with_capacity((sentences.len() + 1) * 8);
    let mut at = 0i64;
    offsets.extend(at.to_le_bytes());
    for (i, (s, st)) in sentences.iter().zip(states).enumerate() {
        let sentence = meta.first_sentence + i;
        st.check()?;
        if st.num_words != s.len() || st.hidden != hidden {
            return Err(TrainError::Shape {
                what: format!("teacher states of sentence {sentence}"),
                expected: vec![s.len(), hidden],
                found: vec![st.num_words, st.hidden],
            });
        }
        for (j, &x) in st.data.iter().enumerate() {
            let bad = |why: &str| TrainError::InvalidArgument {
                what: "teacher states",
                message: format!(
                    "value {x} of sentence {sentence}, word {} {why}",
                    j / hidden.max(1)
                ),
            };
            if !x.is_finite() {
                return Err(bad("is not finite"));
            }
            match meta.dtype {
                CacheDtype::F32 => data.extend(x.to_le_bytes()),
                CacheDtype::F16 => {
                    let h = half::f16::from_f32(x);
                    if !h.is_finite() {
                        return Err(bad("is beyond f16's range: use CacheDtype::F32"));
                    }
                    data.extend(h.to_le_bytes());
                }
            }
        }
        present.extend(st.present.iter().map(|&p| u8::from(p)));
        at += s.len() as i64;
        offsets.extend(at.to_le_bytes());
    }
    let hash_bytes: Vec<u8> = hashes.iter().flatten().copied().collect();
    let n = sentences.len();
    let tensors = [
        (
            "states",
            StoredTensor::new(meta.dtype.safetensors(), vec![words, hidden], data),
        ),
        (
            "present",
            StoredTensor::new(Dtype::U8, vec![words], present),
        ),
        (
            "offsets",
            StoredTensor::new(Dtype::I64, vec![n + 1], offsets),
        ),
        (
            "hashes",
            StoredTensor::new(Dtype::U8, vec![n, HASH_LEN], hash_bytes),
        ),
    ];
    let meta_json = serde_json::to_string(meta).map_err(|e| TrainError::InvalidArgument {
        what: "teacher cache shard",
        message: e.to_string(),
    })?;
    safetensors_bytes(
        Path::new("teacher cache shard"),
        tensors.iter().map(|(n, t)| (*n, t)),
        Some((META_KEY, meta_json)),
    )
    .map_err(|e| TrainError::InvalidArgument {
        what: "teacher cache shard",
        message: e.to_string(),
    })
}

/// Reads a shard's header, metadata, offsets, mask and hashes, checking them against
/// `expect`.
pub(super) fn read_shard(path: &Path, expect: &ShardMeta) -> Result<(Shard, Vec<SentenceHash>)> {
    let bad = |message: String| TrainError::Format {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut n = [0u8; 8];
    read_at(&file, &mut n, 0).map_err(|_| {
        bad(format!(
            "{file_len} bytes: too short for a safetensors file"
        ))
    })?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > file_len {
        return Err(bad(format!(
            "safetensors header of {n} bytes does not fit the file of {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; n as usize];
    read_at(&file, &mut header, 8).map_err(io_err(path))?;
    let header: Metadata = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    let data_start = 8 + n;
    if data_start + header.data_len() as u64 != file_len {
        return Err(bad(format!(
            "the header describes {} data bytes, the file holds {} (truncated or padded)",
            header.data_len(),
            file_len - data_start
        )));
    }
    let meta: ShardMeta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| {
            bad(format!(
                "no `{META_KEY}` metadata: not a teacher cache shard"
            ))
        })
        .and_then(|m| {
            serde_json::from_str(m).map_err(|e| bad(format!("invalid `{META_KEY}` metadata: {e}")))
        })?;
    if meta.hidden_size != expect.hidden_size {
        return Err(bad(format!(
            "hidden size {}, expected {}",
            meta.hidden_size, expect.hidden_size
        )));
    }
    if &meta != expect {
        return Err(bad(format!(
            "shard metadata {meta:?} does not match the expected {expect:?}"
        )));
    }
    let tensor = |name: &str, dtype: Dtype| -> Result<&TensorInfo> {
        let info = header
            .info(name)
            .ok_or_else(|| bad(format!("no `{name}` tensor")))?;
        if info.dtype != dtype {
            return Err(bad(format!(
                "`{name}` is {:?}, expected {dtype:?}",
                info.dtype
            )));
        }
        Ok(info)
    };
    let read = |info: &TensorInfo| -> Result<Vec<u8>> {
        let (s, e) = info.data_offsets;
        let mut buf = vec![0u8; e - s];
        read_at(&file, &mut buf, data_start + s as u64).map_err(io_err(path))?;
        Ok(buf)
    };
    let ns = expect.num_sentences;
    let states = tensor("states", expect.dtype.safetensors())?;
    let present = tensor("present", Dtype::U8)?;
    let offsets = tensor("offsets", Dtype::I64)?;
    let hashes = tensor("hashes", Dtype::U8)?;
    let [words, hidden] = states.shape[..] else {
        return Err(bad(format!(
            "`states` has shape {:?}, expected 2 dims",
            states.shape
        )));
    };
    if hidden != expect.hidden_size {
        return Err(bad(format!(
            "`states` has hidden size {hidden}, expected {}",
            expect.hidden_size
        )));
    }
    // `ns` comes from index.json: `ns + 1` must not overflow before the shapes are compared.
    let Some(ns_1) = ns.checked_add(1) else {
        return Err(bad(format!("{ns} sentences: more than a shard can hold")));
    };
    for (name, info, shape) in [
        ("present", present, vec![words]),
        ("offsets", offsets, vec![ns_1]),
        ("hashes", hashes, vec![ns, HASH_LEN]),
    ] {
        if info.shape != shape {
            return Err(bad(format!(
                "`{name}` has shape {:?}, expected {shape:?}",
                info.shape
            )));
        }
    }
    let offs: Vec<usize> = read(offsets)?
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .map(|o| usize::try_from(o).unwrap_or(usize::MAX))
        .collect();
    if offs[0] != 0 || offs[ns] != words || offs.windows(2).any(|w| w[0] > w[1]) {
        return Err(bad(format!(
            "`offsets` must rise from 0 to {words} (the rows of `states`)"
        )));
    }
    let present: Vec<bool> = read(present)?.into_iter().map(|b| b != 0).collect();
    let hashes: Vec<SentenceHash> = read(hashes)?
        .chunks_exact(HASH_LEN)
        .map(|b| b.try_into().expect("HASH_LEN bytes"))
        .collect();
    Ok((
        Shard {
            path: path.to_path_buf(),
            states_at: data_start + states.data_offsets.0 as u64,
            offsets: offs,
            present,
        },
        hashes,
    ))
}

/// Reads `buf.len()` bytes at `offset` (portable: seek, then read).
pub(super) fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}
