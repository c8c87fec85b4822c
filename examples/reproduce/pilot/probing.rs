//! Linear probes on each arm's frozen features, scored on the dev sets of the probe tasks.

use std::time::Instant;

use lora_bert::adapters::{AdaptedModel, Lora};
use lora_bert::assets;
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::batch::TextEncoder;
use lora_bert::data::token::encode_tagged;
use lora_bert::data::{LabelVocab, LabeledText, TaggedSentence};
use lora_bert::encoder::tokenizer::BertTokenizer;
use lora_bert::encoder::{BertModel, Device, Route};
use lora_bert::train::finetune::{TokenEvalOptions, entity_report, stitch_word_ids, word_tags};
use lora_bert::train::load_pf;
use lora_bert::train::probe::{
    LinearProbe, ProbeConfig, labelled_tokens, text_states, token_states,
};

use crate::Result;
use crate::data::TaskData;
use crate::plan::{self, Kind};
use crate::runs::write_json;

use super::{Args, PilotArm, ProbeRecord};

/// The probe tasks, their family and metric.
pub(super) const PROBE_TASKS: [&str; 5] = [
    "brown-pos",
    "brown-names",
    "wnut16",
    "rotten-tomatoes",
    "reuters-r8",
];

fn head<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    v[..n.min(v.len())].to_vec()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn probe_arm(
    arm: PilotArm,
    args: &Args,
    files: &assets::ModelFiles,
    tokenizer: &BertTokenizer,
    tasks: &[(&'static plan::TaskDef, TaskData)],
    inference: &Device,
) -> Result<Vec<ProbeRecord>> {
    let path = args.out.join("arms").join(arm.name()).join("probes.json");
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(serde_json::from_slice(&bytes)?);
    }
    let model = match arm {
        PilotArm::NoPf => AdaptedModel::<Lora>::new(BertModel::load(&files.dir, inference)?.0),
        _ => load_pf(
            args.out.join("arms").join(arm.name()).join("model"),
            inference,
        )?,
    };
    let hidden = model.config().hidden_size;
    let s = &args.settings;
    let probe_config = ProbeConfig::default();
    // The last fifth of the probe's training examples (whole sentences or texts) chooses L2.
    let fit_part = |n: usize| n - (n / 5).max(1);
    let mut out = Vec::new();
    for (def, data) in tasks {
        let route = if arm == PilotArm::MtpfTpl {
            model.route(def.family.group())?
        } else {
            Route::Base
        };
        let started = Instant::now();
        let record = match data {
            TaskData::Tokens(splits) => {
                let train = head(&splits.train, s.probe_train);
                let dev = head(&splits.dev, s.probe_dev);
                let vocab =
                    LabelVocab::from_tags(train.iter().chain(&dev).flat_map(|s| s.tags.iter()))?;
                let encode = |x: &[TaggedSentence]| {
                    encode_tagged(tokenizer, x, &vocab, LabelAlignment::FirstSubword)
                };
                let (train_x, dev_x) = (encode(&train)?, encode(&dev)?);
                let pad = tokenizer.pad_id();
                let states = token_states(&model, &route, &train_x, 64, pad)?;
                let (features, labels) = labelled_tokens(&train_x, &states, hidden)?;
                let split = train_x[..fit_part(train_x.len())]
                    .iter()
                    .map(|e| e.labels.iter().filter(|&&l| l >= 0).count())
                    .sum();
                let (probe, fit, selection) = LinearProbe::fit_selected(
                    &features,
                    hidden,
                    &labels,
                    vocab.len(),
                    split,
                    &s.probe_l2,
                    &probe_config,
                    inference,
                )?;
                let dev_states = token_states(&model, &route, &dev_x, 64, pad)?;
                let logits = dev_states
                    .iter()
                    .map(|s| probe.logits(s))
                    .collect::<lora_bert::train::Result<Vec<_>>>()?;
                let options = TokenEvalOptions::new(pad);
                let ids = stitch_word_ids(&dev_x, &logits, dev.len(), &vocab, &options)?;
                let report = entity_report(&dev, &word_tags(ids, &vocab))?;
                let (metric, score) = match def.kind {
                    Kind::Token(lora_bert::train::TokenMetric::Accuracy) => {
                        ("tag accuracy", report.accuracy)
                    }
                    _ => ("entity F1", report.averages.micro_avg.f1),
                };
                ProbeRecord {
                    arm,
                    task: def.name.into(),
                    metric: metric.into(),
                    score,
                    train_rows: labels.len(),
                    dev_items: dev.len(),
                    fit,
                    selection,
                }
            }
            TaskData::Texts(splits) => {
                let train = head(&splits.train, s.probe_train);
                let dev = head(&splits.dev, s.probe_dev);
                let vocab = LabelVocab::from_labels(
                    train
                        .iter()
                        .chain(&dev)
                        .map(|t: &LabeledText| t.label.as_str()),
                )?;
                let encoder = TextEncoder::new(tokenizer);
                let id = |l: &str| {
                    vocab
                        .get(l)
                        .ok_or_else(|| lora_bert::data::DataError::UnknownLabel {
                            label: l.into(),
                            context: None,
                        })
                };
                let (train_x, dev_x) = (
                    encoder.encode_texts(&train, id)?,
                    encoder.encode_texts(&dev, id)?,
                );
                let features = text_states(&model, &route, train_x.rows(), 64)?;
                let (probe, fit, selection) = LinearProbe::fit_selected(
                    &features,
                    hidden,
                    train_x.labels(),
                    vocab.len(),
                    fit_part(train_x.len()),
                    &s.probe_l2,
                    &probe_config,
                    inference,
                )?;
                let predicted = probe.predict(&text_states(&model, &route, dev_x.rows(), 64)?)?;
                let correct = predicted
                    .iter()
                    .zip(dev_x.labels())
                    .filter(|(p, g)| p == g)
                    .count();
                ProbeRecord {
                    arm,
                    task: def.name.into(),
                    metric: "accuracy".into(),
                    score: correct as f64 / dev_x.len() as f64,
                    train_rows: train_x.len(),
                    dev_items: dev_x.len(),
                    fit,
                    selection,
                }
            }
        };
        println!(
            "  {:<16} {:<16} {} {:.4} (probe: {} rows, L2 {:e} of {} tried, {} L-BFGS steps, max |gradient| {:.1e}{}; {:.0}s)",
            arm.name(),
            record.task,
            record.metric,
            record.score,
            record.train_rows,
            record.selection.l2,
            record.selection.trials.len(),
            record.fit.steps,
            record.fit.gradient,
            if record.fit.converged {
                ", converged"
            } else {
                ", NOT converged"
            },
            started.elapsed().as_secs_f64()
        );
        out.push(record);
    }
    write_json(&path, &out)?;
    Ok(out)
}
