//! Training for lora-bert: task heads, objectives (cross-entropy with an ignore index,
//! InfoNCE contrastive loss, word-level distillation), teachers, and the training loops of
//! fine-tuning and pre-finetuning (individual, naive multi-task, MTPF-TPL).
#![warn(missing_docs)]

mod checkpoint;
pub mod clip;
mod error;
pub mod finetune;
pub mod groups;
pub use lora_bert_apps::heads;
pub mod input;
pub mod loss;
pub mod plot;
pub use lora_bert_apps::pooling;
pub mod pretrain;
pub mod probe;
pub mod progress;
pub mod schedule;
pub mod teacher;
mod trainer;

pub use checkpoint::{Evaluation, TrainerState};
pub use error::TrainError;
pub use finetune::{
    AppKind, AppManifest, AppSetup, Classifier, ClassifierHead, FineTuneConfig, FineTuneMode,
    TextClassifier, TextMetric, TokenClassifier, TokenMetric, finetune_texts, finetune_tokens,
    read_app,
};
pub use heads::{
    ProjectionHead, ProjectionHeadConfig, SequenceClassificationHead,
    SequenceClassificationHeadConfig, TokenClassificationHead, TokenClassificationHeadConfig,
};
pub use input::ToBertInput;
pub use loss::{CrossEntropy, DistillLoss, DistillProjection};
pub use pooling::{Pooling, WordMap, WordPooling};
pub use pretrain::{
    Family, NerData, NerSet, PfConfig, PfModel, PfReport, SoftLabels, TcData, Variant, fit_pf,
    load_pf, pf_batches, pre_finetune, save_pf,
};
pub use teacher::{EncoderTeacher, Tagger, TaggerConfig, Teacher, TeacherCache, WordStates};
pub use trainer::{FitReport, TrainConfig, Trainer};

/// The result type of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
