//! Linear probes: convergence on a separable toy set, agreement with a logistic regression
//! written out in f64, and refusals.

use lora_bert_encoder::device::{self, Backend, Device};
use lora_bert_train::TrainError;
use lora_bert_train::probe::{LinearProbe, ProbeConfig};

fn cpu() -> Device {
    device::device(Backend::default_cpu().expect("a CPU backend")).expect("cpu device")
}

/// Three well separated clusters in 4 dimensions (class `c` centred on `3·e_c`).
fn clusters(n: usize) -> (Vec<f32>, Vec<u32>) {
    let mut z = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        (z % 1000) as f32 / 1000.0 - 0.5
    };
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = (i % 3) as u32;
        for d in 0..4 {
            x.push(if d == c as usize { 3.0 } else { 0.0 } + noise());
        }
        y.push(c);
    }
    (x, y)
}

/// [`clusters`] shrunk until the classes overlap: the optimum is interior, with finite
/// weights.
fn overlapping(n: usize) -> (Vec<f32>, Vec<u32>) {
    let (mut x, y) = clusters(n);
    for v in &mut x {
        *v *= 0.3;
    }
    (x, y)
}

#[test]
fn a_probe_converges_on_a_separable_set() {
    let device = cpu();
    let (x, y) = clusters(90);
    // With some L2 the separable problem has a finite optimum the fit settles on.
    let config = ProbeConfig {
        l2: 1e-2,
        max_steps: 3000,
        ..ProbeConfig::default()
    };
    let (probe, fit) = LinearProbe::fit(&x, 4, &y, 3, &config, &device).unwrap();
    assert!(fit.converged, "{fit:?}");
    assert!(fit.loss < 0.3, "{fit:?}");
    assert_eq!(probe.predict(&x).unwrap(), y);
    let (held_out, truth) = clusters(31);
    assert_eq!(probe.predict(&held_out).unwrap(), truth);
}

/// The warm-started path reaches, at each strength, the optimum a fit from zero reaches (the
/// problem is strictly convex), visits the strengths strongest first, and stops when asked.
#[test]
fn the_regularisation_path_reaches_each_strengths_optimum() {
    let device = cpu();
    let (x, y) = overlapping(60);
    // The default tolerance: f32 logits leave a gradient floor near 1e-6.
    let config = ProbeConfig {
        max_steps: 5000,
        ..ProbeConfig::default()
    };
    let grid = [1e-3, 1e-1, 1e-2];
    let probe_x = [0.4f32, -0.2, 0.9, 0.1, 0.0, 0.0, 0.0, 1.0];
    let mut seen = Vec::new();
    LinearProbe::fit_path(&x, 4, &y, 3, &grid, &config, &device, |l2, probe, fit| {
        assert!(fit.converged, "{l2}: {fit:?}");
        let alone = LinearProbe::fit(&x, 4, &y, 3, &ProbeConfig { l2, ..config }, &device)?.0;
        let (a, b) = (probe.logits(&probe_x)?, alone.logits(&probe_x)?);
        for (p, q) in a.iter().zip(&b) {
            // Both within the tolerance of one optimum.
            assert!((p - q).abs() < 1e-2, "{l2}: {a:?} vs {b:?}");
        }
        // The check can tell strengths apart: the optimum of a tenth of this one is elsewhere.
        let other = ProbeConfig {
            l2: l2 / 10.0,
            ..config
        };
        let other = LinearProbe::fit(&x, 4, &y, 3, &other, &device)?
            .0
            .logits(&probe_x)?;
        assert!(
            a.iter().zip(&other).any(|(p, q)| (p - q).abs() > 0.05),
            "{l2}"
        );
        seen.push(l2);
        Ok(seen.len() < 2)
    })
    .unwrap();
    assert_eq!(seen, [1e-1, 1e-2], "strongest first, stopped after two");
    let bad = LinearProbe::fit_path(&x, 4, &y, 3, &[], &config, &device, |_, _, _| Ok(true));
    assert!(
        matches!(bad, Err(TrainError::InvalidArgument { .. })),
        "{bad:?}"
    );
}

