//! The probe protocol (`--protocol probe`, issue 17's primary evaluation): a linear probe on
//! the frozen features of each arm, fitted to convergence, instead of fine-tuning.
//!
//! For each arm (and pre-finetuning seed) and task, the training, dev and test examples are
//! encoded once through the arm's model: the last hidden state of every token for token
//! tasks, the mean-pooled one for text tasks, MTPF-TPL through its family's group. The states
//! are kept in `OUT/features` ([`crate::feature_cache`]), so a rerun, a resumed run or a task
//! with the same sentences reads them instead of encoding again. Then, for
//! each fraction and seed, a multinomial logistic regression is fitted by full-batch L-BFGS on
//! the seed's share of the training examples along the regularisation path of [`GRID`]
//! (strongest first, each fit warm-started from the previous one, stopping once the dev score
//! has fallen twice in a row), the strength with the best dev score is kept, and its probe is
//! scored on test with per-item counts.
//!
//! "100%" is the whole training split, or its first `--probe-train` examples (quick 1000, full
//! 5000) of a fixed shuffle when it is larger; "10%" is a seeded stratified tenth of that.
//! Dev and test are the whole splits in the full profile (the quick one keeps its `dev` and
//! `test` samples). With all the examples the
//! fit does not depend on the seed (the problem is convex and starts from zero weights), so it
//! is computed once and recorded under every seed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use lora_bert::adapters::{AdaptedModel, Lora};
use lora_bert::data::align::LabelAlignment;
use lora_bert::data::batch::{EncodedRows, TextEncoder};
use lora_bert::data::split::stratified_subset;
use lora_bert::data::token::{TokenExample, encode_tagged};
use lora_bert::data::{LabeledText, TaggedSentence};
use lora_bert::encoder::tokenizer::BertTokenizer;
use lora_bert::encoder::{Device, Route};
use lora_bert::metrics::bootstrap::Counts;
use lora_bert::metrics::{Mode, NerReport};
use lora_bert::train::TokenMetric;
use lora_bert::train::finetune::{TokenEvalOptions, stitch_word_ids, word_tags};
use lora_bert::train::probe::{
    Layer, LinearProbe, ProbeConfig, ProbeFit, labelled_tokens, text_states_at, token_states_at,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::data::TaskData;
use crate::feature_cache::{FeatureCache, Key};
use crate::plan::{Arm, Kind, Plan, Setting, family_name};
use crate::runs::{EVAL_SEED, RunRecord, Task, eval_sample, write_json};

/// The L2 strengths tried, strongest first: [`L2_GRID`](lora_bert::train::probe::L2_GRID)
/// without its strongest two and extended two decades weaker. On Brown POS (plain backbone,
/// 2000 sentences) that grid's strongest two scored 0.35 and 0.48 on dev and took 271 of its
/// 514 s, and its weakest, 1e-4, was the best (dev 0.844). Small training sets (a tenth of a
/// text task) still get 0.1.
pub const GRID: [f64; 11] = [
    1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6,
];

/// Examples per forward pass when encoding.
const BATCH: usize = 64;

/// One run to do: its fraction, seed and where its record goes.
pub struct Job {
    pub fraction: f64,
    pub seed: u64,
    pub path: PathBuf,
}

/// The first `cap` indices of a fixed shuffle of `n` (all of them, in order, when `n` is at
/// most `cap`).
fn capped(n: usize, cap: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    if n > cap {
        all.shuffle(&mut ChaCha8Rng::seed_from_u64(EVAL_SEED));
        all.truncate(cap);
        all.sort_unstable();
    }
    all
}

/// The positions (into the capped training set) a run of `fraction` and `seed` trains on.
fn share(labels: &[String], fraction: f64, seed: u64) -> Result<Vec<usize>> {
    if fraction >= 1.0 {
        return Ok((0..labels.len()).collect());
    }
    Ok(stratified_subset(labels, fraction, seed)?)
}

/// What a probe is scored with: per-item counts and their score.
fn scored(items: Vec<Counts>) -> (f64, Vec<Counts>) {
    (Counts::sum(&items).score(), items)
}

/// A scored split of a token task: its sentences, their encoded windows and the windows'
/// token states.
struct TokenSplit {
    gold: Vec<TaggedSentence>,
    examples: Vec<TokenExample>,
    states: Vec<Vec<f32>>,
}

impl TokenSplit {
    /// The probe's per-sentence counts (entities or tokens, as `metric` scores) and score.
    fn score(
        &self,
        probe: &LinearProbe,
        task: &Task,
        metric: TokenMetric,
        options: &TokenEvalOptions,
    ) -> Result<(f64, Vec<Counts>)> {
        let logits = self
            .states
            .iter()
            .map(|s| probe.logits(s))
            .collect::<lora_bert::train::Result<Vec<_>>>()?;
        let ids = stitch_word_ids(
            &self.examples,
            &logits,
            self.gold.len(),
            &task.vocab,
            options,
        )?;
        let pred = word_tags(ids, &task.vocab);
        let gold: Vec<Vec<String>> = self.gold.iter().map(|s| s.tags.clone()).collect();
        let counts = NerReport::sentence_counts(&gold, &pred, Mode::Default)?;
        Ok(scored(
            counts
                .iter()
                .map(|c| match metric {
                    TokenMetric::EntityF1 => c.entities,
                    TokenMetric::Accuracy => c.tokens,
                })
                .collect(),
        ))
    }
}

/// A scored split of a text task: pooled features `[n, hidden]` and labels.
struct TextSplit {
    features: Vec<f32>,
    labels: Vec<u32>,
}

impl TextSplit {
    /// The probe's per-text counts (right or wrong) and accuracy.
    fn score(&self, probe: &LinearProbe) -> Result<(f64, Vec<Counts>)> {
        let predicted = probe.predict(&self.features)?;
        Ok(scored(
            predicted
                .iter()
                .zip(&self.labels)
                .map(|(p, g)| Counts::unit(p == g))
                .collect(),
        ))
    }
}

/// Encoded features of one task through one arm's model.
enum Features {
    Tokens {
        train: Vec<TokenExample>,
        train_states: Vec<Vec<f32>>,
        /// One label per capped training sentence (all equal: token tasks are not
        /// stratified).
        strata: Vec<String>,
        dev: TokenSplit,
        test: TokenSplit,
        metric: TokenMetric,
    },
    Texts {
        train: Vec<f32>,
        train_labels: Vec<u32>,
        strata: Vec<String>,
        dev: TextSplit,
        test: TextSplit,
    },
}

/// How states are computed: one model on one route, through the feature cache.
pub struct StateSource<'a> {
    pub model: &'a AdaptedModel<Lora>,
    pub route: Route,
    /// The route's name in cache keys.
    pub route_name: String,
    /// [`feature_cache::backbone_id`] of the model's folder.
    pub backbone: String,
    pub cache: &'a FeatureCache,
    pub pad: u32,
    /// Which hidden state is read.
    pub layer: Layer,
}

