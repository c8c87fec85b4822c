//! One downstream run (arm × task × fraction × seed) and its JSON record. A record on disk
//! means the run is done: a rerun skips it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lora_bert::adapters::{AdaptedModel, Lora};
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::batch::TextEncoder;
use lora_bert::data::split::stratified_subset;
use lora_bert::data::token::encode_tagged;
use lora_bert::data::{LabelVocab, LabeledText};
use lora_bert::encoder::tokenizer::BertTokenizer;
use lora_bert::metrics::bootstrap::Counts;
use lora_bert::metrics::{Mode, NerReport};
use lora_bert::train::finetune::{
    TokenEvalOptions, entity_report, predict_texts, predict_word_tags,
};
use lora_bert::train::{
    AppSetup, FineTuneConfig, FineTuneMode, FitReport, Pooling, TokenMetric, TrainConfig, Variant,
    finetune_texts, finetune_tokens,
};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::data::{TaskData, train_subset};
use crate::plan::{Arm, Kind, Plan, Setting, TaskDef, family_name};

/// The version of [`RunRecord`]'s format and of the protocols behind it. Records of another
/// version (0: written before records carried one) are refused rather than mixed into a
/// report; bump it when a change makes new records incomparable with old ones.
pub const RECORD_VERSION: u32 = 1;

/// Every finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`RECORD_VERSION`] when written.
    #[serde(default)]
    pub version: u32,
    pub setting: String,
    pub arm: String,
    pub task: String,
    /// `NER` or `TC`.
    pub family: String,
    pub fraction: f64,
    pub seed: u64,
    /// `lora_head`, `head_only` or `probe`.
    pub protocol: Protocol,
    pub metric: String,
    /// The test score of the model with the best dev score.
    pub test: f64,
    pub dev_best: f64,
    pub best_step: usize,
    pub steps: usize,
    pub train_examples: usize,
    pub dev_examples: usize,
    pub test_examples: usize,
    pub seconds: f64,
    /// The pre-finetuning seed of the model fine-tuned (0 for no PF, and in records written
    /// before there were several).
    #[serde(default)]
    pub pf_seed: u64,
    /// The fine-tuning learning rate the run kept (chosen on dev when the plan has a grid;
    /// absent for probes and in records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Whether a probe's fit converged (absent for fine-tuning and in records written before
    /// it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged: Option<bool>,
    /// What each test item contributed to `test` (entities or tokens of a sentence, or one
    /// text), in the test sample's order: the items of the paired bootstrap. Empty in
    /// records written before they were kept.
    #[serde(
        default,
        with = "compact_counts",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub items: Vec<Counts>,
}

/// Per-item counts as one string, items joined by `;`, each in its shortest form: `n` when
/// `correct = predicted = gold = n` (a text right is `1`, a sentence without entities `0`),
/// `c,n` when `predicted = gold = n` (a sentence's tag accuracy), `c,p,g` otherwise. A pretty
/// JSON array would take a line per number, and whole test splits hold thousands of items.
pub(crate) mod compact_counts {
    use lora_bert::metrics::bootstrap::Counts;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(items: &[Counts], s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(items.len() * 3);
        for (i, c) in items.iter().enumerate() {
            if i > 0 {
                text.push(';');
            }
            let item = if c.correct == c.predicted && c.predicted == c.gold {
                c.correct.to_string()
            } else if c.predicted == c.gold {
                format!("{},{}", c.correct, c.gold)
            } else {
                format!("{},{},{}", c.correct, c.predicted, c.gold)
            };
            text.push_str(&item);
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Counts>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(Vec::new());
        }
        text.split(';')
            .enumerate()
            .map(|(i, item)| {
                let n: Vec<u32> = item
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| D::Error::custom(format!("item {i} `{item}`: {e}")))?;
                let (correct, predicted, gold) = match n[..] {
                    [n] => (n, n, n),
                    [c, n] => (c, n, n),
                    [c, p, g] => (c, p, g),
                    _ => {
                        return Err(D::Error::custom(format!(
                            "item {i} `{item}`: expected n, c,n or c,p,g"
                        )));
                    }
                };
                if correct > predicted.min(gold) {
                    return Err(D::Error::custom(format!(
                        "item {i} `{item}`: more correct than predicted or gold"
                    )));
                }
                Ok(Counts {
                    correct,
                    predicted,
                    gold,
                })
            })
            .collect()
    }
}

/// Writes `value` as pretty JSON, atomically (a sibling temporary renamed over `path`).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_bytes(path, &serde_json::to_vec_pretty(value)?)
}

