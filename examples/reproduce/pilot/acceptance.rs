//! The pilot's report: the probe table with deltas against no PF, MTPF-TPL's group checks,
//! and the PASS/FAIL acceptance lines.

use std::collections::BTreeMap;

use lora_bert::train::probe::ProbeConfig;

use super::probing::PROBE_TASKS;
use super::{Args, ArmRecord, GroupCheck, PilotArm, ProbeRecord};

fn score(probes: &[ProbeRecord], arm: PilotArm, task: &str) -> Option<f64> {
    probes
        .iter()
        .find(|p| p.arm == arm && p.task == task)
        .map(|p| p.score)
}

/// The pilot's Markdown: settings, the probe table with deltas against no PF, the group
/// checks, and the acceptance lines.
pub(super) fn render(
    args: &Args,
    records: &BTreeMap<PilotArm, ArmRecord>,
    probes: &[ProbeRecord],
) -> String {
    use std::fmt::Write;
    let s = &args.settings;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Pre-finetuning: {} steps per family (multi-task arms: round-robin, the same steps per \
         family), batch {}, {} Brown sentences and {} text pairs ({} of each held out); \
         learning rates backbone {:e}, groups {:e}, heads {:e}; soft labels at T = {}, hard \
         weight {}. Probes: multinomial logistic regression on standardised features, fitted by \
         full-batch L-BFGS to a largest gradient entry of {:e}, on at most {} training and {} \
         dev examples per task; L2 chosen per arm and task from {:?} by the held-out \
         cross-entropy of the last fifth of the training examples, then refitted on all of \
         them; one pre-finetuning seed. Probes converged: {} of {}.\n",
        s.steps,
        s.batch,
        s.sentences,
        s.pairs,
        s.pf_dev,
        s.lr_backbone,
        s.lr_groups,
        s.lr_heads,
        s.temperature,
        s.hard_weight,
        ProbeConfig::default().tolerance,
        s.probe_train,
        s.probe_dev,
        s.probe_l2,
        probes.iter().filter(|p| p.fit.converged).count(),
        probes.len()
    );
    let _ = write!(md, "| arm |");
    for t in PROBE_TASKS {
        let metric = probes
            .iter()
            .find(|p| p.task == t)
            .map(|p| p.metric.as_str())
            .unwrap_or("");
        let _ = write!(md, " {t} ({metric}) |");
    }
    let _ = writeln!(md, " NER / TC steps | backbone ‖ΔW‖/‖W‖ |");
    let _ = writeln!(md, "|---|{}---|---|", "---|".repeat(PROBE_TASKS.len()));
    for &arm in &args.arms {
        let _ = write!(md, "| {} |", arm.label());
        for t in PROBE_TASKS {
            match (score(probes, arm, t), score(probes, PilotArm::NoPf, t)) {
                (Some(v), Some(base)) if arm != PilotArm::NoPf => {
                    let _ = write!(md, " {:.2} ({:+.2}) |", 100.0 * v, 100.0 * (v - base));
                }
                (Some(v), _) => {
                    let _ = write!(md, " {:.2} |", 100.0 * v);
                }
                _ => {
                    let _ = write!(md, " – |");
                }
            }
        }
        match records.get(&arm) {
            Some(r) => {
                let _ = writeln!(
                    md,
                    " {} / {} | {:.2e} |",
                    r.ner_steps, r.tc_steps, r.backbone_update
                );
            }
            None => {
                let _ = writeln!(md, " – | – |");
            }
        }
    }
    if let Some(r) = records.get(&PilotArm::MtpfTpl) {
        let _ = writeln!(
            md,
            "\nMTPF-TPL's groups (dev loss of the family's objective on the same fixed batches):\n\n\
             | group | ‖ΔW‖/‖W‖ (merged vs base) | dev loss through the group | through the bare backbone |\n|---|---|---|---|"
        );
        for g in &r.groups {
            let _ = writeln!(
                md,
                "| {} | {:.2e} | {:.4} | {:.4} |",
                g.family, g.relative_update, g.dev_loss_group, g.dev_loss_base
            );
        }
    }
    let _ = writeln!(md, "\nAcceptance (dev sets, points):\n");
    let delta = |arm, task| -> Option<f64> {
        Some(100.0 * (score(probes, arm, task)? - score(probes, PilotArm::NoPf, task)?))
    };
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "NOT RUN",
    };
    let mut lines = Vec::new();
    for (arm, name) in [
        (PilotArm::NerPf, "NER PF"),
        (PilotArm::NerShuffled, "NER PF, shuffled teacher (control)"),
    ] {
        let ok = (|| {
            let w = delta(arm, "wnut16")?;
            let n = delta(arm, "brown-names")?;
            let p = delta(arm, "brown-pos")?;
            Some((w > 0.0 && n > 0.0 && p >= -0.5, w, n, p))
        })();
        lines.push(match ok {
            Some((pass, w, n, p)) => format!(
                "{}: {name} raises WNUT-16 ({w:+.2}) and Brown names ({n:+.2}), Brown POS {p:+.2} (≥ −0.5)",
                verdict(Some(pass))
            ),
            None => format!("NOT RUN: {name}"),
        });
    }
    let tc = (|| {
        let r = delta(PilotArm::TcPf, "rotten-tomatoes")?;
        let t = delta(PilotArm::TcPf, "reuters-r8")?;
        Some((r >= -0.5 && t >= -0.5, r, t))
    })();
    lines.push(match tc {
        Some((pass, r, t)) => format!(
            "{}: TC PF lowers no text task by more than 0.5 (rotten-tomatoes {r:+.2}, reuters-r8 {t:+.2})",
            verdict(Some(pass))
        ),
        None => "NOT RUN: TC PF".into(),
    });
    let groups = records
        .get(&PilotArm::MtpfTpl)
        .map(|r| !r.groups.is_empty() && r.groups.iter().all(GroupCheck::passes));
    lines.push(format!(
        "{}: MTPF-TPL's family groups move (‖ΔW‖ > 0) and lower their family's dev loss",
        verdict(groups)
    ));
    for line in lines {
        let _ = writeln!(md, "- {line}");
    }
    // What the teacher's knowledge adds beyond token-level training itself.
    let share: Vec<String> = PROBE_TASKS
        .iter()
        .filter_map(|&t| {
            let d = 100.0
                * (score(probes, PilotArm::NerPf, t)? - score(probes, PilotArm::NerShuffled, t)?);
            Some(format!("{t} {d:+.2}"))
        })
        .collect();
    if !share.is_empty() {
        let _ = writeln!(
            md,
            "\nThe teacher's share (NER PF minus the shuffled-teacher control, points): {}.",
            share.join(", ")
        );
    }
    md
}
