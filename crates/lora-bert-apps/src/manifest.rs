//! An app directory's manifest, `app.json`: what the app classifies, how it sits on its
//! backbone (task, fine-tuning mode, adapter group), whether it brings its own backbone, and
//! for token apps how their word labels were read when they were scored.
//!
//! An app directory holds the manifest, the head's files ([`heads`](crate::heads)), the
//! app's adapter group in PEFT's layout when it has one, and `backbone/` for an app
//! fine-tuned in full. The manifest carries a format version: a directory written by a later
//! format is refused with an error that says so, not misread.
//!
//! ```
//! use lora_bert_apps::manifest::{AppInfo, AppKind, FineTuneMode, read_app, write_app};
//!
//! let dir = tempfile::tempdir()?;
//! let app = AppInfo::new("wnut16", FineTuneMode::LoraHead, Some("wnut16".into()));
//! write_app(dir.path(), AppKind::TokenClassification, &app)?;
//! let manifest = read_app(dir.path())?;
//! assert_eq!(manifest.app, app);
//! assert!(!manifest.backbone);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use lora_bert_data::align::{Aggregation, LabelAlignment};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, write_atomic};
use crate::{AppError, Result};

/// The file describing a saved app.
pub const APP_FILE: &str = "app.json";
/// The folder of a saved backbone ([`FineTuneMode::Full`] apps).
pub const BACKBONE_DIR: &str = "backbone";
/// The manifest format this crate writes, and the latest it reads. Manifests written before
/// the format had a version are version 1.
pub const APP_FORMAT_VERSION: u32 = 1;

/// Which parameters fine-tuning trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FineTuneMode {
    /// The head only; backbone (and the task's group, if copied from a family group) frozen.
    HeadOnly,
    /// The task's adapter group and the head; backbone frozen.
    #[default]
    LoraHead,
    /// Backbone, head (and the task's group, if copied from a family group).
    Full,
}

/// How a token app's word labels are read from its pieces: the label alignment it was
/// trained with and the aggregation its evaluation used. Serving reads words the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WordDecoding {
    /// Which pieces carried a word's label in training.
    pub alignment: LabelAlignment,
    /// How a word's label is read from its pieces.
    pub aggregation: Aggregation,
}

/// What an app remembers about its setup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// The task's name.
    pub task: String,
    /// The mode it was set up for.
    pub mode: FineTuneMode,
    /// The group the app routes through (`None`: the plain backbone).
    pub group: Option<String>,
    /// How a token app's word labels were read when it was scored (absent: first piece,
    /// first-piece alignment; and for text apps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding: Option<WordDecoding>,
}

impl AppInfo {
    /// An app of `task` in `mode` routed through `group`, without a recorded decoding.
    pub fn new(task: impl Into<String>, mode: FineTuneMode, group: Option<String>) -> Self {
        Self {
            task: task.into(),
            mode,
            group,
            decoding: None,
        }
    }
}

/// What an app classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// Every token (NER, POS).
    TokenClassification,
    /// The whole text.
    SequenceClassification,
}

fn first_version() -> u32 {
    1
}

/// The contents of an app's `app.json` ([`read_app`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    /// The manifest's format ([`APP_FORMAT_VERSION`] when written by this crate).
    #[serde(default = "first_version")]
    pub version: u32,
    /// What the app classifies.
    pub kind: AppKind,
    /// Its task, mode and group.
    #[serde(flatten)]
    pub app: AppInfo,
    /// Whether the app brings its own backbone (a [`FineTuneMode::Full`] app).
    pub backbone: bool,
}

fn format_error(path: &Path, message: impl std::fmt::Display) -> AppError {
    AppError::Format {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads the `app.json` of an app directory.
///
/// # Errors
///
/// [`AppError::Io`] when the file cannot be read; [`AppError::Format`] when it is not an app
/// manifest or is of a format version this crate does not know.
pub fn read_app(dir: impl AsRef<Path>) -> Result<AppManifest> {
    let path = dir.as_ref().join(APP_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let manifest: AppManifest = serde_json::from_str(&text).map_err(|e| format_error(&path, e))?;
    if !(1..=APP_FORMAT_VERSION).contains(&manifest.version) {
        return Err(format_error(
            &path,
            format!(
                "an app manifest of format version {}, which this lora-bert does not know \
                 (it reads versions 1 to {APP_FORMAT_VERSION}); a later lora-bert wrote it",
                manifest.version
            ),
        ));
    }
    Ok(manifest)
}

/// Writes the `app.json` of an app directory atomically: `kind`, `app`, and whether it
/// brings its own backbone (a [`FineTuneMode::Full`] app does).
///
/// # Errors
///
/// [`AppError::Io`] when the file cannot be written.
pub fn write_app(dir: &Path, kind: AppKind, app: &AppInfo) -> Result<()> {
    let manifest = AppManifest {
        version: APP_FORMAT_VERSION,
        kind,
        app: app.clone(),
        backbone: app.mode == FineTuneMode::Full,
    };
    let path = dir.join(APP_FILE);
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(|e| format_error(&path, e))?;
    json.push(b'\n');
    write_atomic(&path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<AppManifest> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(APP_FILE), json).unwrap();
        read_app(dir.path())
    }

    #[test]
    fn versions_and_decodings_round_trip_and_unknown_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = AppInfo::new("t", FineTuneMode::Full, None);
        app.decoding = Some(WordDecoding {
            alignment: LabelAlignment::AllSubwords,
            aggregation: Aggregation::Max,
        });
        write_app(dir.path(), AppKind::TokenClassification, &app).unwrap();
        let back = read_app(dir.path()).unwrap();
        assert_eq!((back.version, back.app, back.backbone), (1, app, true));

        // Written before manifests had a version or a decoding: version 1, no decoding.
        let old = read(
            r#"{"kind": "token_classification", "task": "t", "mode": "lora_head",
                "group": "t", "backbone": false}"#,
        )
        .unwrap();
        assert_eq!((old.version, old.app.decoding), (1, None));
        for version in [0, 2] {
            let err = read(&format!(
                r#"{{"version": {version}, "kind": "token_classification", "task": "t",
                    "mode": "lora_head", "group": "t", "backbone": false}}"#
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains(&format!("format version {version}")), "{err}");
            assert!(err.contains(APP_FILE), "{err}");
        }
        assert!(matches!(
            read(r#"{"kind": "token_classification"}"#),
            Err(AppError::Format { .. })
        ));
    }
}