impl StateSource<'_> {
    fn key(&self, pooling: &str, rows: &[&[u32]]) -> Key {
        let config = self.model.config();
        let layer = match self.layer {
            Layer::Hidden(i) if i != config.num_hidden_layers => format!("hidden-{i}"),
            _ => "last".to_owned(),
        };
        Key::new(
            &self.backbone,
            &self.route_name,
            &layer,
            pooling,
            config.hidden_size,
            rows,
        )
    }

    /// Every token's state at the source's layer, per example.
    fn tokens(&self, examples: &[TokenExample]) -> Result<(Vec<Vec<f32>>, bool)> {
        let rows: Vec<&[u32]> = examples.iter().map(|e| e.input_ids.as_slice()).collect();
        let (flat, hit) = self.cache.get_or(&self.key("tokens", &rows), || {
            Ok(token_states_at(
                self.model,
                &self.route,
                examples,
                BATCH,
                self.pad,
                self.layer,
            )?
            .concat())
        })?;
        let hidden = self.model.config().hidden_size;
        let total: usize = rows.iter().map(|r| r.len()).sum();
        if flat.len() != total * hidden {
            return Err(format!(
                "cached token states hold {} values, not {total} tokens x {hidden}",
                flat.len()
            )
            .into());
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut at = 0;
        for row in &rows {
            out.push(flat[at..at + row.len() * hidden].to_vec());
            at += row.len() * hidden;
        }
        Ok((out, hit))
    }

    /// The mean-pooled state at the source's layer of every row, `[rows, hidden]`.
    fn texts(&self, rows: &EncodedRows) -> Result<(Vec<f32>, bool)> {
        let ids: Vec<&[u32]> = (0..rows.len()).filter_map(|i| rows.ids(i)).collect();
        let (flat, hit) = self.cache.get_or(&self.key("mean", &ids), || {
            Ok(text_states_at(
                self.model,
                &self.route,
                rows,
                BATCH,
                self.layer,
            )?)
        })?;
        if flat.len() != rows.len() * self.model.config().hidden_size {
            return Err(format!("cached text states hold {} values", flat.len()).into());
        }
        Ok((flat, hit))
    }
}

