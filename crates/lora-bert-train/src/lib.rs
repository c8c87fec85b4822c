//! Training for lora-bert: task heads, objectives (cross-entropy with an ignore index,
//! InfoNCE contrastive loss, word-level distillation), teachers, and the training loops of
//! fine-tuning and pre-finetuning (individual, naive multi-task, MTPF-TPL).
#![warn(missing_docs)]

mod error;
pub mod teacher;

pub use error::TrainError;
pub use teacher::{EncoderTeacher, Teacher, TeacherCache, WordStates};

/// The result type of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
