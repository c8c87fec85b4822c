//! Label vocabularies: a fixed, stable mapping between labels and class ids.

use lora_bert_encoder::checkpoint::{CheckpointError, write_atomically};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io_err, parse_err};
use crate::scheme::{Tag, prefixes};
use crate::{DataError, Result, Scheme};

/// An ordered set of labels; a label's id is its position.
///
/// The order is fixed when the vocabulary is made and travels with a model
/// ([`LabelVocab::save`], [`LabelVocab::load`]), so ids never depend on the order data happens
/// to be read in. Its JSON form is `{"labels": ["O", "B-PER", ...]}`.
///
/// ```
/// use lora_bert_data::{LabelVocab, Scheme};
///
/// let vocab = LabelVocab::from_tags(["B-PER", "O", "I-LOC", "B-LOC", "I-PER"])?;
/// assert_eq!(vocab.labels(), ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]);
/// assert_eq!(vocab.id("B-PER")?, 3);
/// assert_eq!(vocab.label(1), Some("B-LOC"));
/// assert!(vocab.id("B-ORG").is_err());
/// assert_eq!(vocab, LabelVocab::for_scheme(&["PER", "LOC"], Scheme::Iob2)?);
/// # Ok::<(), lora_bert_data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "VocabFile", into = "VocabFile")]
pub struct LabelVocab {
    labels: Vec<String>,
    index: HashMap<String, u32>,
}

/// The serialized form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabFile {
    labels: Vec<String>,
}

impl TryFrom<VocabFile> for LabelVocab {
    type Error = DataError;

    fn try_from(file: VocabFile) -> Result<Self> {
        LabelVocab::new(file.labels)
    }
}

impl From<LabelVocab> for VocabFile {
    fn from(vocab: LabelVocab) -> Self {
        VocabFile {
            labels: vocab.labels,
        }
    }
}