/// A fit stopped at a step limit and then refined reaches the optimum a full fit reaches.
#[test]
fn a_stopped_fit_refined_reaches_the_full_fits_optimum() {
    let device = cpu();
    let (x, y) = overlapping(60);
    let config = ProbeConfig {
        l2: 1e-2,
        max_steps: 5000,
        ..ProbeConfig::default()
    };
    let (full, fit) = LinearProbe::fit(&x, 4, &y, 3, &config, &device).unwrap();
    assert!(fit.converged, "{fit:?}");
    let short = ProbeConfig {
        max_steps: 3,
        ..config
    };
    let (stopped, fit) = LinearProbe::fit(&x, 4, &y, 3, &short, &device).unwrap();
    assert!(!fit.converged, "{fit:?}");
    let probe_x = [0.4f32, -0.2, 0.9, 0.1, 0.0, 0.0, 0.0, 1.0];
    let gap = |a: &LinearProbe| {
        let (p, q) = (a.logits(&probe_x).unwrap(), full.logits(&probe_x).unwrap());
        p.iter()
            .zip(&q)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    };
    assert!(gap(&stopped) > 0.05, "three steps are not the optimum");
    let (refined, fit) = stopped.refine(&x, &y, &config, &device).unwrap();
    assert!(fit.converged, "{fit:?}");
    assert!(gap(&refined) < 1e-2, "{}", gap(&refined));
    // Labels of another width are refused.
    assert!(matches!(
        stopped.refine(&x, &y[..10], &config, &device),
        Err(TrainError::InvalidArgument { .. })
    ));
}

/// Softmax regression with L2 on standardised features, trained to convergence, sits where
/// the gradient vanishes. In raw-feature weights `W` (what the probe applies), the penalty
/// `λ/2 ‖σ ∘ W‖²` on the standardised weights `σ_d W[d]` gives
/// `Xᵀ(P − Y)/n + λ σ_d² W[d] = 0` and `Σ(P − Y) = 0`, computed here in f64 from the probe's
/// logits, with `σ` the features' standard deviations computed here too.
#[test]
fn a_fitted_probe_is_a_stationary_point_of_the_regularised_loss() {
    let device = cpu();
    let (x, y) = overlapping(60);
    let config = ProbeConfig {
        l2: 1e-2,
        max_steps: 5000,
        tolerance: 1e-7,
    };
    let (probe, _) = LinearProbe::fit(&x, 4, &y, 3, &config, &device).unwrap();
    let logits = probe.logits(&x).unwrap();
    // W itself: the logits of the unit vectors minus the bias (the logits of 0).
    let bias = probe.logits(&[0.0; 4]).unwrap();
    let mut w = [[0.0f64; 3]; 4];
    for (d, row) in w.iter_mut().enumerate() {
        let mut e = [0.0f32; 4];
        e[d] = 1.0;
        let l = probe.logits(&e).unwrap();
        for c in 0..3 {
            row[c] = f64::from(l[c] - bias[c]);
        }
    }
    let n = y.len();
    let mut grad_w = [[0.0f64; 3]; 4];
    let mut grad_b = [0.0f64; 3];
    for i in 0..n {
        let row: Vec<f64> = logits[i * 3..i * 3 + 3]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = row.iter().map(|v| (v - max).exp()).sum();
        for c in 0..3 {
            let g = (row[c] - max).exp() / z - if y[i] as usize == c { 1.0 } else { 0.0 };
            grad_b[c] += g / n as f64;
            for d in 0..4 {
                grad_w[d][c] += f64::from(x[i * 4 + d]) * g / n as f64;
            }
        }
    }
    let mut sigma = [0.0f64; 4];
    for (d, s) in sigma.iter_mut().enumerate() {
        let column: Vec<f64> = (0..n).map(|i| f64::from(x[i * 4 + d])).collect();
        let mean = column.iter().sum::<f64>() / n as f64;
        *s = (column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    }
    for d in 0..4 {
        for c in 0..3 {
            let g = grad_w[d][c] + config.l2 * sigma[d].powi(2) * w[d][c];
            assert!(g.abs() < 1e-4, "∂/∂W[{d}][{c}] = {g}");
        }
    }
    for (c, g) in grad_b.iter().enumerate() {
        assert!(g.abs() < 1e-4, "∂/∂b[{c}] = {g}");
    }
}

#[test]
fn bad_probe_inputs_are_refused() {
    let device = cpu();
    let c = ProbeConfig::default();
    let bad = |r: Result<_, TrainError>| {
        assert!(
            matches!(r, Err(TrainError::InvalidArgument { .. })),
            "{:?}",
            r.map(|_: (LinearProbe, _)| ())
        );
    };
    bad(LinearProbe::fit(&[], 4, &[], 3, &c, &device));
    bad(LinearProbe::fit(&[0.0; 7], 4, &[0, 1], 3, &c, &device));
    bad(LinearProbe::fit(&[0.0; 8], 4, &[0, 3], 3, &c, &device));
    bad(LinearProbe::fit(&[f32::NAN; 8], 4, &[0, 1], 3, &c, &device));
    bad(LinearProbe::fit(&[0.0; 8], 4, &[0, 1], 1, &c, &device));
    let zero_steps = ProbeConfig { max_steps: 0, ..c };
    bad(LinearProbe::fit(
        &[0.0; 8],
        4,
        &[0, 1],
        3,
        &zero_steps,
        &device,
    ));
    let no_l2 = ProbeConfig { l2: 0.0, ..c };
    bad(LinearProbe::fit(&[0.0; 8], 4, &[0, 1], 3, &no_l2, &device));
    let (x, y) = clusters(9);
    let (probe, _) = LinearProbe::fit(&x, 4, &y, 3, &c, &device).unwrap();
    assert!(probe.logits(&[0.0; 5]).is_err());
    assert!(probe.logits(&[]).unwrap().is_empty());
}

/// Few rows, many pure-noise features: a weak L2 overfits, so the held-out rows must pick a
/// stronger one. The returned probe is the plain fit at the chosen strength on all rows.
#[test]
fn held_out_rows_choose_the_l2_strength() {
    let device = cpu();
    let (n, dim) = (60, 40);
    let mut z = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        (z % 10_000) as f32 / 10_000.0 - 0.5
    };
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = (i % 2) as u32;
        // One weakly informative feature, then noise.
        x.push(if c == 1 { 0.3 } else { -0.3 } + noise());
        for _ in 1..dim {
            x.push(noise());
        }
        y.push(c);
    }
    let grid = [1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5];
    let config = ProbeConfig::default();
    let (probe, fit, selection) =
        LinearProbe::fit_selected(&x, dim, &y, 2, 45, &grid, &config, &device).unwrap();
    assert!(fit.converged, "{fit:?}");
    assert_eq!(selection.held_out_rows, 15);
    let best = selection
        .trials
        .iter()
        .min_by(|a, b| a.held_out_loss.total_cmp(&b.held_out_loss))
        .unwrap();
    assert_eq!(selection.l2, best.l2, "{selection:?}");
    assert!(selection.l2 >= 1e-2, "noise was fitted: {selection:?}");
    // Strongest first, as tried.
    assert!(selection.trials.windows(2).all(|w| w[0].l2 > w[1].l2));
    let plain = ProbeConfig {
        l2: selection.l2,
        ..config
    };
    let (same, _) = LinearProbe::fit(&x, dim, &y, 2, &plain, &device).unwrap();
    for (a, b) in probe
        .logits(&x)
        .unwrap()
        .iter()
        .zip(same.logits(&x).unwrap())
    {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    let bad = |split: usize, grid: &[f64]| {
        assert!(matches!(
            LinearProbe::fit_selected(&x, dim, &y, 2, split, grid, &config, &device),
            Err(TrainError::InvalidArgument { .. })
        ));
    };
    bad(0, &grid);
    bad(n, &grid);
    bad(45, &[]);
    bad(45, &[1e-2, -1.0]);
}

