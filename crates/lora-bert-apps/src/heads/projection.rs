//! The projection head of contrastive training: pooling, then an optional linear map.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::file::{HeadFile, format_err, load_head, save_head, wrong_kind};
use super::{
    CONFIG_FILE, Dense, check_common, check_init_range, check_width, default_initializer_range,
};
use crate::pooling::Pooling;
use crate::{AppError, Result};

/// The configuration of a [`ProjectionHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionHeadConfig {
    /// Width of the encoder's hidden states.
    pub hidden_size: usize,
    /// Width of the embeddings; `None` keeps the pooled vector as it is (identity, as
    /// sentence-transformers trains without a projection).
    #[serde(default)]
    pub dim: Option<usize>,
    /// How the sequence is pooled (default: mean over real tokens).
    #[serde(default)]
    pub pooling: Pooling,
    /// Standard deviation of the projection's initial weights (default 0.02).
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
}

impl ProjectionHeadConfig {
    /// Mean pooling and no projection: embeddings of width `hidden_size`.
    pub fn new(hidden_size: usize) -> Self {
        Self {
            hidden_size,
            dim: None,
            pooling: Pooling::default(),
            initializer_range: default_initializer_range(),
        }
    }

    /// Projects to `dim` with a learned dense layer.
    pub fn with_dim(mut self, dim: usize) -> Self {
        self.dim = Some(dim);
        self
    }

    /// Sets the pooling.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// The embedding width: `dim`, or `hidden_size` without a projection.
    pub fn out_dim(&self) -> usize {
        self.dim.unwrap_or(self.hidden_size)
    }

    fn validate(&self) -> Result<()> {
        check_common(self.hidden_size, 0.0)?;
        if self.dim == Some(0) {
            return Err(AppError::InvalidArgument {
                what: "dim",
                message: "must be at least 1".into(),
            });
        }
        check_init_range(self.initializer_range)
    }

    /// A fresh head on `device`.
    ///
    /// # Errors
    ///
    /// [`AppError::InvalidArgument`] for a zero width or `dim`, or a negative initializer
    /// range.
    pub fn init(&self, device: &Device) -> Result<ProjectionHead> {
        self.validate()?;
        Ok(ProjectionHead {
            dense: self
                .dim
                .map(|d| Dense::init(self.hidden_size, d, self.initializer_range, device)),
            config: self.clone(),
        })
    }
}

/// Sentence embeddings for contrastive training: `dense(pool(hidden))`, or `pool(hidden)`
/// without a projection, `[B, S, H] → [B, D]`. Not normalised: the contrastive loss
/// normalises (`lora_bert_train::loss::info_nce`).
#[derive(Module, Debug)]
pub struct ProjectionHead {
    /// `hidden_size → dim`, when the config asks for one (saved as `dense.*`).
    pub dense: Option<Dense>,
    /// The configuration.
    #[module(skip)]
    pub config: ProjectionHeadConfig,
}

impl ProjectionHead {
    /// Embeddings `[B, D]` of hidden states `[B, S, hidden_size]` under their mask `[B, S]`.
    ///
    /// # Errors
    ///
    /// [`AppError::Shape`] when the hidden width is not the head's or the mask does not fit.
    pub fn forward(&self, hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Result<Tensor<2>> {
        check_width(
            "hidden states [B, S, H] (projection head)",
            &hidden.dims(),
            self.config.hidden_size,
        )?;
        let pooled = self.config.pooling.pool(hidden, attention_mask)?;
        self.project(pooled)
    }

    /// Projects already pooled vectors `[B, hidden_size]` to `[B, D]`.
    ///
    /// # Errors
    ///
    /// [`AppError::Shape`] when the width is not the head's.
    pub fn project(&self, pooled: Tensor<2>) -> Result<Tensor<2>> {
        check_width(
            "pooled vectors [B, H] (projection head)",
            &pooled.dims(),
            self.config.hidden_size,
        )?;
        Ok(match &self.dense {
            Some(dense) => dense.forward(pooled),
            None => pooled,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProjectionHeadConfig {
        &self.config
    }

    /// Saves the head into `dir` (no labels). Without a projection the weights file holds no
    /// tensor.
    ///
    /// # Errors
    ///
    /// [`AppError::Io`] when a file cannot be written.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let tensors = match &self.dense {
            Some(dense) => dense.tensors("dense")?,
            None => Vec::new(),
        };
        save_head(
            dir.as_ref(),
            &HeadFile::Projection(self.config.clone()),
            tensors,
            None,
        )
    }

    /// Loads a head saved by [`save`](Self::save).
    ///
    /// # Errors
    ///
    /// As [`TokenClassificationHead::load`](super::TokenClassificationHead::load), labels aside.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let (file, mut tensors) = load_head(dir)?;
        let HeadFile::Projection(config) = file else {
            return Err(wrong_kind(dir, &file, "projection"));
        };
        config
            .validate()
            .map_err(|e| format_err(&dir.join(CONFIG_FILE), e))?;
        let dense = match config.dim {
            Some(d) => Some(Dense::load(
                &mut tensors,
                "dense",
                config.hidden_size,
                d,
                device,
            )?),
            None => None,
        };
        tensors.finish()?;
        Ok(Self { dense, config })
    }
}
