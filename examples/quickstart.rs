//! Quickstart: the whole idea of lora-bert in a few minutes on a laptop CPU.
//!
//! ```text
//! cargo run --release --example quickstart [-- --out runs/quickstart --pf-steps 40 \
//!     --ner-steps 200 --tc-steps 100 --train 2000 --eval 400 --seed 0 --backend flex|ndarray \
//!     --teacher DIR]
//! ```
//!
//! 1. Fetches all-MiniLM-L6-v2 and the datasets into the asset cache (first run only).
//! 2. **Pre-finetunes it with MTPF-TPL**, briefly: one shared backbone and two LoRA groups on
//!    its last 2 layers, `ner` trained by word-level distillation on Brown sentences and `tc`
//!    by contrastive learning on SpamAssassin subject/body and BBC headline/paragraph pairs
//!    (train splits). Each batch trains its family's group and the backbone. The NER teacher is
//!    all-mpnet-base-v2 (110M parameters, its own tokenizer; words aligned by byte offsets),
//!    run once over the sentences into a teacher cache: by default its 768-wide last-layer
//!    states, which the student regresses through a projection; with `--teacher DIR` a tagger
//!    saved by `cargo run --release -p lora-bert-train --example ner_teacher` (all-mpnet-base-v2
//!    fine-tuned on CoNLL-2003, about an hour on 2 cores, which is why it is not the
//!    quickstart's default), whose word label distributions the student learns by KL, as
//!    `reproduce` does. Saved as a Hugging Face backbone plus one PEFT folder per group, then
//!    loaded back.
//! 3. **Fine-tunes two apps** (LoRA + head, backbone frozen), each twice: from the plain model
//!    with a fresh group of the same shape (no PF), and from the pre-finetuned backbone with a
//!    copy of its family's group (MTPF-TPL): WNUT-16 NER (entity F1) and VADER movie-review
//!    sentiment (accuracy). The downstream data never appears in pre-finetuning.
//! 4. Prints the test scores side by side and the size of each app next to the backbone's,
//!    and draws the learning curves to PNG files.
//!
//! The defaults are a demonstration sized for 2 CPU cores, not a measurement: with a few
//! dozen steps the differences are mostly noise. `docs/results.md` has the real comparison.

