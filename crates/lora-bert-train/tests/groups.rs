//! Parameter groups in the training loop, on a model of five bare parameters: every group
//! trains at its own peak under the warm-up and decay, 1-D parameters without weight decay
//! (both checked against AdamW written out in f64), a killed run with groups resumes exactly,
//! a resume with other group rates is refused naming the setting, groups that do not fit are
//! refused, and the relative-update report against a hand computation.

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use lora_bert_encoder::device;
use lora_bert_train::groups::{NamedGroups, param_ids, param_ids_where, relative_updates};
use lora_bert_train::schedule::Decay;
use lora_bert_train::{TrainConfig, TrainError, Trainer};

/// A backbone (`w`, `b`), an adapter (`a`) and a head (`h`, `hb`).
#[derive(Module, Debug)]
struct Tiny {
    w: Param<Tensor<2>>,
    b: Param<Tensor<1>>,
    a: Param<Tensor<2>>,
    h: Param<Tensor<2>>,
    hb: Param<Tensor<1>>,
}

/// Shapes of `w, b, a, h, hb`.
const SHAPES: [&[usize]; 5] = [&[3, 4], &[4], &[4, 2], &[2, 2], &[2]];

fn cpu() -> Device {
    device::autodiff(device::device(device::Backend::NdArray).unwrap())
}

/// Initial values of every parameter (as f32 values, read back in f64).
fn init_values(seed: f64) -> Vec<Vec<f64>> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(p, shape)| {
            (0..shape.iter().product::<usize>())
                .map(|i| f64::from((0.5 * (seed + 0.37 * i as f64 + 1.9 * p as f64).sin()) as f32))
                .collect()
        })
        .collect()
}

fn param<const D: usize>(values: &[f64], shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    let data: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), device))
}

fn tiny(values: &[Vec<f64>], device: &Device) -> Tiny {
    Tiny {
        w: param(&values[0], [3, 4], device),
        b: param(&values[1], [4], device),
        a: param(&values[2], [4, 2], device),
        h: param(&values[3], [2, 2], device),
        hb: param(&values[4], [2], device),
    }
}

fn read<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f64> {
    p.val().into_data().iter::<f64>().collect()
}

fn values(m: &Tiny) -> Vec<Vec<f64>> {
    vec![read(&m.w), read(&m.b), read(&m.a), read(&m.h), read(&m.hb)]
}

/// The target of element `i` of parameter `p` in batch `k`.
fn target(k: usize, p: usize, i: usize) -> f64 {
    (0.3 + 0.71 * k as f64 + 0.53 * i as f64 + 1.3 * p as f64).cos()
}

/// Batch `k`'s loss `Σ t·x + ½ Σ x²` over every parameter: its gradient is `t + x`.
fn loss(m: &Tiny, k: usize) -> lora_bert_train::Result<Tensor<1>> {
    fn term<const D: usize>(param: &Param<Tensor<D>>, k: usize, p: usize) -> Tensor<1> {
        let x = param.val();
        let n = x.dims().iter().product::<usize>();
        let t: Vec<f32> = (0..n).map(|i| target(k, p, i) as f32).collect();
        let t = Tensor::<D>::from_data(TensorData::new(t, x.dims()), &x.device());
        (x.clone() * t).sum() + x.powi_scalar(2).sum().mul_scalar(0.5)
    }
    Ok(term(&m.w, k, 0)
        + term(&m.b, k, 1)
        + term(&m.a, k, 2)
        + term(&m.h, k, 3)
        + term(&m.hb, k, 4))
}

/// "backbone": `w`, `b`; "adapters": `a`; "heads": `h` (`hb` in no group).
fn groups(m: &Tiny) -> NamedGroups {
    vec![
        (
            "backbone".into(),
            [param_ids(&m.w), param_ids(&m.b)].concat(),
        ),
        ("adapters".into(), param_ids(&m.a)),
        ("heads".into(), param_ids(&m.h)),
    ]
}

/// Rates 0.002 (backbone) and 0.05 (adapters); "heads" is not named, so `h` and `hb` train at
/// the run's 0.01. Weight decay 0.3, clipping at norm 1 (the gradients' norm is above it).
fn config(warmup: usize, total: usize) -> TrainConfig {
    TrainConfig {
        learning_rate: 0.01,
        weight_decay: 0.3,
        warmup_steps: warmup,
        decay: Decay::Linear,
        max_grad_norm: Some(1.0),
        ..TrainConfig::new(total)
    }
    .with_group_lr("backbone", 0.002)
    .with_group_lr("adapters", 0.05)
}

