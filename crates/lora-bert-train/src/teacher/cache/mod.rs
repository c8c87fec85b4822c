//! Teacher outputs computed once per corpus and kept on disk.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod shard;

use shard::{Shard, ShardMeta, read_at, read_shard, reusable, shard_bytes};

use super::{Teacher, WordStates, preview};
use crate::error::{io_err, write_atomic};
use crate::{Result, TrainError};

const FORMAT: &str = "lora-bert-teacher-cache";
const VERSION: u32 = 1;
const INDEX: &str = "index.json";
/// Bytes of a sentence's content hash kept (the first 128 bits of its SHA-256).
const HASH_LEN: usize = 16;

type SentenceHash = [u8; HASH_LEN];

/// How the states are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CacheDtype {
    /// 32-bit floats: the teacher's values exactly (the default).
    #[default]
    F32,
    /// IEEE half precision, half the size: each value is rounded to the nearest f16, so a
    /// value `x` comes back within `max(|x| * 2^-11, 2^-25)` of itself. Building refuses a
    /// state beyond f16's range (|x| > 65504).
    F16,
}

impl CacheDtype {
    fn safetensors(self) -> Dtype {
        match self {
            CacheDtype::F32 => Dtype::F32,
            CacheDtype::F16 => Dtype::F16,
        }
    }

    fn size(self) -> usize {
        match self {
            CacheDtype::F32 => 4,
            CacheDtype::F16 => 2,
        }
    }
}

/// How [`TeacherCache::build`] lays out a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// Sentences per shard, and per call to the teacher (1024 by default).
    pub shard_size: usize,
    /// How states are stored ([`CacheDtype::F32`] by default).
    pub dtype: CacheDtype,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            shard_size: 1024,
            dtype: CacheDtype::F32,
        }
    }
}

