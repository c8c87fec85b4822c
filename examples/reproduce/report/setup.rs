//! The report's opening: what ran and where, the primary endpoints stated before any table,
//! and the setup (backbone, pre-finetuning, teacher, data kept apart, downstream protocol, the
//! tasks' sizes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::Result;
use crate::plan::{Plan, Setting, TASKS};
use crate::runs::{RunRecord, protocol_name};

use super::format::{hours, machine, pf_seconds, span, today};
use super::stats::pct;
use super::{Ran, file_name};

/// The title, the commands, the machine and the compute, the files of every run.
pub(super) fn header(w: &mut String, ran: &Ran, runs_json: &Path, items_gz: &Path) -> Result<()> {
    let Ran {
        plan, ctx, records, ..
    } = ran;
    let compute: f64 = records.iter().map(|r| r.seconds).sum::<f64>()
        + ctx.pf.iter().map(pf_seconds).sum::<f64>()
        + ctx.teacher_seconds.unwrap_or(0.0);
    let resumed_pf = ctx.pf.iter().any(|p| p.fit.resumed_from.is_some());
    writeln!(w, "# Results: does MTPF-TPL keep both families' gains?\n")?;
    writeln!(
        w,
        "Written by the `reproduce` example on {} from {} finished runs{}. The commands that \
         made them (rerunning one resumes it: finished runs are kept):\n",
        today(),
        records.len(),
        if ctx.unfinished > 0 {
            format!(
                "; **partial: {} runs of the last command are not finished, the tables cover \
                 the finished ones only**",
                ctx.unfinished
            )
        } else {
            String::new()
        }
    )?;
    writeln!(w, "```text\n{}\n```\n", ctx.commands.join("\n"))?;
    if plan.report_only {
        writeln!(
            w,
            "Rendered from the records by `{}`: a report-only command runs nothing, and its \
             sizes are the folder's pins (`plan.json`, `plan-PROTOCOL.json`), not its flags.\n",
            plan.command
        )?;
    }
    writeln!(w, "- machine: {}; backend {}", machine(), plan.backend)?;
    writeln!(
        w,
        "- compute: {} in all (pre-finetuning, teacher and every finished run, summed over the \
         sessions that ran them{})",
        hours(compute),
        if resumed_pf {
            "; a pre-finetuning resumed from a checkpoint counts its timed steps' rate over all \
             its steps"
        } else {
            ""
        }
    )?;
    writeln!(
        w,
        "- every run: [`{runs}`]({runs}) (one record per line, per arm × task × fraction × \
         seed); the per-item test counts the intervals are drawn from: [`{items}`]({items})\n",
        runs = file_name(runs_json),
        items = file_name(items_gz),
    )?;
    Ok(())
}

/// The primary endpoints, stated before any table.
pub(super) fn endpoints(w: &mut String, ran: &Ran) -> Result<()> {
    let Ran {
        plan,
        damage_checks,
        ..
    } = ran;
    let family_tasks = |family: &str| ran.family_tasks(family);
    writeln!(w, "## Primary endpoints\n")?;
    let listed = |family: &str| {
        let ft = family_tasks(family);
        if ft.is_empty() {
            "none in these records".to_owned()
        } else {
            ft.join(", ")
        }
    };
    writeln!(
        w,
        "Stated before any table: the family averages (means over tasks of the per-task mean \
         test scores) of the NER family's entity-F1 tasks ({}) and of the text tasks ({}), at \
         100% and at 10% of the training data, under the {} protocol; each arm against no PF, \
         and MTPF-TPL against each individual pre-finetuning and naive multi-task \
         pre-finetuning, with 95% paired bootstrap intervals. {}\n",
        listed("NER"),
        listed("TC"),
        crate::runs::protocol_name(plan.protocol),
        if damage_checks.is_empty() {
            String::new()
        } else {
            format!(
                "{} (tag accuracy, not entity F1) is reported on its own as a damage check, \
                 outside the NER average.",
                damage_checks.join(", ")
            )
        }
    )?;
    Ok(())
}