/// The peak rate of each parameter under `config` (`w, b, a, h, hb`).
fn peaks(config: &TrainConfig) -> [f64; 5] {
    let g = |name: &str| config.group_learning_rates.get(name).copied();
    let base = config.learning_rate;
    let backbone = g("backbone").unwrap_or(base);
    let adapters = g("adapters").unwrap_or(base);
    [backbone, backbone, adapters, base, base]
}

/// `steps` steps of AdamW (PyTorch's, decoupled decay) on batches `0..steps`, in f64, with the
/// linear schedule written out: `s / warmup` in warm-up, then `1 - (s - warmup) / (total -
/// warmup)`; global-norm clipping as `clip_grad_norm_`.
fn reference(
    config: &TrainConfig,
    peaks: [f64; 5],
    no_decay_1d: bool,
    steps: usize,
) -> Vec<Vec<f64>> {
    assert_eq!(config.decay, Decay::Linear);
    let (b1, b2, eps) = (
        f64::from(config.adam.0),
        f64::from(config.adam.1),
        f64::from(config.adam.2),
    );
    let mut x = init_values(1.0);
    let mut m: Vec<Vec<f64>> = x.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut v = m.clone();
    for s in 0..steps {
        let (w, t) = (config.warmup_steps as f64, config.max_steps as f64);
        let factor = if (s as f64) < w {
            s as f64 / w
        } else {
            (1.0 - (s as f64 - w) / (t - w)).max(0.0)
        };
        let mut g: Vec<Vec<f64>> = x
            .iter()
            .enumerate()
            .map(|(p, xs)| {
                xs.iter()
                    .enumerate()
                    .map(|(i, xi)| target(s, p, i) + xi)
                    .collect()
            })
            .collect();
        let norm = g.iter().flatten().map(|gi| gi * gi).sum::<f64>().sqrt();
        if let Some(max) = config.max_grad_norm
            && norm > max
        {
            g.iter_mut()
                .flatten()
                .for_each(|gi| *gi *= max / (norm + 1e-6));
        }
        let time = (s + 1) as i32;
        for p in 0..5 {
            let lr = peaks[p] * factor;
            let wd = if no_decay_1d && SHAPES[p].len() == 1 {
                0.0
            } else {
                config.weight_decay
            };
            for i in 0..x[p].len() {
                m[p][i] = b1 * m[p][i] + (1.0 - b1) * g[p][i];
                v[p][i] = b2 * v[p][i] + (1.0 - b2) * g[p][i] * g[p][i];
                let m_hat = m[p][i] / (1.0 - b1.powi(time));
                let v_hat = v[p][i] / (1.0 - b2.powi(time));
                x[p][i] = x[p][i] * (1.0 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps);
            }
        }
    }
    x
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max)
        })
        .collect()
}

/// Trains a fresh model for `steps` steps of `config`'s schedule (the batches run out there).
fn train(config: &TrainConfig, steps: usize) -> Vec<Vec<f64>> {
    let device = cpu();
    let (model, report) = Trainer::new(config.clone())
        .with_param_groups(groups)
        .fit(tiny(&init_values(1.0), &device), 0..steps, loss, |_| {
            Ok(0.0)
        })
        .unwrap();
    assert_eq!(report.steps, steps);
    values(&model)
}

const TOLERANCE: f64 = 1e-6;

