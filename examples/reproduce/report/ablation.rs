//! The ablation of MTPF-TPL's knobs and the table of the pre-finetuning runs.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::Result;
use crate::plan::Arm;
use crate::runs::RunRecord;

use super::Ran;
use super::format::{hours, pf_seconds, signed, with_interval};
use super::stats::{NO_PF, family_delta_over, family_interval};

/// The ablation table, when the records hold more than one MTPF-TPL setting.
pub(super) fn ablation(w: &mut String, ran: &Ran) -> Result<()> {
    let Ran {
        ctx,
        records,
        scores,
        fractions,
        ..
    } = ran;
    let family_tasks = |family: &str| ran.family_tasks(family);
    // Ablation.
    let settings: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.arm == Arm::MtpfTpl.name())
        .map(|r| r.setting.as_str())
        .collect();
    if settings.len() > 1 {
        let swept = |r: &&RunRecord| r.setting != "default" && r.arm == Arm::MtpfTpl.name();
        let sweep_seeds: BTreeSet<u64> = records.iter().filter(swept).map(|r| r.seed).collect();
        let sweep_task_set: BTreeSet<&str> = records
            .iter()
            .filter(swept)
            .map(|r| r.task.as_str())
            .collect();
        writeln!(w, "\n## Ablation: MTPF-TPL's knobs\n")?;
        writeln!(
            w,
            "MTPF-TPL pre-finetuned and fine-tuned again with one knob changed (the rest as in \
             the main setting); Δ against the main setting's no PF, paired by seed, with its \
             95% paired bootstrap interval, on the tasks and seeds the changed settings ran \
             ({}; seeds {}). The `default` row is the \
             main setting's MTPF-TPL on those same tasks and seeds, so the rows compare; the \
             main table above averages all tasks and seeds.\n",
            sweep_tasks(records),
            sweep_seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        write!(w, "| setting |")?;
        for family in ["NER", "TC"] {
            for &fraction in fractions {
                write!(w, " {family} {fraction}% Δ |")?;
            }
        }
        write!(w, " PF time |\n|---|")?;
        for _ in 0..2 * fractions.len() {
            write!(w, "---:|")?;
        }
        writeln!(w, "---:|")?;
        for setting in settings {
            write!(w, "| `{setting}` |")?;
            for family in ["NER", "TC"] {
                let ft: Vec<&str> = family_tasks(family)
                    .into_iter()
                    .filter(|t| {
                        sweep_task_set.contains(t)
                            && records.iter().any(|r| {
                                r.setting == setting && r.arm == "mtpf-tpl" && r.task == *t
                            })
                    })
                    .collect();
                for &fraction in fractions {
                    let d = (!ft.is_empty())
                        .then(|| {
                            family_delta_over(
                                scores,
                                setting,
                                "mtpf-tpl",
                                &ft,
                                fraction,
                                Some(&sweep_seeds),
                            )
                        })
                        .flatten();
                    let interval = (!ft.is_empty())
                        .then(|| {
                            family_interval(
                                records,
                                (setting, "mtpf-tpl"),
                                NO_PF,
                                &ft,
                                fraction,
                                Some(&sweep_seeds),
                                0.95,
                            )
                        })
                        .flatten();
                    match (interval, d) {
                        (Some(i), _) => write!(w, " {} |", with_interval(&i))?,
                        (None, Some(((m, sd), n))) if n > 1 => {
                            write!(w, " {} ± {:.2} |", signed(m), 100.0 * sd)?
                        }
                        (None, Some(((m, _), _))) => write!(w, " {} |", signed(m))?,
                        (None, None) => write!(w, " – |")?,
                    }
                }
            }
            let seconds = ctx
                .pf
                .iter()
                .find(|p| p.setting == setting && p.arm == "mtpf-tpl")
                .map_or("–".into(), |p| hours(p.seconds));
            writeln!(w, " {seconds} |")?;
        }
    }
    Ok(())
}

/// The pre-finetuning runs.
pub(super) fn pf_runs(w: &mut String, ran: &Ran) -> Result<()> {
    let Ran { ctx, .. } = ran;
    // Pre-finetuning runs.
    if !ctx.pf.is_empty() {
        writeln!(w, "\n## Pre-finetuning runs\n")?;
        writeln!(
            w,
            "| arm | setting | NER steps | TC steps | best dev metric (− loss) at step | time |"
        )?;
        writeln!(w, "|---|---|---:|---:|---:|---:|")?;
        for p in &ctx.pf {
            writeln!(
                w,
                "| {} | `{}` | {} | {} | {} | {} |",
                match (
                    Arm::from_name(&p.arm).map_or(p.arm.as_str(), |a| a.label()),
                    p.pf_seed
                ) {
                    (label, 0) => label.to_owned(),
                    (label, k) => format!("{label} (seed {k})"),
                },
                p.setting,
                p.ner_steps,
                p.tc_steps,
                p.fit
                    .best
                    .map_or("–".into(), |(m, s)| format!("{m:.4} at {s}")),
                match p.fit.resumed_from {
                    // The step counts and time cover the steps after the resume only.
                    Some(step) => format!(
                        "{} for the steps after a resume at step {step}; about {} for all {} \
                         at that rate",
                        hours(p.seconds),
                        hours(pf_seconds(p)),
                        p.fit.steps
                    ),
                    None => hours(p.seconds),
                }
            )?;
        }
        if let Some(t) = ctx.teacher_seconds {
            writeln!(
                w,
                "\nTeacher (training, when this folder trained it, and its pass over the \
                 sentences): {}.",
                hours(t)
            )?;
        }
        writeln!(
            w,
            "\nThe dev metric is minus the mean loss of the held-out batches; for the multi-task \
             arms it adds both families' losses, so it compares checkpoints of one arm only."
        )?;
    }
    Ok(())
}

fn sweep_tasks(records: &[RunRecord]) -> String {
    let tasks: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.setting != "default")
        .map(|r| r.task.as_str())
        .collect();
    tasks.into_iter().collect::<Vec<_>>().join(", ")
}