/// Reported by [`TeacherCache::build`] after each shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildProgress {
    /// The shard just finished (0-based).
    pub shard: usize,
    /// Shards in the cache.
    pub num_shards: usize,
    /// Sentences covered by the shards finished so far.
    pub sentences_done: usize,
    /// Sentences in the corpus.
    pub num_sentences: usize,
    /// `true` when the shard was already on disk and kept, `false` when the teacher ran.
    pub reused: bool,
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Index {
    format: String,
    version: u32,
    teacher: String,
    hidden_size: usize,
    dtype: CacheDtype,
    shard_size: usize,
    num_sentences: usize,
    num_words: usize,
    /// SHA-256 of the sentences' content hashes, in corpus order.
    corpus_digest: String,
    shards: Vec<ShardEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ShardEntry {
    file: String,
    first_sentence: usize,
    num_sentences: usize,
    num_words: usize,
    /// SHA-256 of the shard file.
    sha256: String,
}

/// Precomputed teacher outputs on disk, so that a large teacher runs once per corpus; itself a
/// [`Teacher`] that looks sentences up by content.
///
/// # Layout
///
/// A directory with
/// - `shard-00000.safetensors`, `shard-00001.safetensors`, ...: consecutive runs of
///   [`CacheOptions::shard_size`] sentences, each with the tensors `states` (`F32` or `F16`,
///   `[words, hidden]`, the words of its sentences in order), `present` (`U8`, `[words]`, 1
///   where the teacher saw a token of the word), `offsets` (`I64`, `[sentences + 1]`, each
///   sentence's first row) and `hashes` (`U8`, `[sentences, 16]`, each sentence's content
///   hash), and a `__metadata__` entry `lora_bert_teacher_cache` describing the shard;
/// - `index.json`: the format and version, the teacher's [`description`](Teacher::description),
///   hidden size, dtype, shard size, sentence and word counts, a digest of the whole corpus,
///   and for each shard its file, sentence range, word count and SHA-256.
///
/// A sentence's content hash is the first 128 bits of the SHA-256 of its words (each
/// length-prefixed), so that lookups are by content: a sentence that is not in the corpus
/// the cache was built for is refused ([`TrainError::NotInCache`]), and duplicates share one
/// entry.
///
/// Every file is written to a temporary name and renamed, and `index.json` is written last:
/// a directory without `index.json` is an unfinished build, which [`TeacherCache::build`]
/// resumes.
#[derive(Debug)]
pub struct TeacherCache {
    dir: PathBuf,
    index: Index,
    shards: Vec<Shard>,
    lookup: HashMap<SentenceHash, (usize, usize)>,
}

impl TeacherCache {
    /// Runs `teacher` over `corpus` and writes the cache into `dir` (created if needed), one
    /// teacher call per shard; then opens it. `progress` is called after each shard.
    ///
    /// **Resumes**: a shard already in `dir` whose header, teacher, hidden size, dtype and
    /// sentences match (and whose SHA-256 matches `index.json`, when there is one) is kept
    /// without running the teacher; others are (re)computed. If `dir` holds a complete cache
    /// for this corpus and teacher, nothing is recomputed. A shard whose states were corrupted
    /// on disk before any index recorded its checksum is not detected by a resume.
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] for a shard size of 0, or a state that is not finite
    /// or (with [`CacheDtype::F16`]) beyond f16's range; [`TrainError::Format`] naming
    /// `index.json` when `dir` holds a cache for another corpus, teacher or layout (it is
    /// never overwritten: remove it or use another directory); [`TrainError::Shape`] when the
    /// teacher returns states that do not fit the sentences; the teacher's errors;
    /// [`TrainError::Io`] naming the file that cannot be written.
    pub fn build<T: Teacher + ?Sized>(
        teacher: &T,
        corpus: &[&[String]],
        dir: impl AsRef<Path>,
        options: &CacheOptions,
        mut progress: impl FnMut(&BuildProgress),
    ) -> Result<Self> {
        let dir = dir.as_ref();
        if options.shard_size == 0 {
            return Err(TrainError::InvalidArgument {
                what: "teacher cache shard size",
                message: "must be at least 1".into(),
            });
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let hashes: Vec<SentenceHash> = corpus.iter().map(|s| sentence_hash(s)).collect();
        let digest = corpus_digest(&hashes);
        let hidden = teacher.hidden_size();
        let description = teacher.description();
        let index_path = dir.join(INDEX);
        let old = match read_index(&index_path) {
            Ok(index) => Some(index),
            Err(TrainError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(old) = &old {
            let differs = [
                (old.teacher != description, "teacher"),
                (old.hidden_size != hidden, "hidden size"),
                (old.dtype != options.dtype, "dtype"),
                (old.shard_size != options.shard_size, "shard size"),
                (
                    old.num_sentences != corpus.len() || old.corpus_digest != digest,
                    "corpus",
                ),
            ];
            let what: Vec<&str> = differs.iter().filter(|d| d.0).map(|d| d.1).collect();
            if !what.is_empty() {
                return Err(TrainError::Format {
                    path: index_path,
                    message: format!(
                        "this directory holds a teacher cache with another {}; \
                         remove it or build into another directory",
                        what.join(", ")
                    ),
                });
            }
        }
        let mut index_present = old.is_some();
        let num_shards = corpus.len().div_ceil(options.shard_size);
        let mut entries = Vec::with_capacity(num_shards);
        let mut done = 0;
        for k in 0..num_shards {
            let first = k * options.shard_size;
            let end = (first + options.shard_size).min(corpus.len());
            let file = shard_name(k);
            let path = dir.join(&file);
            let expect = ShardMeta {
                version: VERSION,
                teacher: description.clone(),
                hidden_size: hidden,
                dtype: options.dtype,
                first_sentence: first,
                num_sentences: end - first,
            };
            let recorded = old.as_ref().and_then(|o| o.shards.get(k));
            let kept = reusable(&path, &expect, &hashes[first..end], recorded);
            let (num_words, sha256, reused) = match kept {
                Some((num_words, sha)) => (num_words, sha, true),
                None => {
                    if index_present {
                        // The cache is incomplete until this shard is rewritten.
                        fs::remove_file(&index_path).map_err(io_err(&index_path))?;
                        index_present = false;
                    }
                    let states = teacher.word_states(&corpus[first..end])?;
                    let bytes =
                        shard_bytes(&expect, &corpus[first..end], &hashes[first..end], &states)?;
                    write_atomic(&path, &bytes)?;
                    let words = corpus[first..end].iter().map(|s| s.len()).sum();
                    (words, sha256_hex(&bytes), false)
                }
            };
            entries.push(ShardEntry {
                file,
                first_sentence: first,
                num_sentences: end - first,
                num_words,
                sha256,
            });
            done = end;
            progress(&BuildProgress {
                shard: k,
                num_shards,
                sentences_done: done,
                num_sentences: corpus.len(),
                reused,
            });
        }
        debug_assert_eq!(done, corpus.len());
        let index = Index {
            format: FORMAT.into(),
            version: VERSION,
            teacher: description,
            hidden_size: hidden,
            dtype: options.dtype,
            shard_size: options.shard_size,
            num_sentences: corpus.len(),
            num_words: entries.iter().map(|e| e.num_words).sum(),
            corpus_digest: digest,
            shards: entries,
        };
        if old.as_ref() != Some(&index) || !index_present {
            let json = serde_json::to_string_pretty(&index).map_err(|e| TrainError::Format {
                path: index_path.clone(),
                message: e.to_string(),
            })?;
            write_atomic(&index_path, json.as_bytes())?;
        }
        Self::open(dir)
    }

    /// Opens the cache in `dir`: reads `index.json` and every shard's header, masks and
    /// hashes (not the states, which are read on demand by [`Teacher::word_states`]).
    /// Checksums are not recomputed here: see [`TeacherCache::verify`].
    ///
    /// # Errors
    ///
    /// [`TrainError::Format`] naming `index.json` when it is missing (an unfinished build)
    /// or malformed, or naming a shard whose header, tensors (dtype, shape, a hidden size
    /// other than the index's), metadata or size do not fit the index;
    /// [`TrainError::Io`] naming a file that cannot be read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let index_path = dir.join(INDEX);
        let index = read_index(&index_path).map_err(|e| match e {
            TrainError::Io { path, source } if source.kind() == io::ErrorKind::NotFound => {
                TrainError::Format {
                    path,
                    message: "no teacher cache index: the directory is not a cache or its \
                              build did not finish (run TeacherCache::build again)"
                        .into(),
                }
            }
            e => e,
        })?;
        let bad_index = |message: String| TrainError::Format {
            path: index_path.clone(),
            message,
        };
        if index.format != FORMAT || index.version != VERSION {
            return Err(bad_index(format!(
                "format {:?} version {}, expected {FORMAT:?} version {VERSION}",
                index.format, index.version
            )));
        }
        // Not reserved from the index's counts: a hostile index.json could ask for any size.
        // The shards' own tensors, checked against their file sizes, bound what is read.
        let mut shards = Vec::with_capacity(index.shards.len());
        let mut lookup = HashMap::new();
        let mut all_hashes = Vec::new();
        let (mut sentences, mut words) = (0, 0);
        for (k, entry) in index.shards.iter().enumerate() {
            if entry.file != shard_name(k) {
                return Err(bad_index(format!(
                    "shard {k} is named {:?}, expected {:?}",
                    entry.file,
                    shard_name(k)
                )));
            }
            if entry.first_sentence != sentences {
                return Err(bad_index(format!(
                    "shard {k} starts at sentence {}, expected {sentences}",
                    entry.first_sentence
                )));
            }
            let expect = ShardMeta {
                version: VERSION,
                teacher: index.teacher.clone(),
                hidden_size: index.hidden_size,
                dtype: index.dtype,
                first_sentence: entry.first_sentence,
                num_sentences: entry.num_sentences,
            };
            let (shard, hashes) = read_shard(&dir.join(&entry.file), &expect)?;
            let shard_words = shard.present.len();
            if shard_words != entry.num_words {
                return Err(TrainError::Format {
                    path: shard.path,
                    message: format!("{shard_words} words, the index says {}", entry.num_words),
                });
            }
            for (i, h) in hashes.iter().enumerate() {
                lookup.entry(*h).or_insert((k, i));
            }
            all_hashes.extend(hashes);
            sentences += entry.num_sentences;
            words += shard_words;
            shards.push(shard);
        }
        if sentences != index.num_sentences || words != index.num_words {
            return Err(bad_index(format!(
                "shards hold {sentences} sentences and {words} words, the index says {} and {}",
                index.num_sentences, index.num_words
            )));
        }
        if corpus_digest(&all_hashes) != index.corpus_digest {
            return Err(bad_index(
                "the shards' sentences do not match the index's corpus digest".into(),
            ));
        }
        Ok(TeacherCache {
            dir,
            index,
            shards,
            lookup,
        })
    }

    /// Recomputes every shard's SHA-256 and compares it with `index.json`: catches corrupted
    /// states, which [`TeacherCache::open`] does not read.
    ///
    /// # Errors
    ///
    /// [`TrainError::Format`] naming the first shard whose checksum differs;
    /// [`TrainError::Io`] naming a file that cannot be read.
    pub fn verify(&self) -> Result<()> {
        for (shard, entry) in self.shards.iter().zip(&self.index.shards) {
            let sha = sha256_file(&shard.path)?;
            if sha != entry.sha256 {
                return Err(TrainError::Format {
                    path: shard.path.clone(),
                    message: format!(
                        "checksum {sha} differs from the index's {}: the shard is corrupt \
                         (delete it and build again)",
                        entry.sha256
                    ),
                });
            }
        }
        Ok(())
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sentences in the corpus the cache was built for (duplicates included).
    pub fn num_sentences(&self) -> usize {
        self.index.num_sentences
    }

    /// Words in that corpus.
    pub fn num_words(&self) -> usize {
        self.index.num_words
    }

    /// Number of shard files.
    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }

    /// How states are stored.
    pub fn dtype(&self) -> CacheDtype {
        self.index.dtype
    }

    /// Whether the cache holds the sentence `words`.
    pub fn contains(&self, words: &[String]) -> bool {
        self.lookup.contains_key(&sentence_hash(words))
    }

    fn read_states(
        &self,
        files: &mut HashMap<usize, File>,
        k: usize,
        i: usize,
    ) -> Result<WordStates> {
        let shard = &self.shards[k];
        let hidden = self.index.hidden_size;
        let (w0, w1) = (shard.offsets[i], shard.offsets[i + 1]);
        let esize = self.index.dtype.size();
        let mut bytes = vec![0u8; (w1 - w0) * hidden * esize];
        let f = match files.entry(k) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => v.insert(File::open(&shard.path).map_err(io_err(&shard.path))?),
        };
        read_at(
            f,
            &mut bytes,
            shard.states_at + (w0 * hidden * esize) as u64,
        )
        .map_err(io_err(&shard.path))?;
        let data: Vec<f32> = match self.index.dtype {
            CacheDtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            CacheDtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        WordStates::new(data, w1 - w0, hidden, shard.present[w0..w1].to_vec())
    }
}

impl Teacher for TeacherCache {
    fn hidden_size(&self) -> usize {
        self.index.hidden_size
    }

    fn description(&self) -> String {
        self.index.teacher.clone()
    }

    /// # Errors
    ///
    /// [`TrainError::NotInCache`] for a sentence the cache does not hold; [`TrainError::Io`]
    /// naming a shard that cannot be read.
    fn word_states(&self, sentences: &[&[String]]) -> Result<Vec<WordStates>> {
        let mut files = HashMap::new();
        sentences
            .iter()
            .enumerate()
            .map(|(n, words)| {
                let &(k, i) = self.lookup.get(&sentence_hash(words)).ok_or_else(|| {
                    TrainError::NotInCache {
                        path: self.dir.clone(),
                        index: n,
                        sentence: preview(words),
                    }
                })?;
                let states = self.read_states(&mut files, k, i)?;
                if states.num_words != words.len() {
                    return Err(TrainError::Format {
                        path: self.shards[k].path.clone(),
                        message: format!(
                            "sentence {} has {} words in the cache, {} given: {}",
                            i,
                            states.num_words,
                            words.len(),
                            preview(words)
                        ),
                    });
                }
                Ok(states)
            })
            .collect()
    }
}

fn shard_name(k: usize) -> String {
    format!("shard-{k:05}.safetensors")
}

/// First 128 bits of the SHA-256 of the words, each prefixed by its byte length (u64 LE),
/// after the word count.
fn sentence_hash(words: &[String]) -> SentenceHash {
    let mut h = Sha256::new();
    h.update((words.len() as u64).to_le_bytes());
    for w in words {
        h.update((w.len() as u64).to_le_bytes());
        h.update(w.as_bytes());
    }
    let full = h.finalize();
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&full[..HASH_LEN]);
    out
}

fn corpus_digest(hashes: &[SentenceHash]) -> String {
    let mut h = Sha256::new();
    for s in hashes {
        h.update(s);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The sha256 of a file, hex, read in 1 MiB blocks.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    Ok(hex(&h.finalize()))
}

fn read_index(path: &Path) -> Result<Index> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::Format {
        path: path.to_path_buf(),
        message: format!("malformed teacher cache index: {e}"),
    })
}