#[test]
fn each_group_trains_at_its_own_rate_under_the_schedule() {
    for (warmup, total) in [(0, 4), (2, 6)] {
        for no_decay_1d in [true, false] {
            let config = TrainConfig {
                no_decay_1d,
                ..config(warmup, total)
            };
            for steps in [1, 3] {
                let got = train(&config, steps);
                let want = reference(&config, peaks(&config), no_decay_1d, steps);
                let diff = max_diff(&got, &want);
                assert!(
                    diff.iter().all(|&d| d < TOLERANCE),
                    "warm-up {warmup}, no_decay_1d {no_decay_1d}, {steps} step(s): max |diff| per \
                     parameter (w, b, a, h, hb) {diff:?}"
                );
                if warmup == 0 || steps > 1 {
                    // The test tells the rules apart: one rate for all, or the other decay
                    // rule, ends elsewhere.
                    let base = config.learning_rate;
                    let one_rate = reference(&config, [base; 5], no_decay_1d, steps);
                    let off = max_diff(&one_rate, &want);
                    assert!(
                        off[0] > 20.0 * TOLERANCE && off[2] > 20.0 * TOLERANCE,
                        "{off:?}"
                    );
                    let other_decay = reference(&config, peaks(&config), !no_decay_1d, steps);
                    let off = max_diff(&other_decay, &want);
                    assert!(
                        off[1] > 10.0 * TOLERANCE && off[4] > 10.0 * TOLERANCE,
                        "{off:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn one_step_of_warm_up_moves_no_group() {
    // Step 0 of a warm-up has factor 0: no group trains at its bare peak.
    let before = init_values(1.0);
    let after = train(&config(2, 6), 1);
    assert_eq!(max_diff(&before, &after), vec![0.0; 5]);
}

#[test]
fn a_killed_run_with_groups_resumes_exactly_on_a_fresh_model() {
    let device = cpu();
    let cfg = TrainConfig {
        checkpoint_every: Some(1),
        ..config(1, 5)
    };
    let whole = tempfile::tempdir().unwrap();
    let (reference_model, reference_report) = Trainer::new(cfg.clone())
        .with_checkpoints(whole.path())
        .with_param_groups(groups)
        .fit(tiny(&init_values(1.0), &device), 0.., loss, |_| Ok(0.0))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let crash = Trainer::new(cfg.clone())
        .with_checkpoints(dir.path())
        .with_param_groups(groups)
        .fit(
            tiny(&init_values(1.0), &device),
            0..,
            |m, k| {
                if k == 2 {
                    return Err(TrainError::InvalidArgument {
                        what: "test",
                        message: "simulated kill".into(),
                    });
                }
                loss(m, k)
            },
            |_| Ok(0.0),
        );
    assert!(crash.is_err());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("latest")).unwrap(),
        "step-000002"
    );

    // Another process: other values, other parameter ids. The groups are read off the
    // resumed model, whose ids are the checkpoint's.
    let fresh = tiny(&init_values(7.0), &device);
    let (resumed, report) = Trainer::new(cfg)
        .with_checkpoints(dir.path())
        .with_param_groups(groups)
        .fit(fresh, 0.., loss, |_| Ok(0.0))
        .unwrap();
    assert_eq!(report.resumed_from, Some(2));
    assert_eq!(report.losses, reference_report.losses);
    assert_eq!(values(&resumed), values(&reference_model));
    let want = reference(&config(1, 5), peaks(&config(1, 5)), true, 5);
    let diff = max_diff(&values(&resumed), &want);
    assert!(diff.iter().all(|&d| d < TOLERANCE), "{diff:?}");
}

#[test]
fn ids_gathered_before_a_resume_are_refused() {
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        checkpoint_every: Some(1),
        ..config(0, 4)
    };
    Trainer::new(cfg.clone())
        .with_checkpoints(dir.path())
        .with_param_groups(groups)
        .fit(tiny(&init_values(1.0), &device), 0..2, loss, |_| Ok(0.0))
        .unwrap();
    // The ids of the model handed to `fit`, not of the model it resumes into.
    let fresh = tiny(&init_values(1.0), &device);
    let stale = groups(&fresh);
    let err = Trainer::new(cfg)
        .with_checkpoints(dir.path())
        .with_param_groups(move |_: &Tiny| stale.clone())
        .fit(fresh, 0.., loss, |_| Ok(0.0))
        .unwrap_err();
    assert!(
        matches!(&err, TrainError::ParamGroup { group, message }
            if group == "backbone" && message.contains("no float parameter of the model")),
        "{err}"
    );
}

/// Trains 2 steps of `first` into a folder, then resumes with `second`: the error.
fn resume_with(first: TrainConfig, second: TrainConfig) -> TrainError {
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    Trainer::new(first)
        .with_checkpoints(dir.path())
        .with_param_groups(groups)
        .fit(tiny(&init_values(1.0), &device), 0..2, loss, |_| Ok(0.0))
        .unwrap();
    Trainer::new(second)
        .with_checkpoints(dir.path())
        .with_param_groups(groups)
        .fit(tiny(&init_values(1.0), &device), 0.., loss, |_| Ok(0.0))
        .unwrap_err()
}

fn checkpoint_message(err: TrainError) -> String {
    match err {
        TrainError::InvalidArgument {
            what: "checkpoint",
            message,
        } => message,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_resume_with_other_group_rates_is_refused_naming_the_setting() {
    let cfg = TrainConfig {
        checkpoint_every: Some(1),
        ..config(0, 4)
    };
    let message = checkpoint_message(resume_with(
        cfg.clone(),
        cfg.clone().with_group_lr("backbone", 0.003),
    ));
    assert!(
        message
            .contains("group_learning_rates.backbone: 0.002 in the checkpoint, 0.003 in this run"),
        "{message}"
    );
    assert!(
        !message.contains("adapters") && !message.contains("max_steps"),
        "{message}"
    );

    let message = checkpoint_message(resume_with(
        cfg.clone(),
        cfg.clone().with_group_lr("heads", 0.003),
    ));
    assert!(
        message.contains("group_learning_rates.heads: none in the checkpoint, 0.003 in this run"),
        "{message}"
    );

    let message = checkpoint_message(resume_with(
        cfg.clone(),
        TrainConfig {
            max_steps: 5,
            learning_rate: 0.02,
            no_decay_1d: false,
            ..cfg
        },
    ));
    for setting in [
        "max_steps: 4 in the checkpoint, 5 in this run",
        "learning_rate: 0.01 in the checkpoint, 0.02 in this run",
        "no_decay_1d: true in the checkpoint, false in this run",
    ] {
        assert!(message.contains(setting), "{setting}: {message}");
    }
    assert!(!message.contains("group_learning_rates"), "{message}");
}

/// The error of fitting a fresh model with `config` and group function `groups`.
fn fit_err(config: TrainConfig, groups: impl Fn(&Tiny) -> NamedGroups) -> TrainError {
    let device = cpu();
    Trainer::new(config)
        .with_param_groups(groups)
        .fit(tiny(&init_values(1.0), &device), 0.., loss, |_| Ok(0.0))
        .unwrap_err()
}

fn group_error(err: &TrainError) -> (&str, &str) {
    match err {
        TrainError::ParamGroup { group, message } => (group, message),
        other => panic!("{other:?}"),
    }
}

#[test]
fn groups_that_do_not_fit_are_refused() {
    let cfg = config(0, 2);

    // A rate for a group the function does not return.
    let err = fit_err(cfg.clone().with_group_lr("head", 1e-3), groups);
    let (group, message) = group_error(&err);
    assert_eq!(group, "head");
    assert!(
        message.contains("no such group") && message.contains("\"heads\""),
        "{message}"
    );

    // ... or returns empty.
    let err = fit_err(cfg.clone().with_group_lr("heads", 1e-3), |m: &Tiny| {
        let mut g = groups(m);
        g[2].1.clear();
        g
    });
    let (group, message) = group_error(&err);
    assert_eq!(group, "heads");
    assert!(message.contains("no parameter"), "{message}");

    // Rates for groups without a group function.
    let err = Trainer::new(cfg.clone())
        .fit(tiny(&init_values(1.0), &cpu()), 0.., loss, |_| Ok(0.0))
        .unwrap_err();
    assert_eq!(group_error(&err).0, "adapters");

    // A parameter in two groups.
    let err = fit_err(cfg.clone(), |m: &Tiny| {
        let mut g = groups(m);
        g[1].1.push(m.b.id);
        g
    });
    let (group, message) = group_error(&err);
    assert_eq!(group, "adapters");
    assert!(
        message.contains("`b` is also in group \"backbone\""),
        "{message}"
    );

    // Two groups of one name.
    let err = fit_err(cfg.clone(), |m: &Tiny| {
        let mut g = groups(m);
        g.push(("heads".into(), param_ids(&m.hb)));
        g
    });
    assert_eq!(group_error(&err).0, "heads");

    // An id of no parameter of the model.
    let err = fit_err(cfg.clone(), |m: &Tiny| {
        let mut g = groups(m);
        g[0].1.push(ParamId::new());
        g
    });
    let (group, message) = group_error(&err);
    assert_eq!(group, "backbone");
    assert!(message.contains("1 of its 3 parameter ids"), "{message}");

    // A rate that cannot work.
    for lr in [0.0, f64::NAN] {
        let err = fit_err(cfg.clone().with_group_lr("adapters", lr), groups);
        assert!(
            matches!(
                err,
                TrainError::InvalidArgument {
                    what: "group_learning_rates",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn paths_name_the_fields() {
    let m = tiny(&init_values(1.0), &cpu());
    assert_eq!(param_ids(&m), vec![m.w.id, m.b.id, m.a.id, m.h.id, m.hb.id]);
    assert_eq!(
        param_ids_where(&m, |p| p.starts_with('h')),
        vec![m.h.id, m.hb.id]
    );
    assert_eq!(param_ids_where(&m, |p| p == "b"), vec![m.b.id]);
}

/// `model` with the values `values` and `model`'s parameter ids.
fn with_values(model: &Tiny, values: &[Vec<f64>], device: &Device) -> Tiny {
    let other = tiny(values, device);
    let keep = |id, p: Param<Tensor<2>>| Param::initialized(id, p.val());
    let keep1 = |id, p: Param<Tensor<1>>| Param::initialized(id, p.val());
    Tiny {
        w: keep(model.w.id, other.w),
        b: keep1(model.b.id, other.b),
        a: keep(model.a.id, other.a),
        h: keep(model.h.id, other.h),
        hb: keep1(model.hb.id, other.hb),
    }
}

#[test]
fn relative_updates_match_a_hand_computation() {
    let device = cpu();
    let zeros = |n| vec![0.0; n];
    // w: 3 and 4 (norm 5); b: 12 (backbone norm 13); a (a LoRA B): zero; h: 1; hb: 0.
    let mut before: Vec<Vec<f64>> = SHAPES.iter().map(|s| zeros(s.iter().product())).collect();
    before[0][0] = 3.0;
    before[0][5] = 4.0;
    before[1][2] = 12.0;
    before[3][1] = 1.0;
    let mut after = before.clone();
    after[0][0] += 1.0; // Δw: 1, -2
    after[0][11] -= 2.0;
    after[1][1] += 2.0; // Δb: 2 → ‖Δbackbone‖ = √(1 + 4 + 4) = 3
    after[2][0] = 0.6; // Δa: 0.6, 0.8 → 1
    after[2][7] = 0.8;
    let before = tiny(&before, &device);
    let after = with_values(&before, &after, &device);

    let updates = relative_updates(&before, &after, &groups(&before)).unwrap();
    let names: Vec<(&str, usize)> = updates
        .iter()
        .map(|u| (u.name.as_str(), u.params))
        .collect();
    assert_eq!(names, [("backbone", 2), ("adapters", 1), ("heads", 1)]);
    let [backbone, adapters, heads] = &updates[..] else {
        unreachable!()
    };
    assert_eq!(
        (backbone.before_norm, backbone.delta_norm, backbone.relative),
        (13.0, 3.0, Some(3.0 / 13.0))
    );
    // 0.6 and 0.8 as f32.
    assert_eq!((adapters.before_norm, adapters.relative), (0.0, None));
    assert!((adapters.delta_norm - 1.0).abs() < 1e-7, "{adapters:?}");
    assert_eq!(
        (heads.before_norm, heads.delta_norm, heads.relative),
        (1.0, 0.0, Some(0.0))
    );

    // An id of neither snapshot.
    let err = relative_updates(&before, &after, &[("x".into(), vec![ParamId::new()])]).unwrap_err();
    assert!(
        matches!(&err, TrainError::ParamGroup { group, .. } if group == "x"),
        "{err}"
    );
}

#[test]
fn relative_updates_of_a_run() {
    let device = cpu();
    let model = tiny(&init_values(1.0), &device);
    let before = model.clone();
    let (after, _) = Trainer::new(config(0, 3))
        .with_param_groups(groups)
        .fit(model, 0.., loss, |_| Ok(0.0))
        .unwrap();
    let updates = relative_updates(&before, &after, &groups(&before)).unwrap();
    for (u, members) in updates.iter().zip([&[0, 1][..], &[2], &[3]]) {
        let (b, a) = (values(&before), values(&after));
        let before_sq: f64 = members.iter().flat_map(|&p| &b[p]).map(|x| x * x).sum();
        let delta_sq: f64 = members
            .iter()
            .flat_map(|&p| b[p].iter().zip(&a[p]))
            .map(|(x, y)| (y - x) * (y - x))
            .sum();
        assert!((u.before_norm - before_sq.sqrt()).abs() < 1e-12, "{u:?}");
        assert!((u.delta_norm - delta_sq.sqrt()).abs() < 1e-12, "{u:?}");
        assert!(u.delta_norm > 0.0, "{u:?}");
    }
}
