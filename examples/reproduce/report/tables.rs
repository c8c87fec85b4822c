//! The test-score tables (per task, family averages, Δ against no PF, damage checks) and the
//! chart of the family-average deltas.

use std::fmt::Write as _;
use std::path::Path;

use lora_bert::train::plot::{Bar, BarSeries, grouped_bars};

use crate::Result;
use crate::plan::{Arm, TASKS};

use super::Ran;
use super::format::{cell, signed, with_interval};
use super::stats::{NO_PF, family_delta, family_interval};

/// A table of test scores per fraction of the training data.
pub(super) fn score_tables(w: &mut String, ran: &Ran) -> Result<()> {
    let Ran {
        records,
        scores,
        fractions,
        pf_seeds,
        tasks,
        damage_checks,
        arms,
        ..
    } = ran;
    let family_tasks = |family: &str| ran.family_tasks(family);
    // Per-task tables.
    for &fraction in fractions {
        writeln!(
            w,
            "\n## Test scores, {fraction}% of the training data\n\nMean ± standard deviation \
             over seeds, in points (score × 100){}.\n",
            if pf_seeds.len() > 1 {
                "; a seed's score is the mean over the pre-finetuning seeds"
            } else {
                ""
            }
        )?;
        write!(w, "| task | metric |")?;
        for arm in arms {
            write!(w, " {} |", arm.label())?;
        }
        write!(w, "\n|---|---|")?;
        for _ in arms {
            write!(w, "---:|")?;
        }
        writeln!(w)?;
        for t in TASKS.iter().filter(|t| tasks.contains(&t.name)) {
            write!(w, "| {} | {} |", t.name, t.metric())?;
            for arm in arms {
                let values: Vec<f64> = scores
                    .get(&("default".into(), arm.name().into(), t.name.into(), fraction))
                    .map(|m| m.values().copied().collect())
                    .unwrap_or_default();
                write!(w, " {} |", cell(&values))?;
            }
            writeln!(w)?;
        }
        for family in ["NER", "TC"] {
            let ft = family_tasks(family);
            if ft.is_empty() {
                continue;
            }
            write!(w, "| **{family} average** | |")?;
            for arm in arms {
                let means: Option<Vec<f64>> = ft
                    .iter()
                    .map(|t| {
                        let m = scores.get(&(
                            "default".into(),
                            arm.name().into(),
                            (*t).into(),
                            fraction,
                        ))?;
                        Some(m.values().sum::<f64>() / m.len() as f64)
                    })
                    .collect();
                match means {
                    Some(m) => write!(
                        w,
                        " **{:.2}** |",
                        100.0 * m.iter().sum::<f64>() / m.len() as f64
                    )?,
                    None => write!(w, " – |")?,
                }
            }
            writeln!(w)?;
            write!(w, "| {family} Δ vs no PF | |")?;
            for arm in arms {
                let interval = (*arm != Arm::NoPf)
                    .then(|| {
                        family_interval(
                            records,
                            ("default", arm.name()),
                            NO_PF,
                            &ft,
                            fraction,
                            None,
                            0.95,
                        )
                    })
                    .flatten();
                match (
                    interval,
                    family_delta(scores, "default", arm.name(), &ft, fraction),
                ) {
                    (Some(i), _) => write!(w, " {} |", with_interval(&i))?,
                    (None, Some(((m, sd), n))) if n > 1 => {
                        write!(w, " {} ± {:.2} |", signed(m), 100.0 * sd)?
                    }
                    (None, Some(((m, _), _))) => write!(w, " {} |", signed(m))?,
                    (None, None) => write!(w, " – |")?,
                }
            }
            writeln!(w)?;
        }
        for task in damage_checks {
            write!(w, "| {task} Δ vs no PF (damage check) | |")?;
            for arm in arms {
                let interval = (*arm != Arm::NoPf)
                    .then(|| {
                        family_interval(
                            records,
                            ("default", arm.name()),
                            NO_PF,
                            &[task],
                            fraction,
                            None,
                            0.95,
                        )
                    })
                    .flatten();
                match interval {
                    Some(i) => write!(w, " {} |", with_interval(&i))?,
                    None => write!(w, " – |")?,
                }
            }
            writeln!(w)?;
        }
    }
    writeln!(
        w,
        "\nFamily averages are means over the family's tasks of the per-task means. Δ is the \
         family average minus no PF's, paired by seed, shown only for seeds where every task of \
         the family finished in both arms, with its 95% paired bootstrap interval in brackets \
         (2000 resamples of the test items of every task and of the seeds, the same draws for \
         both arms{}). Runs recorded without their per-item counts show mean ± standard \
         deviation over seeds instead.",
        if pf_seeds.len() > 1 {
            format!(
                ", and of each arm's pre-finetuning seeds {pf_seeds:?}, drawn per arm: \
                 pre-finetuning's run-to-run variance is in the interval"
            )
        } else {
            ". Each arm was pre-finetuned once, so pre-finetuning's run-to-run variance is not \
             in the interval"
                .to_owned()
        }
    )?;
    Ok(())
}

/// The chart of the family-average deltas against no PF, at `chart`.
pub(super) fn chart(w: &mut String, ran: &Ran, chart: &Path) -> Result<()> {
    let Ran {
        records,
        scores,
        fractions,
        arms,
        ..
    } = ran;
    let family_tasks = |family: &str| ran.family_tasks(family);
    // Chart and paper comparison.
    let mut categories = Vec::new();
    let mut series: Vec<BarSeries> = arms
        .iter()
        .filter(|a| **a != Arm::NoPf)
        .map(|a| BarSeries {
            name: a.label().into(),
            values: Vec::new(),
        })
        .collect();
    for family in ["NER", "TC"] {
        let ft = family_tasks(family);
        if ft.is_empty() {
            continue;
        }
        for &fraction in fractions {
            categories.push(format!("{family} {fraction}%"));
            for (arm, bars) in arms.iter().filter(|a| **a != Arm::NoPf).zip(&mut series) {
                let interval = family_interval(
                    records,
                    ("default", arm.name()),
                    NO_PF,
                    &ft,
                    fraction,
                    None,
                    0.95,
                );
                let bar = match interval {
                    Some(i) => Bar::with_range(100.0 * i.estimate, 100.0 * i.low, 100.0 * i.high),
                    None => family_delta(scores, "default", arm.name(), &ft, fraction)
                        .map_or(Bar::with_error(f64::NAN, 0.0), |((m, sd), _)| {
                            Bar::with_error(100.0 * m, 100.0 * sd)
                        }),
                };
                bars.values.push(bar);
            }
        }
    }
    if !categories.is_empty() && !series.is_empty() {
        let cats: Vec<&str> = categories.iter().map(String::as_str).collect();
        grouped_bars(
            chart,
            "Family average minus no PF (95% paired bootstrap intervals)",
            "points",
            &cats,
            &series,
        )?;
        writeln!(
            w,
            "\n![family-average deltas against no PF]({})\n",
            chart
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned())
        )?;
    }
    Ok(())
}