/// Writes `bytes` to `path` atomically: to a sibling with `.partial` appended to the name,
/// then renamed over `path`.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// Where the record of a run lives.
#[allow(clippy::too_many_arguments)]
pub fn record_path(
    out: &Path,
    protocol: Protocol,
    setting: &Setting,
    arm: Arm,
    task: &TaskDef,
    fraction: f64,
    seed: u64,
    pf_seed: u64,
) -> PathBuf {
    out.join("runs")
        .join(protocol_name(protocol))
        .join(setting.name())
        .join(arm_folder(arm, pf_seed))
        .join(task.name)
        .join(format!("{}pct", (fraction * 100.0).round()))
        .join(format!("seed-{seed}.json"))
}

/// An arm's folder name: `ARM` for pre-finetuning seed 0 (as in folders made before there
/// were several), `ARM@seed-K` for seed K.
pub fn arm_folder(arm: Arm, pf_seed: u64) -> String {
    match pf_seed {
        0 => arm.name().to_owned(),
        k => format!("{}@seed-{k}", arm.name()),
    }
}

/// How a downstream run adapts the backbone to a task. Stored in records by the names of
/// [`FineTuneMode`] for the fine-tuning protocols, so records of either kind read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Fine-tuning of the linear head alone.
    HeadOnly,
    /// Fine-tuning of a LoRA group and a linear head.
    LoraHead,
    /// A linear probe on frozen features, fitted to convergence ([`crate::probes`]).
    Probe,
}

impl Protocol {
    /// The fine-tuning mode of a fine-tuning protocol.
    pub fn mode(self) -> Option<FineTuneMode> {
        match self {
            Protocol::HeadOnly => Some(FineTuneMode::HeadOnly),
            Protocol::LoraHead => Some(FineTuneMode::LoraHead),
            Protocol::Probe => None,
        }
    }
}

pub fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::HeadOnly => "head-only",
        Protocol::LoraHead => "lora-head",
        Protocol::Probe => "probe",
    }
}

/// The record at `path`, when there is a readable one.
pub fn read_record(path: &Path) -> Option<RunRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Every `.json` file under `dir` (none when it does not exist), in path order.
pub fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    Ok(paths)
}

/// Every record under `OUT/runs`, in path order; an error names the first file that is not a
/// record of this [`RECORD_VERSION`].
pub fn read_records(out: &Path) -> Result<Vec<RunRecord>> {
    json_files(&out.join("runs"))?
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p)?;
            let record: RunRecord = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a run record: {e}", p.display()))?;
            if record.version != RECORD_VERSION {
                return Err(format!(
                    "{}: a run record of version {}, but this reproduce writes version \
                     {RECORD_VERSION}; its numbers are not comparable: remove it (or its \
                     folder) and rerun",
                    p.display(),
                    record.version
                )
                .into());
            }
            Ok(record)
        })
        .collect()
}

/// A downstream task ready to run: its data and label vocabulary.
pub struct Task {
    pub def: &'static TaskDef,
    pub data: TaskData,
    pub vocab: LabelVocab,
}

impl Task {
    pub fn new(def: &'static TaskDef, data: TaskData) -> Result<Task> {
        let vocab = match &data {
            TaskData::Tokens(s) => LabelVocab::from_tags(s.iter().flat_map(|x| x.tags.iter()))?,
            TaskData::Texts(s) => LabelVocab::from_labels(s.iter().map(|x| x.label.as_str()))?,
        };
        Ok(Task { def, data, vocab })
    }
}

/// Seed of the dev and test samples: the same examples for every arm and seed.
pub const EVAL_SEED: u64 = 11;

/// At most `n` of `items`, a stratified sample (by `label`) drawn with [`EVAL_SEED`], in their
/// order. Some published test splits are sorted by label (20 Newsgroups, Reuters), and Brown's
/// sentences come document by document, so the first `n` would not be a fair sample.
pub fn eval_sample<T: Clone, L: std::hash::Hash + Eq>(
    items: &[T],
    n: usize,
    label: impl Fn(&T) -> L,
) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    let labels: Vec<L> = items.iter().map(label).collect();
    let fraction = n as f64 / items.len() as f64;
    stratified_subset(&labels, fraction, EVAL_SEED)
        .unwrap_or_else(|_| (0..n).collect())
        .into_iter()
        .take(n)
        .map(|i| items[i].clone())
        .collect()
}

