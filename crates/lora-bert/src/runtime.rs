//! Many apps on one backbone: [`Runtime`].
//!
//! The backbone is loaded once. An *app* (a directory written by
//! `lora_bert::train::TokenClassifier::save` or
//! `TextClassifier::save`: its LoRA group in PEFT's
//! layout, its head and its labels) is registered under a name: its group joins the shared
//! model's adapter bank (the backbone is neither reloaded nor copied) and its head is kept beside
//! it. A batch may mix rows of several apps: one forward pass routes each row through its app's
//! group ([`Route`](lora_bert_encoder::Route) per example), then each app's head reads its own
//! rows.
//!
//! The runtime is `Sync`: requests take a read lock and run in parallel; registering and
//! removing apps take the write lock briefly, so they can happen while other threads serve.
//! An error in one request (unknown app, bad input) leaves the runtime serving.
//!
//! ```no_run
//! use lora_bert::runtime::{Row, Runtime};
//! use lora_bert::device;
//!
//! let device = device::device(device::Backend::Flex)?;
//! let runtime = Runtime::load("path/to/backbone", &device)?;
//! runtime.register("ner", "apps/wnut16")?;
//! runtime.register("sentiment", "apps/vader-movies")?;
//! let rows = [
//!     Row { app: "ner", ids: &[101, 7592, 2088, 102] },
//!     Row { app: "sentiment", ids: &[101, 2307, 3185, 102] },
//! ];
//! let logits = runtime.logits(&rows)?; // one forward pass for both apps
//! println!("{:?}", runtime.memory());
//! # Ok::<(), lora_bert::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use lora_bert_adapters::{AdaptedModel, Adapter, Lora};
use lora_bert_apps::heads::{SequenceClassificationHead, TokenClassificationHead};
use lora_bert_apps::manifest::{AppKind, WordDecoding, read_app};
use lora_bert_encoder::{BertConfig, BertInput, BertModel, Device, NoAdapter, mean_pool};

use crate::Error;

/// A registered app, as [`Runtime::apps`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    /// The name it was registered under.
    pub name: String,
    /// What it classifies.
    pub kind: AppKind,
    /// Its labels, in the order of its logits.
    pub labels: Vec<String>,
    /// How a token app's word labels were read when it was scored (from its manifest;
    /// `None`: first piece).
    pub decoding: Option<WordDecoding>,
    /// Bytes of its own parameters (LoRA group and head, f32).
    pub bytes: usize,
    /// The directory it was loaded from.
    pub dir: PathBuf,
}

/// What the runtime holds in memory ([`Runtime::memory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryReport {
    /// Bytes of the backbone's parameters as stored (f32, or int8 after
    /// [`Runtime::load_int8`]), shared by every app.
    pub backbone_bytes: usize,
    /// Bytes of each app's own parameters, by name.
    pub apps: Vec<(String, usize)>,
}

impl MemoryReport {
    /// An app's bytes as a share of the backbone's (`0.01` is 1%).
    pub fn share(&self, app: &str) -> Option<f64> {
        self.apps
            .iter()
            .find(|(name, _)| name == app)
            .map(|(_, bytes)| *bytes as f64 / self.backbone_bytes.max(1) as f64)
    }
}

/// One row of a batch: the app it is for and its token ids (special tokens included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row<'a> {
    /// A registered app's name.
    pub app: &'a str,
    /// Token ids, `[CLS] … [SEP]` as the tokenizer made them.
    pub ids: &'a [u32],
}

/// What a [`Query`] asks of its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask<'a> {
    /// The logits of this registered app's head (the row runs through the app's group).
    Logits(&'a str),
    /// The row's embedding: the mean of its last hidden states, through this app's group, or
    /// through the backbone alone (`None`).
    Embedding(Option<&'a str>),
}

impl<'a> Ask<'a> {
    /// The app whose group the row runs through (`None`: the backbone alone).
    pub fn app(&self) -> Option<&'a str> {
        match *self {
            Ask::Logits(app) => Some(app),
            Ask::Embedding(app) => app,
        }
    }
}

/// One row of a mixed batch for [`Runtime::answer`]: what it asks and its token ids (special
/// tokens included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// What the row asks.
    pub ask: Ask<'a>,
    /// Token ids, `[CLS] … [SEP]` as the tokenizer made them.
    pub ids: &'a [u32],
}

/// The answer to one [`Query`].
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// An app's logits for the row.
    Logits(Logits),
    /// The row's mean-pooled last hidden state (hidden-size wide, not normalised).
    Embedding(Vec<f32>),
}

