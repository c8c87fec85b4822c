//! The paper's claims read off the intervals, and what limits these numbers.

use std::fmt::Write as _;

use lora_bert::metrics::bootstrap::Interval;

use crate::Result;
use crate::plan::Arm;

use super::Ran;
use super::format::{signed, with_interval};
use super::stats::{family_delta, family_interval, pct, verdict_of};

/// The comparison with the paper and its claims, decided by paired bootstrap intervals.
pub(super) fn claims(w: &mut String, ran: &Ran) -> Result<()> {
    let Ran {
        records,
        scores,
        fractions,
        ..
    } = ran;
    let family_tasks = |family: &str| ran.family_tasks(family);
    writeln!(w, "## Against the paper's claims\n")?;
    writeln!(
        w,
        "The paper reports, over 21 tasks, MTPF-TPL's average gain over the plain backbone: \
         +0.8 F1 on NER, +8.8 accuracy on text classification, and +8.4 F1 on NER with 10% of \
         the data. Its NER tasks are entity F1 only, and so is our NER family's average (Brown \
         POS, tag accuracy, is the damage check above).\n"
    )?;
    writeln!(
        w,
        "| family | data | paper (MTPF-TPL) | MTPF-TPL | NER PF | TC PF | naive MTL PF |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---:|---:|---:|")?;
    let delta = |arm: Arm, family: &str, fraction: u32| {
        family_delta(
            scores,
            "default",
            arm.name(),
            &family_tasks(family),
            fraction,
        )
        .map(|((m, _), _)| m)
    };
    // Arm a minus arm b on a family's average, with its interval at `confidence`.
    let interval = |a: Arm, b: Arm, family: &str, fraction: u32, confidence: f64| {
        family_interval(
            records,
            ("default", a.name()),
            ("default", b.name()),
            &family_tasks(family),
            fraction,
            None,
            confidence,
        )
    };
    let show = |arm: Arm, family: &str, fraction: u32| match interval(
        arm,
        Arm::NoPf,
        family,
        fraction,
        0.95,
    ) {
        Some(i) => with_interval(&i),
        None => delta(arm, family, fraction).map_or("–".to_owned(), signed),
    };
    for family in ["NER", "TC"] {
        for &fraction in fractions {
            let paper = match (family, fraction) {
                ("NER", 100) => "+0.8",
                ("TC", 100) => "+8.8",
                ("NER", 10) => "+8.4",
                _ => "not reported",
            };
            writeln!(
                w,
                "| {family} | {fraction}% | {paper} | {} | {} | {} | {} |",
                show(Arm::MtpfTpl, family, fraction),
                show(Arm::NerPf, family, fraction),
                show(Arm::TcPf, family, fraction),
                show(Arm::Naive, family, fraction),
            )?;
        }
    }
    writeln!(
        w,
        "\nThe claims, read off 95% paired bootstrap intervals (Δ in points): a claim holds only \
         when its interval excludes 0 in the claimed direction, and does not hold when it \
         excludes 0 in the other; \"MTPF-TPL keeps the individual gains\" is an equivalence test \
         (two one-sided tests at α = 0.05, a 90% interval inside ±1 point).\n"
    )?;
    // Several verdicts at once: holds if all hold, does not hold if any fails.
    let all = |verdicts: &[&'static str]| -> &'static str {
        if verdicts.iter().all(|v| *v == "holds") {
            "holds"
        } else if verdicts.contains(&"does not hold") {
            "does not hold"
        } else {
            verdicts
                .iter()
                .find(|v| v.starts_with("undecided"))
                .copied()
                .unwrap_or("undecided")
        }
    };
    let text = |i: Option<&Interval>| i.map_or("–".to_owned(), with_interval);
    for &fraction in fractions {
        let ner = interval(Arm::NerPf, Arm::NoPf, "NER", fraction, 0.95);
        let tc = interval(Arm::TcPf, Arm::NoPf, "TC", fraction, 0.95);
        if ner.is_some() || tc.is_some() {
            writeln!(
                w,
                "- {fraction}%: each family's own PF helps it (NER PF on NER {}, TC PF on TC \
                 {}): {}.",
                text(ner.as_ref()),
                text(tc.as_ref()),
                all(&[
                    verdict_of(ner.as_ref(), true),
                    verdict_of(tc.as_ref(), true)
                ])
            )?;
        }
        let naive_ner = interval(Arm::Naive, Arm::NerPf, "NER", fraction, 0.95);
        let naive_tc = interval(Arm::Naive, Arm::TcPf, "TC", fraction, 0.95);
        if naive_ner.is_some() || naive_tc.is_some() {
            writeln!(
                w,
                "- {fraction}%: naive multi-task PF loses part of the individual gains (naive \
                 minus NER PF on NER {}, minus TC PF on TC {}): {}.",
                text(naive_ner.as_ref()),
                text(naive_tc.as_ref()),
                all(&[
                    verdict_of(naive_ner.as_ref(), false),
                    verdict_of(naive_tc.as_ref(), false)
                ])
            )?;
        }
        let keeps = [
            interval(Arm::MtpfTpl, Arm::NerPf, "NER", fraction, 0.90),
            interval(Arm::MtpfTpl, Arm::TcPf, "TC", fraction, 0.90),
        ];
        if keeps.iter().any(Option::is_some) {
            let equivalent = match &keeps {
                [Some(n), Some(t)] if n.within(0.01) && t.within(0.01) => "holds",
                [Some(_), Some(_)] => "not shown (a 90% interval reaches past ±1 point)",
                _ => "undecided (no per-item records for one family)",
            };
            let [n, t] = &keeps;
            writeln!(
                w,
                "- {fraction}%: MTPF-TPL keeps the individual gains (MTPF-TPL minus NER PF on \
                 NER {}, minus TC PF on TC {}, 90% intervals): {equivalent}.",
                text(n.as_ref()),
                text(t.as_ref()),
            )?;
        }
        let over_naive = [
            interval(Arm::MtpfTpl, Arm::Naive, "NER", fraction, 0.95),
            interval(Arm::MtpfTpl, Arm::Naive, "TC", fraction, 0.95),
        ];
        if over_naive.iter().any(Option::is_some) {
            let [n, t] = &over_naive;
            writeln!(
                w,
                "- {fraction}%: MTPF-TPL beats naive multi-task PF (NER {}, TC {}): {}.",
                text(n.as_ref()),
                text(t.as_ref()),
                all(&[verdict_of(n.as_ref(), true), verdict_of(t.as_ref(), true)])
            )?;
        }
    }
    if let (Some(full), Some(low)) = (
        interval(Arm::MtpfTpl, Arm::NoPf, "NER", 100, 0.95),
        interval(Arm::MtpfTpl, Arm::NoPf, "NER", 10, 0.95),
    ) {
        // The two differences come from different runs: only intervals that do not overlap
        // decide.
        writeln!(
            w,
            "- MTPF-TPL's NER gain is larger with 10% of the data ({} vs {} with all): {}.",
            with_interval(&low),
            with_interval(&full),
            if low.low > full.high {
                "holds"
            } else if low.high < full.low {
                "does not hold"
            } else {
                "undecided (the intervals overlap)"
            }
        )?;
    }
    Ok(())
}

/// What limits these numbers.
pub(super) fn limits(w: &mut String, ran: &Ran) -> Result<()> {
    let Ran { plan, records, .. } = ran;
    let s = &plan.sizes;
    writeln!(w, "\n## What limits these numbers\n")?;
    writeln!(
        w,
        "- **Pre-finetuning is small.** {} steps of {} rows per family ({} examples per family) \
         on a 2-core CPU, where the paper pre-finetunes on \
         large weakly supervised corpora. A gain that needs a long pre-finetuning cannot show \
         here; a loss from a short one can.",
        s.pf_steps,
        s.pf_batch,
        s.pf_steps * s.pf_batch
    )?;
    if plan.protocol == crate::runs::Protocol::Probe {
        // Brown POS against the bar a linear probe on a BERT-class encoder usually clears.
        let pos: Vec<f64> = records
            .iter()
            .filter(|r| {
                r.arm == Arm::NoPf.name()
                    && r.task == "brown-pos"
                    && r.setting == "default"
                    && pct(r.fraction) == 100
            })
            .map(|r| r.test)
            .collect();
        let layers = crate::layers::read_records(&plan.out)?;
        if let Some(&last) = pos.first() {
            write!(
                w,
                "- **Brown POS from the last layer.** The plain backbone's probe reaches {:.2}% \
                 tag accuracy on Brown POS at 100% of the data, where a linear probe on a \
                 BERT-base-class encoder usually exceeds 90% on English POS. ",
                100.0 * last
            )?;
            let best = layers
                .iter()
                .filter(|l| l.task == "brown-pos")
                .max_by(|a, b| a.test.total_cmp(&b.test));
            match best {
                Some(b) => {
                    let why = if b.layer < 6 {
                        "all-MiniLM-L6-v2's last layer was trained for mean-pooled sentence \
                         embeddings and keeps less word-class information than the earlier layers"
                    } else {
                        "the last layer is the best of those measured, so the shortfall is the \
                         encoder's own"
                    };
                    writeln!(
                        w,
                        "The same probe on each layer (`reproduce layers`, the records under \
                         `layers/`) reads it best from layer {} ({:.2}% with {} training \
                         sentences): {why}; it is also 6 layers of width 384, not BERT-base's \
                         12 of 768. The comparison keeps the last layer, the one deployed \
                         heads read.\n\n{}",
                        b.layer,
                        100.0 * b.test,
                        b.train_examples,
                        crate::layers::render(&layers)
                    )?
                }
                None => writeln!(
                    w,
                    "No per-layer measurement is in this folder (`reproduce layers --out` it \
                     to add one)."
                )?,
            }
        }
    } else {
        let last = records.iter().filter(|r| r.best_step >= r.steps).count();
        writeln!(
            w,
            "- **Fine-tuning is short.** {} / {} steps per run (token / text; WNUT-16 twice); \
             in {last} of {} runs the best dev evaluation was the last one, so longer runs \
             would likely score higher and could narrow differences that come from a better \
             starting point.",
            s.token_steps,
            s.text_steps,
            records.len()
        )?;
    }
    if plan.teacher == crate::plan::TeacherChoice::MpnetStates {
        writeln!(
            w,
            "- **Distillation loss.** With MSE (the library's default until this comparison) the \
         NER-family pre-finetuning shrank the student's last hidden states about 3.5 times (mean norm \
         4.26 → 1.21 after 300 steps; naive and MTPF-TPL about halved them) and the downstream \
         heads then barely moved at the same learning rate (WNUT-16 entity F1 0 after 200 \
         steps, against 0.34 from the plain model); the comparison therefore uses cosine \
         distillation (`--distill mse` or `--sweep distill=mse` reruns the MSE variant)."
        )?;
    }
    writeln!(
        w,
        "- **Data.** The NER family here is WNUT-16 (train split only, split here), Brown \
         proper-name spans and Brown POS; CoNLL-2003, the other reachable English NER set, \
         trained the teacher and stays out of the downstream comparison. The paper's NER tasks \
         and text-classification tasks are not reachable from this machine."
    )?;
    Ok(())
}
