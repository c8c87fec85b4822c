//! The classifiers fine-tuning trains, and their app directories.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Tensor;
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

/// Token classification (NER, POS): the adapted encoder and a [`TokenClassificationHead`].
#[derive(Module, Debug)]
pub struct TokenClassifier<S: Adapter = Lora> {
    /// The encoder with its groups.
    pub model: AdaptedModel<S>,
    /// The head.
    pub head: TokenClassificationHead,
    /// The app's task, mode and group.
    #[module(skip)]
    pub app: AppInfo,
}

impl<S: Adapter> TokenClassifier<S> {
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
        head: &TokenClassificationHeadConfig,
    ) -> Result<Self> {
        check_hidden(&model, head.hidden_size)?;
        let head = head.init(&model.device())?;
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

    /// Logits `[B, S, num_labels]` of `input` run through `route`.
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] for a route to an unknown group or a bad input.
    pub fn forward(&self, input: &BertInput, route: &Route) -> Result<Tensor<3>> {
        let out = self.model.forward(input, route)?;
        Ok(self.head.forward(out.last_hidden_state)?)
    }

    /// Saves the app into `dir` (see the [module docs](self)).
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
        Ok(write_app(dir, AppKind::TokenClassification, &self.app)?)
    }

    /// Loads an app saved by [`save`](Self::save) onto `model`, the base model the app was
    /// trained from (a [`FineTuneMode::Full`] app brings its backbone: `model` then only
    /// gives the device, and its groups are dropped). `model` must not hold a group of the
    /// app's name.
    ///
    /// # Errors
    ///
    /// [`TrainError::Io`] or [`TrainError::Format`] for a missing or malformed file or an app
    /// of another kind; errors of [`AdaptedModel::load_group`] and
    /// [`TokenClassificationHead::load`].
    pub fn load(dir: impl AsRef<Path>, model: AdaptedModel<S>) -> Result<(Self, LabelVocab)> {
        let dir = dir.as_ref();
        let (app, model) = load_parts(dir, model, AppKind::TokenClassification)?;
        let (head, labels) = TokenClassificationHead::load(dir, &model.device())?;
        check_hidden(&model, head.config().hidden_size)?;
        Ok((Self { model, head, app }, labels))
    }
}

/// Text classification: the adapted encoder and a [`SequenceClassificationHead`].
#[derive(Module, Debug)]
pub struct TextClassifier<S: Adapter = Lora> {
    /// The encoder with its groups.
    pub model: AdaptedModel<S>,
    /// The head.
    pub head: SequenceClassificationHead,
    /// The app's task, mode and group.
    #[module(skip)]
    pub app: AppInfo,
}

impl<S: Adapter> TextClassifier<S> {
    /// Sets `model` up for `setup` and puts a fresh head from `head` on it; see
    /// [`TokenClassifier::new`].
    ///
    /// # Errors
    ///
    /// As [`TokenClassifier::new`].
    pub fn new(
        model: AdaptedModel<S>,
        setup: &AppSetup<S::Config>,
        head: &SequenceClassificationHeadConfig,
    ) -> Result<Self> {
        check_hidden(&model, head.hidden_size)?;
        let head = head.init(&model.device())?;
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

    /// Logits `[B, num_labels]` of `input` run through `route`.
    ///
    /// # Errors
    ///
    /// [`TrainError::Adapter`] for a route to an unknown group or a bad input.
    pub fn forward(&self, input: &BertInput, route: &Route) -> Result<Tensor<2>> {
        let out = self.model.forward(input, route)?;
        Ok(self
            .head
            .forward(out.last_hidden_state, input.attention_mask.clone())?)
    }

    /// Saves the app into `dir`; see [`TokenClassifier::save`].
    ///
    /// # Errors
    ///
    /// As [`TokenClassifier::save`].
    pub fn save(&self, dir: impl AsRef<Path>, labels: &LabelVocab) -> Result<()> {
        let dir = dir.as_ref();
        save_parts(dir, &self.model, &self.app, || {
            Ok(self.head.save(dir, labels)?)
        })?;
        Ok(write_app(dir, AppKind::SequenceClassification, &self.app)?)
    }

    /// Loads an app saved by [`save`](Self::save); see [`TokenClassifier::load`].
    ///
    /// # Errors
    ///
    /// As [`TokenClassifier::load`].
    pub fn load(dir: impl AsRef<Path>, model: AdaptedModel<S>) -> Result<(Self, LabelVocab)> {
        let dir = dir.as_ref();
        let (app, model) = load_parts(dir, model, AppKind::SequenceClassification)?;
        let (head, labels) = SequenceClassificationHead::load(dir, &model.device())?;
        check_hidden(&model, head.config().hidden_size)?;
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