/// An app's output for one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Logits {
    /// A text app: one logit per label.
    Sequence(Vec<f32>),
    /// A token app: per token of the row (special tokens included), one logit per label.
    Tokens(Vec<Vec<f32>>),
}

#[derive(Debug)]
enum Head {
    Token(TokenClassificationHead),
    Sequence(SequenceClassificationHead),
}

#[derive(Debug)]
struct App {
    info: AppInfo,
    group: Option<String>,
    head: Head,
}

#[derive(Debug)]
struct State<S: Adapter> {
    model: AdaptedModel<S>,
    apps: BTreeMap<String, App>,
}

/// One backbone serving many apps whose groups are of adapter scheme `S` (LoRA unless named:
/// `Runtime::<Ia3>::from_backbone`); see the [module docs](self). An app of another scheme
/// is refused at registration ([`Error::Adapter`]): serve it from a runtime of its own.
#[derive(Debug)]
pub struct Runtime<S: Adapter = Lora> {
    device: Device,
    backbone_bytes: usize,
    state: RwLock<State<S>>,
}

/// The name of an app's group in the shared model.
fn group_name(app: &str) -> String {
    format!("app:{app}")
}

impl Runtime {
    /// A runtime of LoRA apps on `backbone` (its weights move in; nothing is copied), with no
    /// app. The backbone may be int8 ([`BertModel::quantize_int8`]).
    pub fn new(backbone: BertModel<NoAdapter>) -> Self {
        Self::from_backbone(backbone)
    }

    /// Loads the backbone from a Hugging Face model directory onto `device`.
    ///
    /// # Errors
    ///
    /// [`Error::Checkpoint`] when the directory does not hold a loadable BERT;
    /// [`Error::UnusedTensors`] when its checkpoint holds encoder tensors its config.json does
    /// not describe (an unused task head is fine).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self, Error> {
        let (backbone, report) = BertModel::load(dir.as_ref(), device)?;
        crate::whole_backbone(dir.as_ref(), &report)?;
        Ok(Self::new(backbone))
    }

    /// Loads the backbone like [`load`](Self::load) and makes it int8
    /// ([`BertModel::quantize_int8`]): about a quarter of the memory, for a small change in the
    /// outputs (docs/benchmarks.md measures both). Apps register as on a float backbone.
    ///
    /// # Errors
    ///
    /// [`Error::Checkpoint`] and [`Error::UnusedTensors`] as [`load`](Self::load);
    /// [`Error::Quantize`] on a device int8 weights do not run on (autodiff, GPU).
    pub fn load_int8(dir: impl AsRef<Path>, device: &Device) -> Result<Self, Error> {
        let (backbone, report) = BertModel::load(dir.as_ref(), device)?;
        crate::whole_backbone(dir.as_ref(), &report)?;
        Ok(Self::new(backbone.quantize_int8()?))
    }
}

impl<S: Adapter> Runtime<S> {
    /// A runtime of apps of scheme `S` on `backbone` (its weights move in; nothing is
    /// copied), with no app: `Runtime::<Ia3>::from_backbone(backbone)` serves IA³ apps.
    pub fn from_backbone(backbone: BertModel<NoAdapter>) -> Self {
        let backbone_bytes = backbone.param_bytes();
        let model = AdaptedModel::new(backbone);
        Self {
            device: model.device(),
            backbone_bytes,
            state: RwLock::new(State {
                model,
                apps: BTreeMap::new(),
            }),
        }
    }

