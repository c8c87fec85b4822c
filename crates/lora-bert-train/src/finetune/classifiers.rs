//! The classifiers fine-tuning trains, and their app directories.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use lora_bert_adapters::{AdaptedModel, Adapter, Lora};
use lora_bert_apps::manifest::{
    APP_FILE, AppInfo, AppKind, BACKBONE_DIR, FineTuneMode, read_app, write_app,
};
use lora_bert_data::LabelVocab;
use lora_bert_encoder::{BertInput, BertModel, Route};

use super::{AppSetup, prepare, route_of};
use crate::error::io_err;
use crate::heads::{
    SequenceClassificationHead, SequenceClassificationHeadConfig, TokenClassificationHead,
    TokenClassificationHeadConfig,
};
use crate::{Result, TrainError};

/// A head a classifier app carries on its adapted encoder: how it is made, what it gives for
/// a batch, and how it is saved with its labels. Implemented by the apps crate's
/// [`TokenClassificationHead`] and [`SequenceClassificationHead`].
pub trait ClassifierHead: Module + Sized {
    /// The head's configuration.
    type Config;
    /// Its logits for a batch: `[B, S, num_labels]` per token, `[B, num_labels]` per text.
    type Logits;
    /// The kind of app it makes, as `app.json` records it.
    const KIND: AppKind;

    /// A fresh head.
    ///
    /// # Errors
    ///
    /// A bad configuration.
    fn init(config: &Self::Config, device: &Device) -> lora_bert_apps::Result<Self>;
    /// The hidden size `config` expects.
    fn config_width(config: &Self::Config) -> usize;
    /// The hidden size the head expects.
    fn width(&self) -> usize;
    /// The logits of the encoder's last hidden states for `input`.
    ///
    /// # Errors
    ///
    /// States or a mask that do not fit the head.
    fn logits(&self, hidden: Tensor<3>, input: &BertInput) -> lora_bert_apps::Result<Self::Logits>;
    /// Saves the head and `labels` into `dir`.
    ///
    /// # Errors
    ///
    /// Labels that do not fit; a file that cannot be written.
    fn save(&self, dir: &Path, labels: &LabelVocab) -> lora_bert_apps::Result<()>;
    /// Loads a head saved by [`save`](Self::save).
    ///
    /// # Errors
    ///
    /// A missing, malformed or mismatched file.
    fn load(dir: &Path, device: &Device) -> lora_bert_apps::Result<(Self, LabelVocab)>;
}

impl ClassifierHead for TokenClassificationHead {
    type Config = TokenClassificationHeadConfig;
    type Logits = Tensor<3>;
    const KIND: AppKind = AppKind::TokenClassification;

    fn init(config: &Self::Config, device: &Device) -> lora_bert_apps::Result<Self> {
        config.init(device)
    }

    fn config_width(config: &Self::Config) -> usize {
        config.hidden_size
    }

    fn width(&self) -> usize {
        self.config().hidden_size
    }

    fn logits(&self, hidden: Tensor<3>, _: &BertInput) -> lora_bert_apps::Result<Tensor<3>> {
        self.forward(hidden)
    }

    fn save(&self, dir: &Path, labels: &LabelVocab) -> lora_bert_apps::Result<()> {
        TokenClassificationHead::save(self, dir, labels)
    }

    fn load(dir: &Path, device: &Device) -> lora_bert_apps::Result<(Self, LabelVocab)> {
        TokenClassificationHead::load(dir, device)
    }
}

impl ClassifierHead for SequenceClassificationHead {
    type Config = SequenceClassificationHeadConfig;
    type Logits = Tensor<2>;
    const KIND: AppKind = AppKind::SequenceClassification;

    fn init(config: &Self::Config, device: &Device) -> lora_bert_apps::Result<Self> {
        config.init(device)
    }

    fn config_width(config: &Self::Config) -> usize {
        config.hidden_size
    }

    fn width(&self) -> usize {
        self.config().hidden_size
    }

    fn logits(&self, hidden: Tensor<3>, input: &BertInput) -> lora_bert_apps::Result<Tensor<2>> {
        self.forward(hidden, input.attention_mask.clone())
    }

    fn save(&self, dir: &Path, labels: &LabelVocab) -> lora_bert_apps::Result<()> {
        SequenceClassificationHead::save(self, dir, labels)
    }

    fn load(dir: &Path, device: &Device) -> lora_bert_apps::Result<(Self, LabelVocab)> {
        SequenceClassificationHead::load(dir, device)
    }
}

/// An app being fine-tuned or served: the adapted encoder, a head, and the app's task, mode
/// and group. [`TokenClassifier`] and [`TextClassifier`] are its two kinds.
#[derive(Module, Debug)]
pub struct Classifier<H: ClassifierHead, S: Adapter = Lora> {
    /// The encoder with its groups.
    pub model: AdaptedModel<S>,
    /// The head.
    pub head: H,
    /// The app's task, mode and group.
    #[module(skip)]
    pub app: AppInfo,
}

/// Token classification (NER, POS): the adapted encoder and a [`TokenClassificationHead`].
pub type TokenClassifier<S = Lora> = Classifier<TokenClassificationHead, S>;