#[path = "common/args.rs"]
mod args;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use lora_bert::adapters::{AdaptedModel, Lora};
use lora_bert::assets::{self, AssetCache, ModelFiles};
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::batch::TextEncoder;
use lora_bert::data::registry::{self, BrownTags, Dataset, DatasetId, PairSource};
use lora_bert::data::split::stratified_subset;
use lora_bert::data::token::encode_tagged;
use lora_bert::data::{LabelVocab, LabeledText, TaggedSentence, TextPair};
use lora_bert::encoder::tokenizer::{BertTokenizer, LengthPolicy};
use lora_bert::encoder::{BertModel, Device, MpnetModel};
use lora_bert::train::finetune::{TokenEvalOptions, evaluate_texts, evaluate_tokens};
use lora_bert::train::teacher::{
    CacheOptions, TAGGER_MANIFEST, WordPooling, load_tagger, words_of,
};
use lora_bert::train::{
    AppSetup, EncoderTeacher, FineTuneConfig, FineTuneMode, FitReport, NerData, NerSet, PfConfig,
    SoftLabels, TcData, Teacher, TeacherCache, TrainConfig, Variant, finetune_texts,
    finetune_tokens, load_pf, plot, pre_finetune, save_pf,
};
use lora_bert::{Backend, device};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Pre-finetunes all-MiniLM-L6-v2 with MTPF-TPL (briefly), then fine-tunes WNUT-16 NER and
/// VADER movie-review sentiment from the plain model and from the pre-finetuned one, and
/// compares them.
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-`.
#[command(
    name = "quickstart",
    args_override_self = true,
    allow_hyphen_values = true
)]
struct Cli {
    /// Outputs: pre-finetuned model, apps, curves
    #[arg(long, value_name = "DIR", default_value = "runs/quickstart")]
    out: PathBuf,
    /// Pre-finetuning steps
    #[arg(long, value_name = "N", default_value_t = 40, value_parser = at_least_1)]
    pf_steps: usize,
    /// Fine-tuning steps of each WNUT-16 run
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = at_least_1)]
    ner_steps: usize,
    /// Fine-tuning steps of each VADER run
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = at_least_1)]
    tc_steps: usize,
    /// At most N downstream training examples per task
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = at_least_1)]
    train: usize,
    /// Dev and test examples per task
    #[arg(long, value_name = "N", default_value_t = 400, value_parser = at_least_1)]
    eval: usize,
    /// Seed of data subsets, batches and new weights
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// CPU backend: flex or ndarray (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "NAME")]
    backend: Option<Backend>,
    /// The NER family learns the word labels of this tagger (saved by the ner_teacher example)
    /// instead of all-mpnet-base-v2's states
    #[arg(long, value_name = "DIR")]
    teacher: Option<PathBuf>,
}

/// A count that must be at least 1.
fn at_least_1(value: &str) -> std::result::Result<usize, String> {
    match value.parse::<usize>().map_err(|e| e.to_string())? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

struct Args {
    out: PathBuf,
    pf_steps: usize,
    ner_steps: usize,
    tc_steps: usize,
    train: usize,
    eval: usize,
    seed: u64,
    backend: Backend,
    /// A tagger teacher's folder; `None`: all-mpnet-base-v2's states.
    teacher: Option<PathBuf>,
}

impl Cli {
    fn into_args(self) -> Result<Args> {
        let args = Args {
            out: self.out,
            pf_steps: self.pf_steps,
            ner_steps: self.ner_steps,
            tc_steps: self.tc_steps,
            train: self.train,
            eval: self.eval,
            seed: self.seed,
            backend: self.backend.map_or_else(Backend::default_cpu, Ok)?,
            teacher: self.teacher,
        };
        if let Some(dir) = &args.teacher
            && !dir.join(TAGGER_MANIFEST).is_file()
        {
            return Err(format!(
                "--teacher {}: not a tagger folder (no {TAGGER_MANIFEST}; make one with `cargo run \
                 --release -p lora-bert-train --example ner_teacher -- --out DIR`)",
                dir.display()
            )
            .into());
        }
        Ok(args)
    }
}

fn main() -> std::process::ExitCode {
    args::exit(run())
}

fn run() -> Result<()> {
    // Faster CPU passes: see lora_bert::malloc.
    lora_bert::malloc::keep_freed_memory();
    let args = Cli::parse().into_args()?;
    let started = Instant::now();
    // Before any work: a file or an unwritable place is refused now, not after pre-finetuning.
    std::fs::create_dir_all(&args.out).map_err(|e| format!("--out {}: {e}", args.out.display()))?;
    let inference = device::device(args.backend)?;
    let training = device::autodiff(inference.clone());
    let cache = AssetCache::from_env()?;
    let files = assets::all_minilm_l6_v2(&cache)?;
    // 64 tokens per row keeps the demo fast; longer inputs are windowed (NER) or truncated.
    let tokenizer = BertTokenizer::from_file(&files.tokenizer)?
        .with_max_length(64)
        .with_length_policy(LengthPolicy::Window { stride: 16 });
    println!(
        "all-MiniLM-L6-v2 from {}, backend {}, outputs in {}\n",
        files.dir.display(),
        args.backend,
        args.out.display()
    );

    // 1. MTPF-TPL pre-finetuning.
    let pf_dir = args.out.join("pf");
    let pf_config = pf_config(&args, &tokenizer);
    let pf_report = pretrain(&args, &cache, &files, &tokenizer, &inference, &pf_config)?;
    plot::learning_curves(
        args.out.join("curves-pf.png"),
        "MTPF-TPL pre-finetuning (NER distillation and TC contrastive steps)",
        "metric (minus the mean loss)",
        &[("MTPF-TPL", &pf_report)],
    )?;
    let plain = || -> Result<AdaptedModel<Lora>> {
        Ok(AdaptedModel::new(BertModel::load(&files.dir, &training)?.0))
    };
    let pre_finetuned = || -> Result<AdaptedModel<Lora>> { Ok(load_pf(&pf_dir, &training)?) };

    // 2. Two apps, each from the plain model and from the pre-finetuned one.
    let mut rows = Vec::new();
    let ner = registry::wnut16(&cache)?;
    let tc = match registry::load(DatasetId::VaderMovieReviews, &cache)? {
        Dataset::Texts(splits) => splits,
        Dataset::Tokens(_) => unreachable!("VADER movie reviews is a text dataset"),
    };
    let ner_vocab = LabelVocab::from_tags(ner.iter().flat_map(|s| s.tags.iter()))?;
    let tc_vocab = LabelVocab::from_labels(tc.iter().map(|t| t.label.as_str()))?;
    let mut curves: Vec<(String, FitReport)> = Vec::new();
    for (variant, model) in [("no PF", plain()?), ("MTPF-TPL", pre_finetuned()?)] {
        let group = (variant != "no PF").then_some("ner");
        let (score, fit) = ner_app(
            &args, &tokenizer, model, group, &ner, &ner_vocab, &pf_config,
        )?;
        rows.push((
            "WNUT-16 NER",
            "entity F1",
            ner.test.len().min(args.eval),
            score,
        ));
        curves.push((format!("wnut16/{variant}"), fit));
    }
    for (variant, model) in [("no PF", plain()?), ("MTPF-TPL", pre_finetuned()?)] {
        let group = (variant != "no PF").then_some("tc");
        let (score, fit) = tc_app(&args, &tokenizer, model, group, &tc, &tc_vocab, &pf_config)?;
        rows.push((
            "VADER movies",
            "accuracy",
            tc.test.len().min(args.eval),
            score,
        ));
        curves.push((format!("vader-movies/{variant}"), fit));
    }
    for (task, metric) in [("wnut16", "entity F1"), ("vader-movies", "accuracy")] {
        let runs: Vec<(&str, &FitReport)> = curves
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("{task}/")))
            .map(|(name, fit)| (&name[task.len() + 1..], fit))
            .collect();
        plot::learning_curves(
            args.out.join(format!("curves-{task}.png")),
            &format!("{task}: fine-tuning LoRA + head"),
            metric,
            &runs,
        )?;
    }

    // 3. The table.
    println!("\n== test scores ==");
    println!(
        "{:<14} {:>6} {:<10} {:>8} {:>9} {:>8}",
        "task", "test", "metric", "no PF", "MTPF-TPL", "delta"
    );
    for pair in rows.chunks(2) {
        let (task, metric, n, base) = pair[0];
        let (_, _, _, pf) = pair[1];
        println!(
            "{task:<14} {n:>6} {metric:<10} {base:>8.4} {pf:>9.4} {:>+8.4}",
            pf - base
        );
    }
    let backbone = dir_size(&pf_dir.join("model.safetensors"));
    println!("\n== one backbone, many apps ==");
    println!(
        "backbone  {:>9.2} MB  {}",
        mb(backbone),
        pf_dir.join("model.safetensors").display()
    );
    for app in ["wnut16", "vader-movies"] {
        let dir = args.out.join("apps").join(app);
        let size = dir_size(&dir);
        println!(
            "app       {:>9.2} MB  {} ({:.2}% of the backbone)",
            mb(size),
            dir.display(),
            100.0 * size as f64 / backbone.max(1) as f64
        );
    }
    println!(
        "\nlearning curves: {}/curves-{{pf,wnut16,vader-movies}}.png",
        args.out.display()
    );
    println!("wall time {:.1}s", started.elapsed().as_secs_f64());
    println!(
        "\nA demonstration sized for a laptop CPU: with this few steps the differences are \
         mostly noise."
    );
    Ok(())
}

/// Pre-finetuning's configuration, shared with the no-PF apps (same group shape).
fn pf_config(args: &Args, tokenizer: &BertTokenizer) -> PfConfig {
    let mut train = TrainConfig::new(args.pf_steps);
    train.learning_rate = 5e-5;
    train.warmup_steps = args.pf_steps / 10;
    train.eval_every = Some((args.pf_steps / 2).max(1));
    train.seed = args.seed;
    train.log_every = 10;
    let mut config = PfConfig::new(train);
    config.batch_size = 16;
    config.dev_batches = 2;
    config.pad_id = tokenizer.pad_id();
    config.checkpoints = Some(args.out.join("pf-checkpoints"));
    if args.teacher.is_some() {
        config.soft_labels = Some(SoftLabels::default());
    }
    config
}

/// MTPF-TPL on Brown sentences (NER family) and spam/BBC pairs (TC family); saves to `out/pf`.
fn pretrain(
    args: &Args,
    cache: &AssetCache,
    files: &ModelFiles,
    tokenizer: &BertTokenizer,
    inference: &Device,
    config: &PfConfig,
) -> Result<FitReport> {
    let n = config.batch_size * args.pf_steps;
    let sentences: Vec<TaggedSentence> = registry::brown_pos(cache, BrownTags::Raw)?
        .train
        .into_iter()
        .filter(|s| (4..=40).contains(&s.len()))
        .take(n)
        .map(|s| TaggedSentence {
            tags: vec!["O".to_owned(); s.len()],
            tokens: s.tokens,
        })
        .collect();
    let o_vocab = LabelVocab::new(vec!["O".to_owned()])?;
    let examples = encode_tagged(
        tokenizer,
        &sentences,
        &o_vocab,
        LabelAlignment::FirstSubword,
    )?;
    let mut pairs: Vec<TextPair> = Vec::new();
    for source in [
        PairSource::SpamSubjectBody,
        PairSource::BbcHeadlineParagraph,
    ] {
        pairs.extend(registry::pairs(source, cache)?.into_iter().take(n / 2));
    }
    let pairs = TextEncoder::new(tokenizer).encode_pairs(&pairs)?;
    println!(
        "pre-finetuning data: {} Brown sentences (NER family), {} text pairs (TC family)",
        sentences.len(),
        pairs.len()
    );

    let teacher = teacher_cache(args, cache, &sentences, inference)?;
    let model =
        AdaptedModel::new(BertModel::load(&files.dir, &device::autodiff(inference.clone()))?.0);
    println!(
        "MTPF-TPL: groups `ner` and `tc` (LoRA r={} on {:?} of the last {} layers), {} steps",
        config.rank, config.targets, config.k, args.pf_steps
    );
    let (pf, report) = pre_finetune(
        Variant::MtpfTpl,
        model,
        Some(NerData {
            train: NerSet {
                sentences: &sentences,
                examples: &examples,
            },
            dev: None,
            teacher: &teacher,
        }),
        Some(TcData {
            train: &pairs,
            dev: None,
        }),
        config,
    )?;
    save_pf(&pf, args.out.join("pf"))?;
    println!(
        "pre-finetuned: {} NER and {} TC steps, saved to {}\n",
        report.steps_of(lora_bert::train::Family::Ner),
        report.steps_of(lora_bert::train::Family::Tc),
        args.out.join("pf").display()
    );
    Ok(report.fit)
}

/// The NER family's teacher outputs on `sentences`, computed once into `out`: the word logits
/// of `args.teacher`'s tagger, or all-mpnet-base-v2's last-layer word states.
fn teacher_cache(
    args: &Args,
    cache: &AssetCache,
    sentences: &[TaggedSentence],
    inference: &Device,
) -> Result<TeacherCache> {
    let mpnet = assets::all_mpnet_base_v2(cache)?;
    let encoder = MpnetModel::load(&mpnet.dir, inference)?.0;
    let tokenizer = BertTokenizer::from_file(&mpnet.tokenizer)?
        .with_max_length(128)
        .with_length_policy(LengthPolicy::Window { stride: 32 });
    let started = Instant::now();
    let build = |teacher: &dyn Teacher, folder: &str| {
        TeacherCache::build(
            teacher,
            &words_of(sentences),
            args.out.join(folder),
            &CacheOptions::default(),
            |_| {},
        )
    };
    let (cache, what) = match &args.teacher {
        Some(dir) => {
            let (tagger, _, manifest) = load_tagger(dir, encoder)?;
            let teacher = EncoderTeacher::new(tagger, tokenizer, inference)?
                .with_pooling(WordPooling::First)
                .with_description(manifest.description());
            (
                build(&teacher, "teacher-cache-tagger")?,
                "tagger word labels",
            )
        }
        None => {
            let teacher = EncoderTeacher::new(encoder, tokenizer, inference)?
                .with_description("all-mpnet-base-v2, last layer, mean");
            (
                build(&teacher, "teacher-cache-mpnet")?,
                "all-mpnet-base-v2 states",
            )
        }
    };
    println!(
        "teacher ({what}): {} sentences cached in {:.1}s",
        cache.num_sentences(),
        started.elapsed().as_secs_f64()
    );
    Ok(cache)
}

/// The fine-tuning configuration of an app: LoRA + head; a copy of `group` when given, else a
/// fresh group shaped like the pre-finetuning groups.
fn app_config(
    args: &Args,
    task: &str,
    steps: usize,
    group: Option<&str>,
    pf: &PfConfig,
) -> FineTuneConfig {
    let mut setup = AppSetup::new(task, FineTuneMode::LoraHead).with_lora(pf.lora());
    if let Some(group) = group {
        setup = setup.with_init_group(group);
    }
    let mut train = TrainConfig::new(steps);
    // A fresh head and group learn slowly at 1e-3 in a few hundred steps (text apps stay at
    // the majority class for a while); 3e-3 is what the reproduce harness uses.
    train.learning_rate = 3e-3;
    train.warmup_steps = steps / 10;
    train.eval_every = Some((steps / 4).max(1));
    train.seed = args.seed;
    train.log_every = 10;
    let mut config = FineTuneConfig::new(setup, train);
    config.seed = args.seed;
    config
}

/// WNUT-16 from `model`: returns the test entity F1 and the training report.
fn ner_app(
    args: &Args,
    tokenizer: &BertTokenizer,
    model: AdaptedModel<Lora>,
    group: Option<&str>,
    data: &registry::Splits<TaggedSentence>,
    vocab: &LabelVocab,
    pf: &PfConfig,
) -> Result<(f64, FitReport)> {
    println!(
        "WNUT-16 NER from {}",
        group.map_or("the plain model".into(), |g| format!(
            "the pre-finetuned model, group `{g}`"
        ))
    );
    let train = subset(&data.train, args.train, args.seed, |_| ());
    let (dev, test) = (head(&data.dev, args.eval), head(&data.test, args.eval));
    let encode =
        |s: &[TaggedSentence]| encode_tagged(tokenizer, s, vocab, LabelAlignment::FirstSubword);
    let (train_ex, dev_ex, test_ex) = (encode(&train)?, encode(&dev)?, encode(&test)?);
    let config = app_config(args, "wnut16", args.ner_steps, group, pf);
    let pad = tokenizer.pad_id();
    let (classifier, fit) =
        finetune_tokens(model, &train_ex, (&dev_ex, &dev), vocab, &config, pad)?;
    let report = evaluate_tokens(
        &classifier,
        &test_ex,
        &test,
        vocab,
        &TokenEvalOptions::new(pad),
    )?;
    if group.is_some() {
        classifier.save(args.out.join("apps").join("wnut16"), vocab)?;
    }
    Ok((report.averages.micro_avg.f1, fit))
}

/// VADER movie-review sentiment from `model`: returns the test accuracy and the report.
fn tc_app(
    args: &Args,
    tokenizer: &BertTokenizer,
    model: AdaptedModel<Lora>,
    group: Option<&str>,
    data: &registry::Splits<LabeledText>,
    vocab: &LabelVocab,
    pf: &PfConfig,
) -> Result<(f64, FitReport)> {
    println!(
        "VADER movie reviews from {}",
        group.map_or("the plain model".into(), |g| format!(
            "the pre-finetuned model, group `{g}`"
        ))
    );
    let train = subset(&data.train, args.train, args.seed, |t| t.label.clone());
    let (dev, test) = (head(&data.dev, args.eval), head(&data.test, args.eval));
    let encoder = TextEncoder::new(tokenizer);
    let encode = |t: &[LabeledText]| encoder.encode_texts(t, |l| vocab.id(l));
    let (train, dev, test) = (encode(&train)?, encode(&dev)?, encode(&test)?);
    let config = app_config(args, "vader-movies", args.tc_steps, group, pf);
    let (classifier, fit) = finetune_texts(model, &train, &dev, vocab, &config)?;
    let report = evaluate_texts(&classifier, &test, vocab, config.eval_batch_size)?;
    if group.is_some() {
        classifier.save(args.out.join("apps").join("vader-movies"), vocab)?;
    }
    Ok((report.accuracy, fit))
}

/// About `n` training items, stratified by `label`, in their original order.
fn subset<T: Clone, L: std::hash::Hash + Eq>(
    items: &[T],
    n: usize,
    seed: u64,
    label: impl Fn(&T) -> L,
) -> Vec<T> {
    let fraction = (n as f64 / items.len().max(1) as f64).min(1.0);
    let labels: Vec<L> = items.iter().map(label).collect();
    let keep = if fraction < 1.0 {
        stratified_subset(&labels, fraction, seed).unwrap_or_else(|_| (0..items.len()).collect())
    } else {
        (0..items.len()).collect()
    };
    keep.into_iter().take(n).map(|i| items[i].clone()).collect()
}

fn head<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    items[..n.min(items.len())].to_vec()
}

/// Bytes of a file, or of every file under a folder.
fn dir_size(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| dir_size(&e.path()))
            .sum(),
        Err(_) => 0,
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