/// The setup and the table of the tasks' sizes.
pub(super) fn setup(w: &mut String, ran: &Ran) -> Result<()> {
    let Ran {
        plan,
        ctx,
        records,
        fractions,
        seeds,
        tasks,
        ..
    } = ran;
    let s = &plan.sizes;
    let pf_default = PfDefaults::of(plan);
    writeln!(w, "## Setup\n")?;
    writeln!(
        w,
        "- **Backbone**: all-MiniLM-L6-v2 (6 layers, hidden 384, 22.7M parameters), {} tokens \
         per row (longer sentences windowed, longer texts truncated).",
        s.max_len
    )?;
    let pf_defaults = lora_bert::train::PfConfig::new(lora_bert::train::TrainConfig::new(1));
    let ner_objective = match plan.teacher.tagger_dir(&plan.out) {
        Some(_) => format!(
            "the tagger teacher's word label distributions (first piece of each word, cached \
             once; see the teacher below), learned by KL at temperature {} (weight of the \
             cross-entropy on its argmax {}) through a token head that is dropped after \
             pre-finetuning",
            crate::pf::SOFT_LABELS.temperature,
            crate::pf::SOFT_LABELS.hard_weight
        ),
        None => format!(
            "word-level {} distillation of all-mpnet-base-v2's last hidden layer (mean of each \
             word's pieces, cached once)",
            match plan.setting.distill {
                lora_bert::train::DistillLoss::Mse => "MSE",
                lora_bert::train::DistillLoss::Cosine => "cosine (1 − cos per word)",
            }
        ),
    };
    writeln!(
        w,
        "- **Pre-finetuning** (`{}` setting): {} steps of {} rows of at most {} tokens, AdamW \
         lr {} (10% warm-up, linear decay), every parameter of the backbone trained; the family \
         groups at lr {} and the objectives' heads at lr {} (parameter groups of their own); \
         no weight decay on biases and LayerNorm. NER family: {} on {} Brown sentences; TC family: symmetric InfoNCE (temperature 0.05, \
         in-batch negatives, mean pooling) on {} text pairs ({}). A further {} sentences and \
         {} pairs are held out as the pre-finetuning dev set (best checkpoint by dev loss). \
         Multi-task arms run twice the steps (each family as many as its individual \
         pre-finetuning) and {}; their records count the steps of each family. \
         MTPF-TPL: LoRA groups `ner` and `tc` (r = {}, alpha = 2r, on {} of the last {} \
         layers), each batch through its family's group.",
        plan.setting.name(),
        s.pf_steps,
        s.pf_batch,
        s.max_len.min(crate::pf::MAX_LEN),
        s.pf_lr,
        pf_defaults.adapter_lr,
        pf_defaults.head_lr,
        ner_objective,
        s.pf_sentences,
        s.pf_pairs,
        ctx.pf_sources
            .iter()
            .map(|(n, c)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        s.pf_dev,
        s.pf_dev,
        match pf_default.temperature {
            None => "alternate the families step by step (equal budgets)".to_owned(),
            Some(t) => format!(
                "draw each step's family with probability ∝ n^(1/T), T = {t} (equal budgets in \
                 expectation)"
            ),
        },
        pf_default.rank,
        pf_default.targets,
        pf_default.k,
    )?;
    if let Some(dir) = plan.teacher.tagger_dir(&plan.out) {
        // Read from the teacher's own files, whichever command trained it.
        match crate::pf::teacher_section(&dir) {
            Ok(section) => writeln!(w, "\n{section}")?,
            Err(e) => writeln!(w, "\nTeacher: not finished ({e}).\n")?,
        }
    }
    writeln!(
        w,
        "- **Kept apart**: the Brown corpus is split by document (10% of each genre's files to \
         dev, 10% to test); its train documents are halved per genre (alternating in file-name \
         order). Pre-finetuning reads only the first half (sentences and neighbouring-sentence \
         pairs) and the train splits of SpamAssassin and BBC News, which are not downstream \
         tasks; the Brown downstream tasks train on the second half and are scored on the \
         dev/test documents. The other downstream datasets never reach pre-finetuning."
    )?;
    if plan.protocol == crate::runs::Protocol::Probe {
        writeln!(
            w,
            "- **Downstream protocol**: `probe`: a linear probe on the frozen last hidden state \
             (mean-pooled for texts; MTPF-TPL through its family's group), multinomial logistic \
             regression on standardised features fitted by full-batch L-BFGS along an L2 grid \
             (strongest first, each fit warm-started from the last and stopped after at most {} \
             steps, the path ending once the dev score has fallen twice); the strength with the \
             best dev score is then fitted on to convergence (largest gradient entry below \
             {:e}, at most {} steps) and scored on test. Converged: {} of the {} probe fits in \
             the records{}. Dev and test are fixed samples, stratified by label and the same \
             for every arm and seed, or the whole splits (the table below gives their sizes). \
             \"100%\" is the training split or its first examples of a fixed shuffle (the table \
             gives how many; the step counts are L-BFGS iterations of the fit kept); with all \
             of them the fit does not depend on the seed and is recorded under each. Token \
             tasks are scored on words (first piece); texts by accuracy. Seeds in the records: \
             {:?} (the seed draws the 10% subset).",
            crate::probes::PATH_STEPS,
            lora_bert::train::probe::ProbeConfig::default().tolerance,
            lora_bert::train::probe::ProbeConfig::default().max_steps,
            records.iter().filter(|r| r.converged == Some(true)).count(),
            records.len(),
            match records.iter().filter(|r| r.converged.is_none()).count() {
                0 => String::new(),
                n => format!(" ({n} recorded before convergence was kept)"),
            },
            seeds,
        )?;
    } else {
        let lr = match plan.lr_grid.as_slice() {
            [] => format!("lr {}", s.lr),
            grid => {
                let mut kept: BTreeMap<String, usize> = BTreeMap::new();
                for r in records {
                    if let Some(lr) = r.lr {
                        *kept.entry(format!("{lr}")).or_default() += 1;
                    }
                }
                let kept: Vec<String> = kept.iter().map(|(lr, n)| format!("{lr} in {n}")).collect();
                format!(
                    "lr chosen {} by the best dev score from {grid:?} (kept: {})",
                    if plan.lr_per_arm {
                        "once per arm, task and fraction (on the first seed's run; the other \
                         seeds reuse it)"
                    } else {
                        "per run"
                    },
                    kept.join(", ")
                )
            }
        };
        writeln!(
            w,
            "- **Downstream protocol**: `{}`{}; {} steps for token tasks, {} for text tasks, \
             batch {}, AdamW {lr} (10% warm-up, linear decay), {} dev evaluations per run ({} \
             dev examples), the best dev checkpoint scored on {} test examples (both fixed \
             samples, stratified by label, the same for every arm and seed); \
             WNUT-16 runs twice the steps (its entity F1 stays 0 for about 150 steps). \
             Token tasks are scored on words (first piece); texts by accuracy. The table below \
             gives, from the run records, the examples each run trained on and was scored on \
             and the epochs its steps make. Seeds in the records: {:?} (the seed draws the 10% \
             subset, the head's initial weights and the batch order).",
            protocol_name(plan.protocol),
            match plan.protocol {
                crate::runs::Protocol::HeadOnly =>
                    ": the linear head alone; MTPF-TPL routes through its family's group, frozen",
                _ =>
                    ": a LoRA group shaped like the pre-finetuning groups plus a linear head, the \
                     backbone frozen; MTPF-TPL starts from a copy of its family's group, the \
                     other arms from a fresh group (B = 0)",
            },
            s.token_steps,
            s.text_steps,
            s.batch,
            s.evals,
            s.dev,
            s.test,
            seeds,
        )?;
    }
    write!(w, "\n| task | family | metric | train set |")?;
    for &fraction in fractions {
        write!(w, " trained on ({fraction}%) | epochs ({fraction}%) |")?;
    }
    writeln!(w, " dev | test | steps | data |")?;
    write!(w, "|---|---|---|---:|")?;
    for _ in fractions {
        write!(w, "---:|---:|")?;
    }
    writeln!(w, "---:|---:|---:|---|")?;
    for t in TASKS.iter().filter(|t| tasks.contains(&t.name)) {
        let of = |fraction: Option<u32>, f: &dyn Fn(&RunRecord) -> usize| -> String {
            span(
                records
                    .iter()
                    .filter(|r| r.task == t.name && fraction.is_none_or(|p| pct(r.fraction) == p))
                    .map(f),
            )
        };
        let full = ctx
            .sizes
            .get(t.name)
            .map_or("–".into(), |[n, ..]| n.to_string());
        write!(
            w,
            "| {} | {} | {} | {full} |",
            t.name,
            crate::plan::family_name(t.family),
            t.metric(),
        )?;
        for &fraction in fractions {
            let epochs: Vec<f64> = records
                .iter()
                .filter(|r| r.task == t.name && pct(r.fraction) == fraction)
                .filter(|r| r.train_examples > 0)
                .map(|r| (r.steps * s.batch) as f64 / r.train_examples as f64)
                .collect();
            let epochs = match (
                epochs.iter().copied().reduce(f64::min),
                epochs.iter().copied().reduce(f64::max),
            ) {
                // A probe's steps are L-BFGS iterations over all its rows, not batches.
                _ if plan.protocol == crate::runs::Protocol::Probe => "–".into(),
                (Some(lo), Some(hi)) if (hi - lo).abs() < 0.05 => format!("{lo:.1}"),
                (Some(lo), Some(hi)) => format!("{lo:.1}–{hi:.1}"),
                _ => "–".into(),
            };
            write!(
                w,
                " {} | {epochs} |",
                of(Some(fraction), &|r| r.train_examples)
            )?;
        }
        writeln!(
            w,
            " {} | {} | {} | {} |",
            of(None, &|r| r.dev_examples),
            of(None, &|r| r.test_examples),
            of(None, &|r| r.steps),
            t.about
        )?;
    }
    writeln!(
        w,
        "\nTrain set: the task's training split as loaded; the other columns are read from the \
         run records (a range when runs differ, for instance when early stopping cut some \
         short); epochs = steps × batch {} / examples trained on.",
        s.batch
    )?;
    Ok(())
}

/// The main setting's knobs, as the report prints them.
struct PfDefaults {
    rank: usize,
    k: usize,
    targets: String,
    temperature: Option<f64>,
}

impl PfDefaults {
    fn of(plan: &Plan) -> PfDefaults {
        let Setting {
            rank,
            k,
            targets,
            temperature,
            ..
        } = plan.setting.clone();
        PfDefaults {
            rank,
            k,
            targets: targets.join("/"),
            temperature,
        }
    }
}
