//! Pre-finetuning of each arm, once per setting, resumable: a finished model lives in
//! `OUT/pf/<setting>/<arm>/model` with its `report.json`; an interrupted one resumes from its
//! trainer checkpoints.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lora_bert::adapters::AdaptedModel;
use lora_bert::assets::{self, AssetCache, ModelFiles};
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::batch::TextEncoder;
use lora_bert::data::token::encode_tagged;
use lora_bert::data::{LabelVocab, TaggedSentence};
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::encoder::{BertModel, Device, MpnetModel};
use lora_bert::train::teacher::{CacheOptions, words_of};
use lora_bert::train::{
    EncoderTeacher, Family, FitReport, NerData, NerSet, TcData, TeacherCache, pre_finetune,
    progress, save_pf,
};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::data::PfData;
use crate::plan::{Arm, Plan, Setting};
use crate::runs::write_json;

/// Tokens per pre-finetuning row at most.
pub const MAX_LEN: usize = 64;

/// What a finished pre-finetuning wrote next to its model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PfRecord {
    pub arm: String,
    pub setting: String,
    pub ner_steps: usize,
    pub tc_steps: usize,
    pub seconds: f64,
    pub fit: FitReport,
}

pub fn dir(out: &Path, setting: &Setting, arm: Arm) -> PathBuf {
    out.join("pf").join(setting.name()).join(arm.name())
}

pub fn model_dir(out: &Path, setting: &Setting, arm: Arm) -> PathBuf {
    dir(out, setting, arm).join("model")
}

pub fn read_record(out: &Path, setting: &Setting, arm: Arm) -> Option<PfRecord> {
    let path = dir(out, setting, arm).join("report.json");
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The teacher's states of every pre-finetuning sentence (train and dev), built once into
/// `OUT/pf/teacher-cache` (resumable shard by shard) with all-mpnet-base-v2.
pub fn teacher_cache(
    cache: &AssetCache,
    data: &PfData,
    out: &Path,
    device: &Device,
) -> Result<TeacherCache> {
    let mpnet = assets::all_mpnet_base_v2(cache)?;
    let teacher = EncoderTeacher::new(
        MpnetModel::load(&mpnet.dir, device)?.0,
        BertTokenizer::from_file(&mpnet.tokenizer)?
            .with_max_length(128)
            .with_length_policy(LengthPolicy::Window { stride: 32 }),
        device,
    )?
    .with_description("all-mpnet-base-v2, last layer, mean");
    let all: Vec<TaggedSentence> = data
        .sentences
        .iter()
        .chain(&data.dev_sentences)
        .cloned()
        .collect();
    let corpus = words_of(&all);
    let started = Instant::now();
    let bar = progress::bar(corpus.len() as u64, "teacher", "sentences");
    let cache = TeacherCache::build(
        &teacher,
        &corpus,
        out.join("pf").join("teacher-cache"),
        &CacheOptions::default(),
        |p| bar.set_position(p.sentences_done as u64),
    )?;
    bar.finish_and_clear();
    println!(
        "teacher all-mpnet-base-v2: {} sentences in the cache ({:.0}s)",
        cache.num_sentences(),
        started.elapsed().as_secs_f64()
    );
    Ok(cache)
}

/// Pre-finetunes `arm` under `setting` unless it is done; returns its record.
#[allow(clippy::too_many_arguments)]
pub fn ensure(
    plan: &Plan,
    setting: &Setting,
    arm: Arm,
    files: &ModelFiles,
    tokenizer: &BertTokenizer,
    data: &PfData,
    teacher: Option<&TeacherCache>,
    training: &Device,
) -> Result<PfRecord> {
    let variant = arm
        .variant()
        .ok_or("the plain backbone is not pre-finetuned")?;
    if let Some(record) = read_record(&plan.out, setting, arm)
        && model_dir(&plan.out, setting, arm)
            .join("config.json")
            .is_file()
    {
        return Ok(record);
    }
    let dir = dir(&plan.out, setting, arm);
    println!(
        "\n== pre-finetuning {} ({}), setting {} ==",
        arm.label(),
        arm.name(),
        setting.name()
    );
    let mut config = plan.pf_config(setting, variant, tokenizer.pad_id());
    config.checkpoints = Some(dir.join("checkpoints"));
    let o_vocab = LabelVocab::new(vec!["O".to_owned()])?;
    let encode =
        |s: &[TaggedSentence]| encode_tagged(tokenizer, s, &o_vocab, LabelAlignment::FirstSubword);
    let (examples, dev_examples) = (encode(&data.sentences)?, encode(&data.dev_sentences)?);
    let encoder = TextEncoder::new(tokenizer);
    let (pairs, dev_pairs) = (
        encoder.encode_pairs(&data.pairs)?,
        encoder.encode_pairs(&data.dev_pairs)?,
    );
    let needs_teacher = variant.families().contains(&Family::Ner);
    let ner = match (needs_teacher, teacher) {
        (true, Some(teacher)) => Some(NerData {
            train: NerSet {
                sentences: &data.sentences,
                examples: &examples,
            },
            dev: Some(NerSet {
                sentences: &data.dev_sentences,
                examples: &dev_examples,
            }),
            teacher,
        }),
        (true, None) => return Err("the NER family needs the teacher cache".into()),
        (false, _) => None,
    };
    let tc = Some(TcData {
        train: &pairs,
        dev: Some(&dev_pairs),
    });
    let model = AdaptedModel::new(BertModel::load(&files.dir, training)?.0);
    let started = Instant::now();
    let (pf, report) = pre_finetune(variant, model, ner, tc, &config)?;
    let seconds = started.elapsed().as_secs_f64();
    // Written beside, then renamed: a `model` folder is always complete.
    let model = model_dir(&plan.out, setting, arm);
    let partial = dir.join("model.partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    save_pf(&pf, &partial)?;
    if model.exists() {
        std::fs::remove_dir_all(&model)?;
    }
    std::fs::rename(&partial, &model)?;
    let record = PfRecord {
        arm: arm.name().into(),
        setting: setting.name(),
        ner_steps: report.steps_of(Family::Ner),
        tc_steps: report.steps_of(Family::Tc),
        seconds,
        fit: report.fit,
    };
    write_json(&dir.join("report.json"), &record)?;
    println!(
        "{}: {} NER and {} TC steps in {:.0}s, best dev metric {:?}",
        arm.label(),
        record.ner_steps,
        record.tc_steps,
        seconds,
        record.fit.best
    );
    Ok(record)
}