/// Text classification: the adapted encoder and a [`SequenceClassificationHead`].
pub type TextClassifier<S = Lora> = Classifier<SequenceClassificationHead, S>;

impl<H: ClassifierHead, S: Adapter> Classifier<H, S> {
    /// Sets `model` up for `setup` (adding or copying the task's group, freezing what the mode
    /// does not train) and puts a fresh head from `head` on it.
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] for an unknown `init_group` or a task name a group already
    /// has; [`TrainError::Shape`] when the head's width is not the model's hidden size;
    /// [`TrainError::InvalidArgument`] for an empty task name, a merged model or a bad head
    /// configuration.
    pub fn new(
        model: AdaptedModel<S>,
        setup: &AppSetup<S::Config>,
        head: &H::Config,
    ) -> Result<Self> {
        check_hidden(&model, H::config_width(head))?;
        let head = H::init(head, &model.device())?;
        let (model, app) = prepare(model, setup)?;
        Ok(Self { model, head, app })
    }

    /// The route of the app: its group, or [`Route::Base`].
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] when the group was removed.
    pub fn route(&self) -> Result<Route> {
        route_of(&self.model, &self.app)
    }

    /// Logits of `input` run through `route`: `[B, S, num_labels]` for a
    /// [`TokenClassifier`], `[B, num_labels]` for a [`TextClassifier`].
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] for a route to an unknown group or a bad input.
    pub fn forward(&self, input: &BertInput, route: &Route) -> Result<H::Logits> {
        let out = self.model.forward(input, route)?;
        Ok(self.head.logits(out.last_hidden_state, input)?)
    }

    /// Saves the app into `dir` (see the [module docs](super)).
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgument`] when `labels` does not fit the head;
    /// [`TrainError::Adapter`], [`TrainError::Io`] or [`TrainError::Format`] when a file
    /// cannot be written.
    pub fn save(&self, dir: impl AsRef<Path>, labels: &LabelVocab) -> Result<()> {
        let dir = dir.as_ref();
        save_parts(dir, &self.model, &self.app, || {
            Ok(self.head.save(dir, labels)?)
        })?;
        Ok(write_app(dir, H::KIND, &self.app)?)
    }

    /// Loads an app saved by [`save`](Self::save) onto `model`, the base model the app was
    /// trained from (a [`FineTuneMode::Full`] app brings its backbone: `model` then only
    /// gives the device, and its groups are dropped). `model` must not hold a group of the
    /// app's name.
    ///
    /// # Errors
    ///
    /// [`TrainError::Io`] or [`TrainError::Format`] for a missing or malformed file or an app
    /// of another kind; errors of [`AdaptedModel::load_group`] and of the head's loader.
    pub fn load(dir: impl AsRef<Path>, model: AdaptedModel<S>) -> Result<(Self, LabelVocab)> {
        let dir = dir.as_ref();
        let (app, model) = load_parts(dir, model, H::KIND)?;
        let (head, labels) = H::load(dir, &model.device())?;
        check_hidden(&model, head.width())?;
        Ok((Self { model, head, app }, labels))
    }
}

fn check_hidden<S: Adapter>(model: &AdaptedModel<S>, head_width: usize) -> Result<()> {
    let hidden = model.config().hidden_size;
    if head_width != hidden {
        return Err(TrainError::Shape {
            what: "head width vs the encoder's hidden size".into(),
            expected: vec![hidden],
            found: vec![head_width],
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// App files

fn save_parts<S: Adapter>(
    dir: &Path,
    model: &AdaptedModel<S>,
    app: &AppInfo,
    save_head: impl FnOnce() -> Result<()>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(group) = &app.group {
        model.save_group(group, dir)?;
    }
    if app.mode == FineTuneMode::Full {
        let path = dir.join(BACKBONE_DIR);
        model
            .model
            .save(&path)
            .map_err(|e| format_error(&path, e))?;
    }
    save_head()
}

fn load_parts<S: Adapter>(
    dir: &Path,
    model: AdaptedModel<S>,
    kind: AppKind,
) -> Result<(AppInfo, AdaptedModel<S>)> {
    let file = read_app(dir)?;
    if file.kind != kind {
        return Err(TrainError::Format {
            path: dir.join(APP_FILE),
            message: format!("holds a {:?} app, not a {kind:?} app", file.kind),
        });
    }
    let mut model = if file.backbone {
        let backbone_dir = dir.join(BACKBONE_DIR);
        let (backbone, _) = BertModel::load(&backbone_dir, &model.device())
            .map_err(|e| format_error(&backbone_dir, e))?;
        AdaptedModel::new(backbone)
    } else {
        model
    };
    if let Some(group) = &file.app.group {
        model.load_group(group, dir)?;
    }
    Ok((file.app, model))
}

fn format_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A tensor's values read back to the host as `f32`; `what` names it in the error.
pub(crate) fn host_values<const D: usize>(
    tensor: Tensor<D>,
    what: &'static str,
) -> Result<Vec<f32>> {
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::InvalidArgument {
            what,
            message: format!("cannot read back as f32: {e:?}"),
        })
}