/// Runs `fit` at each learning rate of `lrs` and keeps the result whose best dev metric is
/// highest (the first on a tie), with its rate.
fn best_on_dev<C>(
    lrs: &[f64],
    mut fit: impl FnMut(f64) -> Result<(C, FitReport)>,
) -> Result<(C, FitReport, f64)> {
    let dev = |f: &FitReport| f.best.map_or(f64::NEG_INFINITY, |b| b.0);
    let mut best: Option<(C, FitReport, f64)> = None;
    for &lr in lrs {
        let (classifier, report) = fit(lr)?;
        if best.as_ref().is_none_or(|b| dev(&report) > dev(&b.1)) {
            best = Some((classifier, report, lr));
        }
    }
    best.ok_or_else(|| "no learning rate to fine-tune at".into())
}

/// Fine-tunes `task` from `model` (the plain backbone, or an arm's pre-finetuned model with
/// its groups) and scores the best dev model on test.
#[allow(clippy::too_many_arguments)]
pub fn run(
    plan: &Plan,
    setting: &Setting,
    arm: Arm,
    task: &Task,
    fraction: f64,
    seed: u64,
    pf_seed: u64,
    model: AdaptedModel<Lora>,
    tokenizer: &BertTokenizer,
    lrs: &[f64],
) -> Result<RunRecord> {
    let started = Instant::now();
    let def = task.def;
    let steps = plan.steps(def);
    // The task's group is shaped like the pre-finetuning groups; MTPF-TPL starts from a copy
    // of its family's group, the other arms from a fresh one.
    let lora = plan
        .pf_config(setting, Variant::MtpfTpl, tokenizer.pad_id(), 0)
        .lora();
    let mode = plan
        .protocol
        .mode()
        .ok_or("a probe run is not fine-tuned (see probes.rs)")?;
    let mut setup = AppSetup::new(def.name, mode).with_lora(lora);
    if arm == Arm::MtpfTpl {
        setup = setup.with_init_group(def.family.group());
    }
    let config_at = |lr: f64| {
        let mut train = TrainConfig::new(steps);
        train.learning_rate = lr;
        train.warmup_steps = steps / 10;
        train.eval_every = Some((steps / plan.sizes.evals).max(1));
        train.seed = seed;
        let mut config = FineTuneConfig::new(setup.clone(), train);
        config.seed = seed;
        config.batch_size = plan.sizes.batch;
        // Mean pooling: all-MiniLM-L6-v2 was trained for it, and the TC family's contrastive
        // pre-finetuning shapes the mean-pooled embedding.
        config.pooling = Pooling::Mean;
        config
    };
    let keep = train_subset(&task.data, fraction, seed)?;
    let (dev_n, test_n) = (plan.sizes.dev, plan.sizes.test);
    let pad = tokenizer.pad_id();
    let (test, items, fit, lr, n) = match &task.data {
        TaskData::Tokens(s) => {
            let Kind::Token(metric) = def.kind else {
                unreachable!("token data of a text task")
            };
            let train_set: Vec<_> = keep.iter().map(|&i| s.train[i].clone()).collect();
            let (dev, test) = (
                &eval_sample(&s.dev, dev_n, |_| 0u8),
                &eval_sample(&s.test, test_n, |_| 0u8),
            );
            let encode =
                |x: &[_]| encode_tagged(tokenizer, x, &task.vocab, LabelAlignment::FirstSubword);
            let (train_ex, dev_ex, test_ex) = (encode(&train_set)?, encode(dev)?, encode(test)?);
            let (classifier, fit, lr) = best_on_dev(lrs, |lr| {
                let mut config = config_at(lr);
                config.token_metric = metric;
                Ok(finetune_tokens(
                    model.clone(),
                    &train_ex,
                    (&dev_ex, dev),
                    &task.vocab,
                    &config,
                    pad,
                )?)
            })?;
            let options = TokenEvalOptions::new(pad);
            let pred = predict_word_tags(&classifier, &test_ex, test.len(), &task.vocab, &options)?;
            let report = entity_report(test, &pred)?;
            let gold: Vec<Vec<String>> = test.iter().map(|s| s.tags.clone()).collect();
            let counts = NerReport::sentence_counts(&gold, &pred, Mode::Default)?;
            let (score, items): (f64, Vec<Counts>) = match metric {
                TokenMetric::EntityF1 => (
                    report.averages.micro_avg.f1,
                    counts.iter().map(|c| c.entities).collect(),
                ),
                TokenMetric::Accuracy => {
                    (report.accuracy, counts.iter().map(|c| c.tokens).collect())
                }
            };
            (
                score,
                items,
                fit,
                lr,
                [train_set.len(), dev.len(), test.len()],
            )
        }
        TaskData::Texts(s) => {
            let encoder = TextEncoder::new(tokenizer);
            let train_set: Vec<_> = keep.iter().map(|&i| s.train[i].clone()).collect();
            let label = |t: &LabeledText| t.label.clone();
            let (dev, test) = (
                &eval_sample(&s.dev, dev_n, label),
                &eval_sample(&s.test, test_n, label),
            );
            let encode = |x: &[_]| encoder.encode_texts(x, |l| task.vocab.id(l));
            let (train_enc, dev_enc, test_enc) = (encode(&train_set)?, encode(dev)?, encode(test)?);
            let (classifier, fit, lr) = best_on_dev(lrs, |lr| {
                Ok(finetune_texts(
                    model.clone(),
                    &train_enc,
                    &dev_enc,
                    &task.vocab,
                    &config_at(lr),
                )?)
            })?;
            let pred = predict_texts(&classifier, test_enc.rows(), 64)?;
            let items: Vec<Counts> = pred
                .iter()
                .zip(test_enc.labels())
                .map(|(p, g)| Counts::unit(p == g))
                .collect();
            (
                Counts::sum(&items).score(),
                items,
                fit,
                lr,
                [train_set.len(), dev.len(), test.len()],
            )
        }
    };
    let (dev_best, best_step) = fit.best.unwrap_or((f64::NAN, fit.steps));
    Ok(RunRecord {
        version: RECORD_VERSION,
        setting: setting.name(),
        arm: arm.name().into(),
        task: def.name.into(),
        family: family_name(def.family).into(),
        fraction,
        seed,
        protocol: plan.protocol,
        metric: def.metric().into(),
        test,
        dev_best,
        best_step,
        steps: fit.steps,
        train_examples: n[0],
        dev_examples: n[1],
        test_examples: n[2],
        seconds: started.elapsed().as_secs_f64(),
        pf_seed,
        lr: Some(lr),
        converged: None,
        items,
    })
}