    /// The device the runtime computes on.
    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// The backbone's configuration (hidden size, positions, vocabulary).
    pub fn config(&self) -> BertConfig {
        self.read().model.config().clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, State<S>> {
        // A panic while the lock was held cannot leave a half-registered app (registration
        // rolls back before it returns an error), so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State<S>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the app saved in `dir` under `name`: its group joins the shared model, its
    /// head and labels are loaded. Other threads keep serving meanwhile (they wait only while
    /// the app is added).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty name; [`Error::AppExists`] when the name is taken;
    /// [`Error::OwnBackbone`] for an app fine-tuned in full (it brings its own backbone);
    /// [`Error::Adapter`] for a group that does not fit the backbone (shape, layers);
    /// [`Error::App`] for a missing or malformed file (manifest, head, labels); [`Error::HeadWidth`] for a head of
    /// another hidden size. The runtime is unchanged after an error.
    pub fn register(&self, name: &str, dir: impl AsRef<Path>) -> Result<AppInfo, Error> {
        let dir = dir.as_ref();
        if name.is_empty() {
            return Err(Error::InvalidInput("an app needs a name".into()));
        }
        let manifest = read_app(dir)?;
        if manifest.backbone {
            return Err(Error::OwnBackbone {
                name: name.to_owned(),
                path: dir.to_path_buf(),
            });
        }
        // Heads are loaded outside the lock: only adding the group needs it.
        let (head, labels, head_params) = match manifest.kind {
            AppKind::TokenClassification => {
                let (head, labels) = TokenClassificationHead::load(dir, &self.device)?;
                let n = head.num_params();
                (Head::Token(head), labels, n)
            }
            AppKind::SequenceClassification => {
                let (head, labels) = SequenceClassificationHead::load(dir, &self.device)?;
                let n = head.num_params();
                (Head::Sequence(head), labels, n)
            }
        };
        let width = match &head {
            Head::Token(h) => h.config().hidden_size,
            Head::Sequence(h) => h.config().hidden_size,
        };
        let mut state = self.write();
        let hidden = state.model.config().hidden_size;
        if width != hidden {
            return Err(Error::HeadWidth {
                name: name.to_owned(),
                found: width,
                expected: hidden,
            });
        }
        if state.apps.contains_key(name) {
            return Err(Error::AppExists(name.to_owned()));
        }
        let group = match manifest.app.group {
            Some(_) => {
                let group = group_name(name);
                state.model.load_group(&group, dir)?;
                Some(group)
            }
            None => None,
        };
        let group_params = match &group {
            Some(g) => match state.model.parameter_counts(g) {
                Ok(counts) => counts.group,
                Err(e) => {
                    // Leave the runtime as it was.
                    let _ = state.model.remove_group(g);
                    return Err(e.into());
                }
            },
            None => 0,
        };
        let info = AppInfo {
            name: name.to_owned(),
            kind: manifest.kind,
            labels: labels.labels().to_vec(),
            decoding: manifest.app.decoding,
            bytes: (group_params + head_params) * std::mem::size_of::<f32>(),
            dir: dir.to_path_buf(),
        };
        state.apps.insert(
            name.to_owned(),
            App {
                info: info.clone(),
                group,
                head,
            },
        );
        Ok(info)
    }

    /// Removes an app: its group leaves the shared model, its head is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownApp`] when no app has that name.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let mut state = self.write();
        let app = state
            .apps
            .remove(name)
            .ok_or_else(|| Error::UnknownApp(name.to_owned()))?;
        if let Some(group) = &app.group {
            state.model.remove_group(group)?;
        }
        Ok(())
    }

    /// The registered apps, by name.
    pub fn apps(&self) -> Vec<AppInfo> {
        self.read().apps.values().map(|a| a.info.clone()).collect()
    }

    /// One registered app.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownApp`] when no app has that name.
    pub fn app(&self, name: &str) -> Result<AppInfo, Error> {
        self.read()
            .apps
            .get(name)
            .map(|a| a.info.clone())
            .ok_or_else(|| Error::UnknownApp(name.to_owned()))
    }

    /// Bytes of the backbone and of each app.
    pub fn memory(&self) -> MemoryReport {
        MemoryReport {
            backbone_bytes: self.backbone_bytes,
            apps: self
                .read()
                .apps
                .values()
                .map(|a| (a.info.name.clone(), a.info.bytes))
                .collect(),
        }
    }

    /// Runs `rows` (of any registered apps, mixed) as one padded batch through one forward
    /// pass, each row through its app's group, and returns each row's logits from its app's
    /// head, in the order of `rows`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for no row or an empty row; [`Error::UnknownApp`];
    /// [`Error::Input`] for an id outside the vocabulary or a row longer than the model's
    /// positions. Nothing is computed when a row is refused.
    pub fn logits(&self, rows: &[Row<'_>]) -> Result<Vec<Logits>, Error> {
        let queries: Vec<Query<'_>> = rows
            .iter()
            .map(|r| Query {
                ask: Ask::Logits(r.app),
                ids: r.ids,
            })
            .collect();
        self.answer(&queries)?
            .into_iter()
            .map(|a| match a {
                Answer::Logits(l) => Ok(l),
                Answer::Embedding(_) => Err(Error::Internal("logits expected".into())),
            })
            .collect()
    }

    /// Runs `queries` (logits of any registered apps and embeddings, mixed) as one padded
    /// batch through one forward pass, each row through its group (its app's, or none for an
    /// embedding of the backbone alone), and answers each in the order of `queries`: logits
    /// from the app's head, or the mean of the row's last hidden states (sentence-transformers'
    /// pooling for all-MiniLM-L6-v2, not normalised).
    ///
    /// ```no_run
    /// # use lora_bert::runtime::{Answer, Ask, Query, Runtime};
    /// # fn run(runtime: &Runtime) -> Result<(), lora_bert::Error> {
    /// let ids = [101, 7592, 2088, 102];
    /// let answers = runtime.answer(&[
    ///     Query { ask: Ask::Logits("ner"), ids: &ids },
    ///     Query { ask: Ask::Embedding(None), ids: &ids },
    /// ])?;
    /// assert!(matches!(answers[1], Answer::Embedding(_)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`logits`](Self::logits).
    pub fn answer(&self, queries: &[Query<'_>]) -> Result<Vec<Answer>, Error> {
        if queries.is_empty() {
            return Err(Error::InvalidInput("no row to run".into()));
        }
        if let Some(i) = queries.iter().position(|r| r.ids.is_empty()) {
            return Err(Error::InvalidInput(format!("row {i} has no token")));
        }
        let state = self.read();
        let apps: Vec<Option<&App>> = queries
            .iter()
            .map(|q| match q.ask.app() {
                Some(name) => state
                    .apps
                    .get(name)
                    .map(Some)
                    .ok_or_else(|| Error::UnknownApp(name.to_owned())),
                None => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        let (batch, width) = (
            queries.len(),
            queries.iter().map(|r| r.ids.len()).max().unwrap_or(0),
        );
        let mut ids = vec![0u32; batch * width];
        let mut mask = vec![0u32; batch * width];
        for (b, row) in queries.iter().enumerate() {
            ids[b * width..b * width + row.ids.len()].copy_from_slice(row.ids);
            mask[b * width..b * width + row.ids.len()].fill(1);
        }
        let types = vec![0u32; batch * width];
        let input = BertInput::from_ids(
            &ids,
            &types,
            &mask,
            [batch, width],
            state.model.config(),
            &self.device,
        )?;
        let groups: Vec<Option<&str>> = apps
            .iter()
            .map(|a| a.and_then(|a| a.group.as_deref()))
            .collect();
        let route = state.model.route_per_example(&groups)?;
        let hidden = state.model.forward(&input, &route)?.last_hidden_state;

        let mut out: Vec<Option<Answer>> = vec![None; batch];
        // Rows by what reads them: an app's head, or the pooling (`None`).
        let mut by_reader: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
        for (b, q) in queries.iter().enumerate() {
            let reader = match q.ask {
                Ask::Logits(app) => Some(app),
                Ask::Embedding(_) => None,
            };
            by_reader.entry(reader).or_default().push(b);
        }
        for (reader, members) in by_reader {
            let index = Tensor::<1, Int>::from_data(
                TensorData::new(
                    members.iter().map(|&b| b as i64).collect::<Vec<_>>(),
                    [members.len()],
                ),
                &self.device,
            );
            let states = hidden.clone().select(0, index.clone());
            let Some(name) = reader else {
                let mask = input.attention_mask.clone().select(0, index);
                let pooled = mean_pool(states, mask);
                let [_, h] = pooled.dims();
                let values = finite(host(pooled)?, "the embeddings")?;
                for (k, &b) in members.iter().enumerate() {
                    out[b] = Some(Answer::Embedding(values[k * h..(k + 1) * h].to_vec()));
                }
                continue;
            };
            let what = || format!("the logits of app `{name}`");
            match &state.apps[name].head {
                Head::Token(head) => {
                    let logits = head.forward(states)?;
                    let [_, s, c] = logits.dims();
                    let values = finite(host(logits)?, &what())?;
                    for (k, &b) in members.iter().enumerate() {
                        let len = queries[b].ids.len();
                        let tokens = (0..len)
                            .map(|t| values[(k * s + t) * c..(k * s + t + 1) * c].to_vec())
                            .collect();
                        out[b] = Some(Answer::Logits(Logits::Tokens(tokens)));
                    }
                }
                Head::Sequence(head) => {
                    let mask = input.attention_mask.clone().select(0, index);
                    let logits = head.forward(states, mask)?;
                    let [_, c] = logits.dims();
                    let values = finite(host(logits)?, &what())?;
                    for (k, &b) in members.iter().enumerate() {
                        out[b] = Some(Answer::Logits(Logits::Sequence(
                            values[k * c..(k + 1) * c].to_vec(),
                        )));
                    }
                }
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(b, l)| l.ok_or_else(|| Error::Internal(format!("row {b} got no answer"))))
            .collect()
    }
}

/// `values`, refused when one is not finite: an app never answers from NaN logits.
fn finite(values: Vec<f32>, what: &str) -> Result<Vec<f32>, Error> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(values)
    } else {
        Err(Error::NonFinite { what: what.into() })
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, Error> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Internal(format!("logits could not be read: {e:?}")))
}