impl LabelVocab {
    /// A vocabulary of `labels` in the given order.
    ///
    /// # Errors
    ///
    /// [`DataError::Empty`] for no label, [`DataError::InvalidArgument`] for a label given
    /// twice or more labels than `u32` ids.
    pub fn new(labels: Vec<String>) -> Result<Self> {
        if labels.is_empty() {
            return Err(DataError::Empty("label vocabulary".into()));
        }
        let mut index = HashMap::with_capacity(labels.len());
        for (i, label) in labels.iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| DataError::InvalidArgument {
                what: "labels",
                message: "more labels than u32 ids".into(),
            })?;
            if index.insert(label.clone(), id).is_some() {
                return Err(DataError::InvalidArgument {
                    what: "labels",
                    message: format!("label `{label}` appears more than once"),
                });
            }
        }
        Ok(LabelVocab { labels, index })
    }

    /// The distinct labels of a set of class labels, sorted (byte order), for text
    /// classification.
    ///
    /// # Errors
    ///
    /// [`DataError::Empty`] when there is no label.
    pub fn from_labels<I, S>(labels: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set: BTreeSet<String> = labels.into_iter().map(|l| l.as_ref().to_owned()).collect();
        Self::new(set.into_iter().collect())
    }

    /// The distinct tags of a token-classification dataset, in a deterministic order.
    ///
    /// When every tag is `O` or `P-TYPE` with `P` among `B I E S L U` (an entity tag set):
    /// `O` first, then the types sorted (byte order), within a type the prefixes in the
    /// order `B I E S L U`. Otherwise (POS tags and other plain labels): sorted like
    /// [`LabelVocab::from_labels`].
    ///
    /// # Errors
    ///
    /// [`DataError::Empty`] when there is no tag.
    pub fn from_tags<I, S>(tags: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set: BTreeSet<String> = tags.into_iter().map(|l| l.as_ref().to_owned()).collect();
        let mut by_type: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
        let mut outside = false;
        for tag in &set {
            match Tag::parse(tag) {
                Some(Tag::Outside) => outside = true,
                Some(Tag::Entity(p, kind)) => {
                    let rank = "BIESLU".find(p).unwrap_or(usize::MAX);
                    by_type.entry(kind).or_default().push((rank, tag));
                }
                None => return Self::new(set.into_iter().collect()),
            }
        }
        let mut labels = Vec::with_capacity(set.len());
        if outside {
            labels.push("O".to_owned());
        }
        for (_, mut tags) in by_type {
            tags.sort_unstable();
            labels.extend(tags.into_iter().map(|(_, t)| t.to_owned()));
        }
        Self::new(labels)
    }

    /// Every tag of `scheme` for the entity `types`: `O` and each type with each of the
    /// scheme's prefixes, ordered as [`LabelVocab::from_tags`] orders them.
    ///
    /// # Errors
    ///
    /// [`DataError::InvalidArgument`] for an empty type or one with whitespace.
    pub fn for_scheme<S: AsRef<str>>(types: &[S], scheme: Scheme) -> Result<Self> {
        let mut tags = vec!["O".to_owned()];
        for kind in types {
            let kind = kind.as_ref();
            if kind.is_empty() || kind.chars().any(char::is_whitespace) {
                return Err(DataError::InvalidArgument {
                    what: "entity types",
                    message: format!("type `{kind}` is empty or has whitespace"),
                });
            }
            tags.extend(prefixes(scheme).iter().map(|p| format!("{p}-{kind}")));
        }
        Self::from_tags(tags)
    }

    /// Id of `label`.
    ///
    /// # Errors
    ///
    /// [`DataError::UnknownLabel`] when the label is not in the vocabulary.
    pub fn id(&self, label: &str) -> Result<u32> {
        self.get(label).ok_or_else(|| DataError::UnknownLabel {
            label: label.to_owned(),
            context: Some(format!(
                "not among the {} labels of the vocabulary",
                self.len()
            )),
        })
    }

    /// Id of `label`, if it is in the vocabulary.
    pub fn get(&self, label: &str) -> Option<u32> {
        self.index.get(label).copied()
    }

    /// `true` when `label` is in the vocabulary.
    pub fn contains(&self, label: &str) -> bool {
        self.index.contains_key(label)
    }

    /// The label of `id`.
    pub fn label(&self, id: u32) -> Option<&str> {
        self.labels.get(id as usize).map(String::as_str)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always `false`: a vocabulary has at least one label.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels in id order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// `(id, label)` in id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u32, &str)> + '_ {
        // `new` checked that every id fits in u32.
        self.labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u32, l.as_str()))
    }

    /// Writes the vocabulary as JSON (`{"labels": [...]}`), atomically: to a temporary file
    /// next to `path`, then renamed over it, so a reader never sees half a file.
    ///
    /// # Errors
    ///
    /// [`DataError::Io`] naming the file that could not be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        path.file_name().ok_or_else(|| DataError::InvalidArgument {
            what: "path",
            message: format!("{} names no file", path.display()),
        })?;
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| DataError::InvalidArgument {
            what: "label vocabulary",
            message: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomically(path, &json).map_err(|e| match e {
            CheckpointError::Io { path, source } => DataError::Io { path, source },
            other => DataError::InvalidArgument {
                what: "path",
                message: other.to_string(),
            },
        })
    }

    /// Reads a vocabulary written by [`LabelVocab::save`].
    ///
    /// # Errors
    ///
    /// [`DataError::Io`] when the file cannot be read; [`DataError::Parse`] naming the file
    /// and line when it is not `{"labels": [...]}`, has no label or repeats one.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(io_err(path))?;
        let file: VocabFile = serde_json::from_str(&text)
            .map_err(|e| parse_err(path, e.line().max(1), e.to_string()))?;
        let mut seen = HashMap::with_capacity(file.labels.len());
        for label in &file.labels {
            if seen.insert(label.as_str(), ()).is_some() {
                return Err(parse_err(
                    path,
                    duplicate_line(&text, label),
                    format!("label `{label}` appears more than once"),
                ));
            }
        }
        Self::new(file.labels).map_err(|e| parse_err(path, 1, e.to_string()))
    }
}