#[cfg(test)]
mod tests {
    use lora_bert::metrics::bootstrap::Counts;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Items(#[serde(with = "super::compact_counts")] Vec<Counts>);

    fn counts(correct: u32, predicted: u32, gold: u32) -> Counts {
        Counts {
            correct,
            predicted,
            gold,
        }
    }

    #[test]
    fn items_round_trip_in_their_shortest_forms() {
        let items = Items(vec![
            counts(1, 1, 1),
            counts(0, 1, 1),
            counts(0, 0, 0),
            counts(17, 20, 20),
            counts(2, 3, 4),
            counts(0, 2, 0),
        ]);
        let json = serde_json::to_string(&items).unwrap();
        assert_eq!(json, r#""1;0,1;0;17,20;2,3,4;0,2,0""#);
        assert_eq!(serde_json::from_str::<Items>(&json).unwrap(), items);
        // Records written before the short forms read the same.
        let old: Items = serde_json::from_str(r#""1,1,1;0,1,1;0,0,0""#).unwrap();
        assert_eq!(old.0, items.0[..3]);
        for bad in [
            r#""1,2,3,4""#,
            r#""2,1""#,
            r#""3,1,2""#,
            r#""x""#,
            r#""1;;1""#,
        ] {
            assert!(serde_json::from_str::<Items>(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::from_str::<Items>(r#""""#).unwrap().0, []);
    }

    #[test]
    fn records_of_another_version_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let record = serde_json::json!({
            "setting": "default", "arm": "no-pf", "task": "t", "family": "TC",
            "fraction": 1.0, "seed": 0, "protocol": "probe", "metric": "accuracy",
            "test": 0.5, "dev_best": 0.5, "best_step": 1, "steps": 1, "train_examples": 1,
            "dev_examples": 1, "test_examples": 1, "seconds": 0.0, "items": "1"
        });
        let path = dir
            .path()
            .join("runs/probe/default/no-pf/t/100pct/seed-0.json");
        let mut current = record.clone();
        current["version"] = super::RECORD_VERSION.into();
        super::write_json(&path, &current).unwrap();
        assert_eq!(super::read_records(dir.path()).unwrap().len(), 1);
        // Written before records carried a version.
        super::write_json(&path, &record).unwrap();
        let err = super::read_records(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("seed-0.json: a run record of version 0"),
            "{err}"
        );
    }
}