fn token_example(ids: &[u32], sentence: usize) -> lora_bert_data::token::TokenExample {
    lora_bert_data::token::TokenExample {
        input_ids: ids.to_vec(),
        type_ids: vec![0; ids.len()],
        labels: vec![-100; ids.len()],
        token_word: (0..ids.len()).map(Some).collect(),
        sentence,
        num_words: ids.len(),
        window: 0,
        num_windows: 1,
        token_start: 0,
    }
}

/// Features batched by length come back in the examples' order and equal each example
/// encoded alone; `Layer::Hidden(L)` is the last layer, and a layer the model lacks is refused.
#[test]
fn token_states_are_in_order_whatever_the_batching() {
    use lora_bert_adapters::{AdaptedModel, Lora};
    use lora_bert_encoder::{BertConfig, BertModel, Route};
    use lora_bert_train::probe::{Layer, token_states, token_states_at};

    let device = cpu();
    device.seed(3);
    let config = BertConfig::new(50, 16, 2, 2, 32);
    let model = AdaptedModel::<Lora>::new(BertModel::init(&config, false, &device));
    let lengths = [3usize, 9, 5, 9, 2, 7, 4];
    let examples: Vec<_> = lengths
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let ids: Vec<u32> = (0..n).map(|i| ((7 * k + 3 * i) % 50) as u32).collect();
            token_example(&ids, k)
        })
        .collect();
    let batched = token_states(&model, &Route::Base, &examples, 3, 0).unwrap();
    assert_eq!(batched.len(), examples.len());
    for (k, example) in examples.iter().enumerate() {
        assert_eq!(batched[k].len(), example.len() * 16);
        let alone =
            token_states(&model, &Route::Base, std::slice::from_ref(example), 1, 0).unwrap();
        let gap = alone[0]
            .iter()
            .zip(&batched[k])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(gap < 1e-4, "example {k}: {gap}");
    }
    let last = token_states_at(&model, &Route::Base, &examples, 3, 0, Layer::Hidden(2)).unwrap();
    assert_eq!(last, batched);
    let embeddings =
        token_states_at(&model, &Route::Base, &examples, 3, 0, Layer::Hidden(0)).unwrap();
    assert_ne!(embeddings, batched);
    assert!(matches!(
        token_states_at(&model, &Route::Base, &examples, 3, 0, Layer::Hidden(3)),
        Err(TrainError::InvalidArgument { .. })
    ));
}