/// Encodes `task` through `source`; also returns how many of its splits came from the cache.
fn encode(
    plan: &Plan,
    task: &Task,
    source: &StateSource,
    tokenizer: &BertTokenizer,
) -> Result<(Features, usize)> {
    let (dev_n, test_n) = (plan.sizes.probe_dev, plan.sizes.probe_test);
    let mut hits = 0;
    fn counted<T>(hits: &mut usize, (x, hit): (T, bool)) -> T {
        *hits += usize::from(hit);
        x
    }
    let features = match &task.data {
        TaskData::Tokens(s) => {
            let Kind::Token(metric) = task.def.kind else {
                return Err(format!("{}: token data of a text task", task.def.name).into());
            };
            let train: Vec<TaggedSentence> = capped(s.train.len(), plan.sizes.probe_train)
                .into_iter()
                .map(|i| s.train[i].clone())
                .collect();
            let (dev, test) = (
                eval_sample(&s.dev, dev_n, |_| 0u8),
                eval_sample(&s.test, test_n, |_| 0u8),
            );
            let enc = |x: &[TaggedSentence]| {
                encode_tagged(tokenizer, x, &task.vocab, LabelAlignment::FirstSubword)
            };
            let (train_x, dev_x, test_x) = (enc(&train)?, enc(&dev)?, enc(&test)?);
            let (train_states, dev_states, test_states) = (
                counted(&mut hits, source.tokens(&train_x)?),
                counted(&mut hits, source.tokens(&dev_x)?),
                counted(&mut hits, source.tokens(&test_x)?),
            );
            Features::Tokens {
                train_states,
                strata: vec![String::new(); train.len()],
                train: train_x,
                dev: TokenSplit {
                    gold: dev,
                    examples: dev_x,
                    states: dev_states,
                },
                test: TokenSplit {
                    gold: test,
                    examples: test_x,
                    states: test_states,
                },
                metric,
            }
        }
        TaskData::Texts(s) => {
            let train: Vec<LabeledText> = capped(s.train.len(), plan.sizes.probe_train)
                .into_iter()
                .map(|i| s.train[i].clone())
                .collect();
            let label = |t: &LabeledText| t.label.clone();
            let (dev, test) = (
                eval_sample(&s.dev, dev_n, label),
                eval_sample(&s.test, test_n, label),
            );
            let encoder = TextEncoder::new(tokenizer);
            let enc = |x: &[LabeledText]| encoder.encode_texts(x, |l| task.vocab.id(l));
            let (train_x, dev_x, test_x) = (enc(&train)?, enc(&dev)?, enc(&test)?);
            let mut states = |x: &lora_bert::data::batch::EncodedTexts| -> Result<Vec<f32>> {
                Ok(counted(&mut hits, source.texts(x.rows())?))
            };
            Features::Texts {
                train: states(&train_x)?,
                train_labels: train_x.labels().to_vec(),
                strata: train.iter().map(|t| t.label.clone()).collect(),
                dev: TextSplit {
                    features: states(&dev_x)?,
                    labels: dev_x.labels().to_vec(),
                },
                test: TextSplit {
                    features: states(&test_x)?,
                    labels: test_x.labels().to_vec(),
                },
            }
        }
    };
    Ok((features, hits))
}