/// The 1-based line of the second occurrence of `label` (as JSON writes it) after the list
/// opens; 1 when it is written some other way (with escapes).
fn duplicate_line(text: &str, label: &str) -> usize {
    let quoted = serde_json::to_string(label).unwrap_or_default();
    let list = text.find('[').unwrap_or(0);
    text[list..]
        .match_indices(&quoted)
        .nth(1)
        .map_or(1, |(at, _)| text[..list + at].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders() {
        let v = LabelVocab::from_tags(["S-b", "U-a", "O", "E-b", "B-b", "I-b", "L-a"]).unwrap();
        assert_eq!(v.labels(), ["O", "L-a", "U-a", "B-b", "I-b", "E-b", "S-b"]);
        let v = LabelVocab::from_tags(["nn", "O", "at", "nn"]).unwrap();
        assert_eq!(v.labels(), ["O", "at", "nn"]);
        let v = LabelVocab::from_labels(["rotten", "fresh", "plot", "fresh"]).unwrap();
        assert_eq!(v.labels(), ["fresh", "plot", "rotten"]);
        assert_eq!(
            v.iter().collect::<Vec<_>>(),
            [(0, "fresh"), (1, "plot"), (2, "rotten")]
        );
        let v = LabelVocab::for_scheme(&["PER", "LOC"], Scheme::Bilou).unwrap();
        assert_eq!(
            v.labels(),
            [
                "O", "B-LOC", "I-LOC", "L-LOC", "U-LOC", "B-PER", "I-PER", "L-PER", "U-PER"
            ]
        );
    }

    #[test]
    fn refusals() {
        assert!(matches!(LabelVocab::new(vec![]), Err(DataError::Empty(_))));
        let dup = LabelVocab::new(vec!["a".into(), "b".into(), "a".into()]).unwrap_err();
        assert!(
            dup.to_string().contains("`a` appears more than once"),
            "{dup}"
        );
        assert!(LabelVocab::for_scheme(&["A B"], Scheme::Iob2).is_err());
        let v = LabelVocab::from_labels(["x"]).unwrap();
        let err = v.id("y").unwrap_err();
        assert!(matches!(&err, DataError::UnknownLabel { label, .. } if label == "y"));
        assert_eq!(v.label(1), None);
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.json");
        let v = LabelVocab::for_scheme(&["PER", "geo-loc"], Scheme::Iobes).unwrap();
        v.save(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n  \"labels\": [\n    \"O\","), "{text}");
        assert_eq!(LabelVocab::load(&path).unwrap(), v);
        // Overwrites atomically and leaves no temporary file behind.
        let w = LabelVocab::from_labels(["b", "a"]).unwrap();
        w.save(&path).unwrap();
        assert_eq!(LabelVocab::load(&path).unwrap().labels(), ["a", "b"]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let missing = dir.path().join("missing.json");
        assert!(
            matches!(LabelVocab::load(&missing), Err(DataError::Io { path, .. }) if path == missing)
        );
        for (text, line, part) in [
            (
                "{\n  \"labels\": [\"a\",\n \"a\"]\n}",
                3,
                "appears more than once",
            ),
            ("{\"labels\": []}", 1, "is empty"),
            ("{\n\"labels\": [\"a\"],\n\"extra\": 1}", 3, "unknown field"),
            ("[\"a\"]", 1, "invalid type"),
        ] {
            fs::write(&path, text).unwrap();
            match LabelVocab::load(&path) {
                Err(DataError::Parse {
                    path: p,
                    line: l,
                    message,
                }) => {
                    assert_eq!(
                        (p.as_path(), l),
                        (path.as_path(), line),
                        "{text}: {message}"
                    );
                    assert!(message.contains(part), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(v.save(dir.path().join("no/such/dir/labels.json")).is_err());
    }
}