/// A fitted probe's dev and test results.
pub struct Outcome {
    pub dev: f64,
    pub test: f64,
    pub items: Vec<Counts>,
    pub steps: usize,
    /// The L2 strength chosen on dev.
    pub l2: f64,
    /// Whether the fit kept converged.
    pub converged: bool,
    pub train_examples: usize,
    pub dev_examples: usize,
    pub test_examples: usize,
}

impl Features {
    /// The probe's score and per-item counts on dev, or on test when `test`.
    fn score(
        &self,
        probe: &LinearProbe,
        task: &Task,
        options: &TokenEvalOptions,
        test: bool,
    ) -> Result<(f64, Vec<Counts>)> {
        match self {
            Features::Tokens {
                dev,
                test: t,
                metric,
                ..
            } => (if test { t } else { dev }).score(probe, task, *metric, options),
            Features::Texts { dev, test: t, .. } => (if test { t } else { dev }).score(probe),
        }
    }

    /// Dev and test items.
    fn sizes(&self) -> (usize, usize) {
        match self {
            Features::Tokens { dev, test, .. } => (dev.gold.len(), test.gold.len()),
            Features::Texts { dev, test, .. } => (dev.labels.len(), test.labels.len()),
        }
    }

    /// The training rows `(features, labels)` of the kept examples, and how many were kept.
    fn rows(&self, fraction: f64, seed: u64, hidden: usize) -> Result<(Vec<f32>, Vec<u32>, usize)> {
        Ok(match self {
            Features::Tokens {
                train,
                train_states,
                strata,
                ..
            } => {
                let keep = share(strata, fraction, seed)?;
                // The rows of the kept sentences (every window of each).
                let (features, labels) = if keep.len() == strata.len() {
                    labelled_tokens(train, train_states, hidden)?
                } else {
                    let wanted: std::collections::BTreeSet<usize> = keep.iter().copied().collect();
                    let picked: Vec<usize> = (0..train.len())
                        .filter(|&i| wanted.contains(&train[i].sentence))
                        .collect();
                    let examples: Vec<TokenExample> =
                        picked.iter().map(|&i| train[i].clone()).collect();
                    let states: Vec<Vec<f32>> =
                        picked.iter().map(|&i| train_states[i].clone()).collect();
                    labelled_tokens(&examples, &states, hidden)?
                };
                (features, labels, keep.len())
            }
            Features::Texts {
                train,
                train_labels,
                strata,
                ..
            } => {
                let keep = share(strata, fraction, seed)?;
                let mut features = Vec::with_capacity(keep.len() * hidden);
                let mut labels = Vec::with_capacity(keep.len());
                for &i in &keep {
                    features.extend_from_slice(&train[i * hidden..(i + 1) * hidden]);
                    labels.push(train_labels[i]);
                }
                (features, labels, keep.len())
            }
        })
    }

    /// Fits the probe for `fraction` and `seed`, choosing L2 on dev, and scores it on test.
    fn probe(
        &self,
        task: &Task,
        hidden: usize,
        fraction: f64,
        seed: u64,
        pad: u32,
        device: &Device,
    ) -> Result<Outcome> {
        let (features, labels, kept) = self.rows(fraction, seed, hidden)?;
        let options = TokenEvalOptions::new(pad);
        let Selected {
            probe,
            dev: dev_score,
            l2,
            converged,
            steps,
        } = select(
            &features,
            hidden,
            &labels,
            task.vocab.len(),
            &ProbeConfig::default(),
            device,
            |p| Ok(self.score(p, task, &options, false)?.0),
        )?;
        let (test_score, items) = self.score(&probe, task, &options, true)?;
        let (dev_examples, test_examples) = self.sizes();
        Ok(Outcome {
            dev: dev_score,
            test: test_score,
            items,
            steps,
            l2,
            converged,
            train_examples: kept,
            dev_examples,
            test_examples,
        })
    }
}

/// Most L-BFGS steps of a fit along the path: the path only ranks strengths, and the chosen
/// one is fitted on to convergence. On Brown POS (no PF, 5000 sentences, 115k rows, a step
/// about 0.8 s on 2 cores) the strongest strength had not converged after 1000 steps (757 s);
/// with 150 steps per strength the path took 17 minutes and chose 1e-4 (test 86.99%).
pub const PATH_STEPS: usize = 60;

/// Rows times the strongest strength the path starts from, at most: in the no-PF arm's full
/// grid runs the best strength was at most about `1000 / rows` (WNUT-16 at 100%, about 32k
/// token rows: 3e-2; Brown POS, 115k rows: 1e-4; a tenth of a text task, 500 rows, up to
/// 1e-1), so stronger ones only cost time, most on large token tasks.
pub const PATH_START: f64 = 3000.0;

/// The strengths of [`GRID`] the path visits for `rows` training rows: from the first at most
/// `PATH_START / rows` (the weakest one when none is).
fn path_grid(rows: usize) -> &'static [f64] {
    let cap = PATH_START / rows.max(1) as f64;
    let start = GRID
        .iter()
        .position(|&l2| l2 <= cap)
        .unwrap_or(GRID.len() - 1);
    &GRID[start..]
}

/// Fits a probe along the regularisation path of [`path_grid`] (strongest first, each fit
/// warm-started from the previous one, at most [`PATH_STEPS`] steps each) and keeps the one
/// with the best dev score, fitted on to convergence; the path stops once the dev score has
/// fallen twice in a row.
fn select(
    features: &[f32],
    hidden: usize,
    labels: &[u32],
    classes: usize,
    config: &ProbeConfig,
    device: &Device,
    dev_score: impl Fn(&LinearProbe) -> Result<f64>,
) -> Result<Selected> {
    let mut best: Option<(LinearProbe, f64, ProbeFit, f64)> = None;
    let (mut last, mut falls) = (f64::NEG_INFINITY, 0);
    let mut failed = None;
    let mut started = Instant::now();
    let path = ProbeConfig {
        max_steps: PATH_STEPS.min(config.max_steps),
        ..*config
    };
    LinearProbe::fit_path(
        features,
        hidden,
        labels,
        classes,
        path_grid(labels.len()),
        &path,
        device,
        |l2, probe, fit| {
            let score = match dev_score(probe) {
                Ok(score) => score,
                Err(e) => {
                    failed = Some(e);
                    return Ok(false);
                }
            };
            println!(
                "    L2 {l2:e}: dev {score:.4} ({} L-BFGS steps, {}, {:.0}s)",
                fit.steps,
                ending(fit),
                started.elapsed().as_secs_f64()
            );
            started = Instant::now();
            if best.as_ref().is_none_or(|b| score > b.1) {
                best = Some((probe.clone(), score, *fit, l2));
            }
            falls = if score < last { falls + 1 } else { 0 };
            last = score;
            Ok(falls < 2)
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    let (mut probe, mut dev, fit, l2) = best.ok_or("an empty L2 grid")?;
    let (mut steps, mut converged) = (fit.steps, fit.converged);
    if !converged {
        let (refined, more) =
            probe.refine(features, labels, &ProbeConfig { l2, ..*config }, device)?;
        dev = dev_score(&refined)?;
        println!(
            "    L2 {l2:e} fitted on: dev {dev:.4} ({} more L-BFGS steps, {}, {:.0}s)",
            more.steps,
            ending(&more),
            started.elapsed().as_secs_f64()
        );
        probe = refined;
        steps += more.steps;
        converged = more.converged;
    }
    Ok(Selected {
        probe,
        dev,
        l2,
        converged,
        steps,
    })
}

/// How a fit ended, for a progress line.
fn ending(fit: &ProbeFit) -> String {
    if fit.converged {
        "converged".to_owned()
    } else {
        format!("gradient {:.1e}", fit.gradient)
    }
}

/// The probe [`select`] keeps.
struct Selected {
    probe: LinearProbe,
    dev: f64,
    l2: f64,
    converged: bool,
    /// L-BFGS steps of the fit kept: along the path from the previous strength's fit, and
    /// after it.
    steps: usize,
}

/// Encodes `task` through `source` and fits one probe on all of its (capped) training
/// examples: a measurement outside the comparison's records (`reproduce layers`). Returns the
/// outcome and the encoding's seconds.
pub fn probe_all(
    plan: &Plan,
    task: &Task,
    source: &StateSource,
    tokenizer: &BertTokenizer,
) -> Result<(Outcome, f64)> {
    let started = Instant::now();
    let (features, _) = encode(plan, task, source, tokenizer)?;
    let encoding = started.elapsed().as_secs_f64();
    let hidden = source.model.config().hidden_size;
    let outcome = features.probe(task, hidden, 1.0, 0, source.pad, &source.model.device())?;
    Ok((outcome, encoding))
}

/// Runs the probe `jobs` of one arm (under `pf_seed`) on one task, writing a record per job.
#[allow(clippy::too_many_arguments)]
pub fn run_task(
    plan: &Plan,
    setting: &Setting,
    arm: Arm,
    pf_seed: u64,
    task: &Task,
    model: &AdaptedModel<Lora>,
    backbone: &str,
    cache: &FeatureCache,
    tokenizer: &BertTokenizer,
    jobs: &[Job],
) -> Result<Vec<RunRecord>> {
    let (route, route_name) = if arm == Arm::MtpfTpl {
        let group = task.def.family.group();
        (model.route(group)?, group.to_owned())
    } else {
        (Route::Base, "base".to_owned())
    };
    let source = StateSource {
        model,
        route,
        route_name,
        backbone: backbone.to_owned(),
        cache,
        pad: tokenizer.pad_id(),
        layer: Layer::Last,
    };
    let started = Instant::now();
    let (features, hits) = encode(plan, task, &source, tokenizer)?;
    let encoding = started.elapsed().as_secs_f64();
    println!(
        "  {} {}: features encoded in {encoding:.0}s ({hits} of 3 splits from the cache)",
        crate::runs::arm_folder(arm, pf_seed),
        task.def.name
    );
    let hidden = model.config().hidden_size;
    let device = model.device();
    // With all the examples the fit is the same under every seed: fitted once.
    let mut full: BTreeMap<u64, (Outcome, f64)> = BTreeMap::new();
    let mut records = Vec::new();
    for (k, job) in jobs.iter().enumerate() {
        let t = Instant::now();
        let reuse = job.fraction >= 1.0 && !full.is_empty();
        let (outcome, fit_seconds) = if reuse {
            let (o, s) = full.values().next().expect("not empty");
            (
                Outcome {
                    items: o.items.clone(),
                    ..*o
                },
                *s,
            )
        } else {
            let o = features.probe(
                task,
                hidden,
                job.fraction,
                job.seed,
                tokenizer.pad_id(),
                &device,
            )?;
            (o, t.elapsed().as_secs_f64())
        };
        let record = RunRecord {
            version: crate::runs::RECORD_VERSION,
            setting: setting.name(),
            arm: arm.name().into(),
            task: task.def.name.into(),
            family: family_name(task.def.family).into(),
            fraction: job.fraction,
            seed: job.seed,
            protocol: plan.protocol,
            metric: task.def.metric().into(),
            test: outcome.test,
            dev_best: outcome.dev,
            best_step: outcome.steps,
            steps: outcome.steps,
            train_examples: outcome.train_examples,
            dev_examples: outcome.dev_examples,
            test_examples: outcome.test_examples,
            // The encoding is charged to the first run; a reused fit costs nothing more.
            seconds: if reuse { 0.0 } else { fit_seconds } + if k == 0 { encoding } else { 0.0 },
            pf_seed,
            lr: None,
            converged: Some(outcome.converged),
            items: outcome.items.clone(),
        };
        write_json(&job.path, &record)?;
        if job.fraction >= 1.0 && !reuse {
            full.insert(job.seed, (outcome, fit_seconds));
        }
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_starts_lower_for_more_rows() {
        assert_eq!(
            path_grid(500),
            &GRID[..],
            "a small set tries every strength"
        );
        assert_eq!(path_grid(32_000)[0], 3e-2);
        assert_eq!(path_grid(115_000)[0], 1e-2);
        assert_eq!(path_grid(usize::MAX), &GRID[GRID.len() - 1..]);
        assert_eq!(path_grid(0), &GRID[..]);
        for rows in [1, 10, 1000, 10_000, 1_000_000] {
            let grid = path_grid(rows);
            assert_eq!(grid.last(), GRID.last(), "the weak end is always there");
        }
    }
}
