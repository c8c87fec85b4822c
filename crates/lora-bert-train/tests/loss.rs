//! The objectives against plain-Rust f64 reference implementations written here, with
//! gradients checked by finite differences on tiny cases.

use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_bert_encoder::device::{self, Backend};
use lora_bert_train::TrainError;
use lora_bert_train::loss::{
    CrossEntropy, DistillLoss, DistillProjection, check_finite, cross_entropy, distill_states,
    info_nce, kl_logits, kl_words, token_cross_entropy,
};

// ---------------------------------------------------------------------------------------------
// Helpers

fn cpu() -> Device {
    device::device(Backend::default_cpu().expect("a CPU backend")).expect("cpu device")
}

/// SplitMix64: deterministic values for a seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-scale, scale]`, rounded to f32 so both sides see the same inputs.
    fn uniform(&mut self, scale: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        f64::from(((2.0 * u - 1.0) * scale) as f32)
    }

    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(scale)).collect()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn t2(values: &[f64], shape: [usize; 2], device: &Device) -> Tensor<2> {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn t3(values: &[f64], shape: [usize; 3], device: &Device) -> Tensor<3> {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn ints1(values: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

fn ints2(values: &[i64], shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn scalar(loss: Tensor<1>) -> f64 {
    check_finite(&loss, 0).expect("finite loss")
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .try_to_vec::<f32>()
        .expect("f32")
        .into_iter()
        .map(f64::from)
        .collect()
}

#[track_caller]
fn assert_rel(actual: f64, expected: f64, tol: f64) {
    let err = (actual - expected).abs() / expected.abs().max(1.0);
    assert!(
        err <= tol,
        "actual {actual} vs expected {expected}: relative error {err:e} > {tol:e}"
    );
}

// ---------------------------------------------------------------------------------------------
// f64 references

fn log_softmax_row(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    row.iter().map(|x| x - lse).collect()
}

/// PyTorch's documented `CrossEntropyLoss` with class-index targets, `reduction='mean'`,
/// `ignore_index` and label smoothing: the target distribution is
/// `y = (1 - ε)·onehot + ε / C`, the row loss `-Σ_c y_c·log p_c`, averaged over the rows whose
/// target is not ignored. Returns NaN when every row is ignored, as PyTorch does.
fn ce_reference(logits: &[f64], c: usize, targets: &[i64], ignore: Option<i64>, eps: f64) -> f64 {
    let mut total = 0.0;
    let mut count = 0usize;
    for (row, &t) in logits.chunks(c).zip(targets) {
        if ignore == Some(t) {
            continue;
        }
        let logp = log_softmax_row(row);
        let loss: f64 = (0..c)
            .map(|k| {
                let y = (1.0 - eps) * f64::from(u8::from(k as i64 == t)) + eps / c as f64;
                -y * logp[k]
            })
            .sum();
        total += loss;
        count += 1;
    }
    total / count as f64
}

fn normalize_rows(x: &[f64], d: usize) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            r.iter().map(move |v| v / n)
        })
        .collect()
}

/// Mean over rows `i` of `-log softmax(sim[i, :] / τ)[i]`, `sim` the cosine similarities.
fn info_nce_one_way(a: &[f64], p: &[f64], d: usize, tau: f64) -> f64 {
    let (a, p) = (normalize_rows(a, d), normalize_rows(p, d));
    let b = a.len() / d;
    let mut total = 0.0;
    for i in 0..b {
        let row: Vec<f64> = (0..b)
            .map(|j| (0..d).map(|k| a[i * d + k] * p[j * d + k]).sum::<f64>() / tau)
            .collect();
        total -= log_softmax_row(&row)[i];
    }
    total / b as f64
}

fn info_nce_reference(a: &[f64], p: &[f64], d: usize, tau: f64, symmetric: bool) -> f64 {
    if symmetric {
        (info_nce_one_way(a, p, d, tau) + info_nce_one_way(p, a, d, tau)) / 2.0
    } else {
        info_nce_one_way(a, p, d, tau)
    }
}

fn distill_reference(s: &[f64], t: &[f64], mask: &[i64], h: usize, kind: DistillLoss) -> f64 {
    let mut total = 0.0;
    let mut count = 0;
    for ((sw, tw), &m) in s.chunks(h).zip(t.chunks(h)).zip(mask) {
        if m == 0 {
            continue;
        }
        count += 1;
        total += match kind {
            DistillLoss::Mse => {
                sw.iter().zip(tw).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / h as f64
            }
            DistillLoss::Cosine => {
                let dot: f64 = sw.iter().zip(tw).map(|(x, y)| x * y).sum();
                let ns = sw.iter().map(|x| x * x).sum::<f64>().sqrt();
                let nt = tw.iter().map(|x| x * x).sum::<f64>().sqrt();
                1.0 - dot / (ns * nt)
            }
        };
    }
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

fn kl_reference(s: &[f64], t: &[f64], c: usize, temp: f64) -> f64 {
    let n = s.len() / c;
    let mut total = 0.0;
    for (sr, tr) in s.chunks(c).zip(t.chunks(c)) {
        let ls = log_softmax_row(&sr.iter().map(|x| x / temp).collect::<Vec<_>>());
        let lt = log_softmax_row(&tr.iter().map(|x| x / temp).collect::<Vec<_>>());
        total += (0..c).map(|k| lt[k].exp() * (lt[k] - ls[k])).sum::<f64>();
    }
    temp * temp * total / n as f64
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

#[test]
fn cross_entropy_matches_the_reference_on_random_inputs() {
    let dev = cpu();
    for seed in 0..6 {
        let mut rng = Rng(seed);
        let (n, c) = (3 + rng.below(10), 2 + rng.below(7));
        let logits = rng.vec(n * c, 4.0);
        let mut targets: Vec<i64> = (0..n).map(|_| rng.below(c) as i64).collect();
        targets[0] = -100; // at least one ignored row
        targets[n - 1] = (c - 1) as i64; // at least one counted row
        for eps in [0.0, 0.1, 0.35, 1.0] {
            let opts = CrossEntropy::default().with_label_smoothing(eps as f32);
            let ours = scalar(
                cross_entropy(t2(&logits, [n, c], &dev), ints1(&targets, &dev), &opts).unwrap(),
            );
            let expected = ce_reference(&logits, c, &targets, Some(-100), f64::from(eps as f32));
            assert_rel(ours, expected, 1e-5);
        }
    }
}

#[test]
fn label_smoothing_by_hand() {
    // p = softmax([ln 1, ln 3]) = [1/4, 3/4], target 1, ε = 0.2:
    // PyTorch: (1 - ε)·(-ln 3/4) + ε·(-(ln 1/4 + ln 3/4) / 2).
    let dev = cpu();
    let logits = t2(&[0.0, 3f64.ln()], [1, 2], &dev);
    let opts = CrossEntropy::default().with_label_smoothing(0.2);
    let ours = scalar(cross_entropy(logits, ints1(&[1], &dev), &opts).unwrap());
    let expected = 0.8 * -(0.75f64.ln()) + 0.2 * -(0.25f64.ln() + 0.75f64.ln()) / 2.0;
    assert_rel(ours, expected, 1e-6);
}

#[test]
fn ignored_targets_are_neither_summed_nor_counted() {
    let dev = cpu();
    let mut rng = Rng(42);
    let logits = rng.vec(4 * 3, 3.0);
    // Rows 1 and 3 ignored: the mean is over rows 0 and 2 only.
    let targets = [2, -100, 0, -100];
    let ours = scalar(
        cross_entropy(
            t2(&logits, [4, 3], &dev),
            ints1(&targets, &dev),
            &CrossEntropy::default(),
        )
        .unwrap(),
    );
    let kept: Vec<f64> = [&logits[0..3], &logits[6..9]].concat();
    let expected = ce_reference(&kept, 3, &[2, 0], None, 0.0);
    assert_rel(ours, expected, 1e-6);

    // Another ignore index; -100 then is an out-of-range target.
    let opts = CrossEntropy::default().with_ignore_index(Some(7));
    let ours = scalar(
        cross_entropy(t2(&logits, [4, 3], &dev), ints1(&[2, 7, 0, 7], &dev), &opts).unwrap(),
    );
    assert_rel(ours, expected, 1e-6);
    let err = cross_entropy(t2(&logits, [4, 3], &dev), ints1(&targets, &dev), &opts);
    assert!(matches!(
        err,
        Err(TrainError::InvalidArgument {
            what: "targets",
            ..
        })
    ));

    // No ignore index: every target counts.
    let opts = CrossEntropy::default().with_ignore_index(None);
    let all = [2, 1, 0, 1];
    let ours = scalar(cross_entropy(t2(&logits, [4, 3], &dev), ints1(&all, &dev), &opts).unwrap());
    assert_rel(ours, ce_reference(&logits, 3, &all, None, 0.0), 1e-6);
}

#[test]
fn all_targets_ignored_gives_zero_loss_and_zero_gradients() {
    let dev = device::autodiff(cpu());
    let logits = t2(&[1.0, -2.0, 0.5, 3.0], [2, 2], &dev).require_grad();
    let targets = ints1(&[-100, -100], &dev);
    let opts = CrossEntropy::default().with_label_smoothing(0.1);
    let loss = cross_entropy(logits.clone(), targets, &opts).unwrap();
    assert_eq!(scalar(loss.clone()), 0.0);
    // PyTorch gives NaN here (0 / 0): the reference says so.
    assert!(ce_reference(&[1.0, -2.0, 0.5, 3.0], 2, &[-100, -100], Some(-100), 0.1).is_nan());
    let grads = loss.backward();
    let g = values(logits.grad(&grads).expect("gradient"));
    assert_eq!(g, [0.0; 4]);
}

#[test]
fn cross_entropy_rejects_bad_input() {
    let dev = cpu();
    let logits = || t2(&[0.0; 6], [2, 3], &dev);
    let opts = CrossEntropy::default();
    // Out of range, both sides.
    for bad in [[0, 3], [-1, 0]] {
        let err = cross_entropy(logits(), ints1(&bad, &dev), &opts).unwrap_err();
        assert!(
            matches!(
                err,
                TrainError::InvalidArgument {
                    what: "targets",
                    ..
                }
            ),
            "{err}"
        );
    }
    // Length.
    let err = cross_entropy(logits(), ints1(&[0, 1, 2], &dev), &opts).unwrap_err();
    match err {
        TrainError::Shape {
            expected, found, ..
        } => {
            assert_eq!(expected, [2]);
            assert_eq!(found, [3]);
        }
        other => panic!("{other}"),
    }
    // Smoothing.
    for eps in [-0.1, 1.5, f32::NAN] {
        let opts = CrossEntropy::default().with_label_smoothing(eps);
        let err = cross_entropy(logits(), ints1(&[0, 1], &dev), &opts).unwrap_err();
        assert!(matches!(
            err,
            TrainError::InvalidArgument {
                what: "label_smoothing",
                ..
            }
        ));
    }
}

#[test]
fn token_cross_entropy_is_the_flat_cross_entropy() {
    let dev = cpu();
    for seed in 10..14 {
        let mut rng = Rng(seed);
        let (b, s, c) = (2 + rng.below(3), 3 + rng.below(5), 2 + rng.below(4));
        let logits = rng.vec(b * s * c, 3.0);
        let labels: Vec<i64> = (0..b * s)
            .map(|i| {
                if i % 4 == 0 {
                    -100
                } else {
                    rng.below(c) as i64
                }
            })
            .collect();
        let opts = CrossEntropy::default().with_label_smoothing(0.1);
        let ours = scalar(
            token_cross_entropy(
                t3(&logits, [b, s, c], &dev),
                ints2(&labels, [b, s], &dev),
                &opts,
            )
            .unwrap(),
        );
        let expected = ce_reference(&logits, c, &labels, Some(-100), f64::from(0.1f32));
        assert_rel(ours, expected, 1e-5);
    }
    let err = token_cross_entropy(
        t3(&[0.0; 12], [2, 3, 2], &dev),
        ints2(&[0; 4], [2, 2], &dev),
        &CrossEntropy::default(),
    )
    .unwrap_err();
    match err {
        TrainError::Shape {
            expected, found, ..
        } => {
            assert_eq!((expected, found), (vec![2, 3], vec![2, 2]));
        }
        other => panic!("{other}"),
    }
}

/// Central finite differences of `f` at `x`.
fn numeric_gradient(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|i| {
            let mut up = x.to_vec();
            let mut down = x.to_vec();
            up[i] += h;
            down[i] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        })
        .collect()
}

#[track_caller]
fn assert_gradients(autodiff: &[f64], numeric: &[f64]) {
    assert_eq!(autodiff.len(), numeric.len());
    let scale = numeric.iter().fold(0.0f64, |m, g| m.max(g.abs())).max(1e-3);
    for (i, (a, n)) in autodiff.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= 1e-4 * scale.max(1.0),
            "gradient {i}: autodiff {a} vs finite differences {n}"
        );
    }
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let dev = device::autodiff(cpu());
    let mut rng = Rng(7);
    let (n, c) = (4, 3);
    let x = rng.vec(n * c, 2.0);
    let targets = [2, -100, 0, 1];
    for eps in [0.0, 0.25] {
        let logits = t2(&x, [n, c], &dev).require_grad();
        let opts = CrossEntropy::default().with_label_smoothing(eps as f32);
        let loss = cross_entropy(logits.clone(), ints1(&targets, &dev), &opts).unwrap();
        let grads = loss.backward();
        let ours = values(logits.grad(&grads).expect("gradient"));
        let numeric = numeric_gradient(&x, |v| ce_reference(v, c, &targets, Some(-100), eps));
        assert_gradients(&ours, &numeric);
        // The ignored row gets no gradient at all.
        assert_eq!(&ours[3..6], [0.0; 3]);
    }
}

// ---------------------------------------------------------------------------------------------
// InfoNCE

#[test]
fn info_nce_matches_the_reference_on_random_inputs() {
    let dev = cpu();
    for seed in 20..26 {
        let mut rng = Rng(seed);
        let (b, d) = (2 + rng.below(8), 2 + rng.below(16));
        let a = rng.vec(b * d, 1.0);
        let p = rng.vec(b * d, 1.0);
        for tau in [0.05, 0.5, 2.0] {
            for symmetric in [false, true] {
                let ours = scalar(
                    info_nce(t2(&a, [b, d], &dev), t2(&p, [b, d], &dev), tau, symmetric).unwrap(),
                );
                assert_rel(ours, info_nce_reference(&a, &p, d, tau, symmetric), 1e-5);
            }
        }
    }
}

#[test]
fn symmetric_info_nce_averages_both_directions() {
    let dev = cpu();
    let mut rng = Rng(3);
    let (b, d) = (6, 8);
    let a = rng.vec(b * d, 1.0);
    let p = rng.vec(b * d, 1.0);
    let run = |x: &[f64], y: &[f64], sym| {
        scalar(info_nce(t2(x, [b, d], &dev), t2(y, [b, d], &dev), 0.1, sym).unwrap())
    };
    let forward = run(&a, &p, false);
    let backward = run(&p, &a, false);
    assert!(
        (forward - backward).abs() > 1e-3,
        "directions should differ on random data"
    );
    assert_rel(run(&a, &p, true), (forward + backward) / 2.0, 1e-6);
}

#[test]
fn aligned_pairs_give_a_low_loss_and_random_pairs_about_ln_b() {
    let dev = cpu();
    let (b, d) = (8, 256);
    let mut rng = Rng(99);
    let a = rng.vec(b * d, 1.0);
    // A positive equal to its anchor (scaled: cosine ignores the norm).
    let scaled: Vec<f64> = a.iter().map(|x| 3.0 * x).collect();
    let aligned =
        scalar(info_nce(t2(&a, [b, d], &dev), t2(&scaled, [b, d], &dev), 0.05, true).unwrap());
    assert!(aligned < 0.01, "aligned loss {aligned}");
    // Independent positives at τ = 1: similarities near 0, loss near ln B.
    let p = rng.vec(b * d, 1.0);
    let random = scalar(info_nce(t2(&a, [b, d], &dev), t2(&p, [b, d], &dev), 1.0, false).unwrap());
    let ln_b = (b as f64).ln();
    assert!(
        (random - ln_b).abs() < 0.1,
        "random loss {random} vs ln B {ln_b}"
    );
}

#[test]
fn info_nce_gradient_matches_finite_differences() {
    let dev = device::autodiff(cpu());
    let mut rng = Rng(11);
    let (b, d) = (3, 4);
    let a = rng.vec(b * d, 1.0);
    let p = rng.vec(b * d, 1.0);
    for symmetric in [false, true] {
        let ta = t2(&a, [b, d], &dev).require_grad();
        let tp = t2(&p, [b, d], &dev).require_grad();
        let loss = info_nce(ta.clone(), tp.clone(), 0.5, symmetric).unwrap();
        let grads = loss.backward();
        let ga = values(ta.grad(&grads).expect("anchor gradient"));
        let gp = values(tp.grad(&grads).expect("positive gradient"));
        let na = numeric_gradient(&a, |v| info_nce_reference(v, &p, d, 0.5, symmetric));
        let np = numeric_gradient(&p, |v| info_nce_reference(&a, v, d, 0.5, symmetric));
        assert_gradients(&ga, &na);
        assert_gradients(&gp, &np);
    }
}

#[test]
fn info_nce_rejects_bad_input() {
    let dev = cpu();
    let x = || t2(&[1.0, 0.0, 0.0, 1.0], [2, 2], &dev);
    for tau in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = info_nce(x(), x(), tau, false).unwrap_err();
        assert!(matches!(
            err,
            TrainError::InvalidArgument {
                what: "temperature",
                ..
            }
        ));
    }
    let err = info_nce(x(), t2(&[0.0; 6], [3, 2], &dev), 0.1, false).unwrap_err();
    match err {
        TrainError::Shape {
            expected, found, ..
        } => {
            assert_eq!((expected, found), (vec![2, 2], vec![3, 2]));
        }
        other => panic!("{other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Distillation

#[test]
fn distill_states_matches_the_reference() {
    let dev = cpu();
    for seed in 30..35 {
        let mut rng = Rng(seed);
        let (b, w, h) = (1 + rng.below(3), 2 + rng.below(5), 2 + rng.below(8));
        let s = rng.vec(b * w * h, 2.0);
        let t = rng.vec(b * w * h, 2.0);
        let mut mask: Vec<i64> = (0..b * w).map(|_| (rng.below(3) > 0) as i64).collect();
        mask[0] = 1;
        for kind in [DistillLoss::Mse, DistillLoss::Cosine] {
            let ours = scalar(
                distill_states(
                    t3(&s, [b, w, h], &dev),
                    t3(&t, [b, w, h], &dev),
                    ints2(&mask, [b, w], &dev),
                    kind,
                )
                .unwrap(),
            );
            assert_rel(ours, distill_reference(&s, &t, &mask, h, kind), 1e-5);
        }
    }
}

#[test]
fn distill_states_ignores_masked_words_and_keeps_gradients_finite() {
    // Masked columns hold zeros, as word pooling leaves them: the cosine loss must not turn
    // them into NaN gradients, and changing them must not change the loss.
    let dev = device::autodiff(cpu());
    let s = [1.0, 2.0, 0.0, 0.0, -1.0, 0.5, 0.0, 0.0];
    let t = [2.0, 1.0, 7.0, 7.0, 0.5, 0.5, 0.0, 0.0];
    let mask = [1, 0, 1, 0];
    for kind in [DistillLoss::Mse, DistillLoss::Cosine] {
        let student = t3(&s, [2, 2, 2], &dev).require_grad();
        let loss = distill_states(
            student.clone(),
            t3(&t, [2, 2, 2], &dev),
            ints2(&mask, [2, 2], &dev),
            kind,
        )
        .unwrap();
        assert_rel(
            scalar(loss.clone()),
            distill_reference(&s, &t, &mask, 2, kind),
            1e-6,
        );
        let g = values(student.grad(&loss.backward()).expect("gradient"));
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
        assert_eq!(
            [g[2], g[3], g[6], g[7]],
            [0.0; 4],
            "masked words got gradients"
        );
    }
    // No real word: 0.
    let loss = distill_states(
        t3(&s, [2, 2, 2], &dev),
        t3(&t, [2, 2, 2], &dev),
        ints2(&[0; 4], [2, 2], &dev),
        DistillLoss::Mse,
    )
    .unwrap();
    assert_eq!(scalar(loss), 0.0);
}

#[test]
fn distill_states_rejects_bad_shapes() {
    let dev = cpu();
    let err = distill_states(
        t3(&[0.0; 8], [1, 2, 4], &dev),
        t3(&[0.0; 6], [1, 2, 3], &dev),
        ints2(&[1, 1], [1, 2], &dev),
        DistillLoss::Mse,
    )
    .unwrap_err();
    match err {
        TrainError::Shape {
            expected, found, ..
        } => {
            assert_eq!((expected, found), (vec![1, 2, 4], vec![1, 2, 3]));
        }
        other => panic!("{other}"),
    }
    let err = distill_states(
        t3(&[0.0; 8], [1, 2, 4], &dev),
        t3(&[0.0; 8], [1, 2, 4], &dev),
        ints2(&[1, 1, 1], [1, 3], &dev),
        DistillLoss::Cosine,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Shape { .. }));
}

#[test]
fn distill_projection_maps_widths_and_trains() {
    let dev = device::autodiff(cpu());
    let proj = DistillProjection::init(3, 5, &dev).unwrap();
    let x = t3(&[0.5; 12], [2, 2, 3], &dev);
    let y = proj.forward(x.clone()).unwrap();
    assert_eq!(y.dims(), [2, 2, 5]);
    // Gradients reach the projection through the loss.
    let loss = distill_states(
        y,
        t3(&[1.0; 20], [2, 2, 5], &dev),
        ints2(&[1, 1, 1, 0], [2, 2], &dev),
        DistillLoss::Mse,
    )
    .unwrap();
    let grads = loss.backward();
    let g = values(
        proj.dense
            .weight
            .val()
            .grad(&grads)
            .expect("weight gradient"),
    );
    assert!(g.iter().any(|v| *v != 0.0));
    assert!(matches!(
        proj.forward(t3(&[0.0; 8], [2, 2, 2], &dev)),
        Err(TrainError::Shape { .. })
    ));
    assert!(DistillProjection::init(0, 5, &dev).is_err());
}

#[test]
fn kl_logits_matches_the_reference() {
    let dev = cpu();
    for seed in 40..45 {
        let mut rng = Rng(seed);
        let (n, c) = (1 + rng.below(6), 2 + rng.below(6));
        let s = rng.vec(n * c, 4.0);
        let t = rng.vec(n * c, 4.0);
        for temp in [0.5, 1.0, 2.0, 4.0] {
            let ours = scalar(kl_logits(t2(&s, [n, c], &dev), t2(&t, [n, c], &dev), temp).unwrap());
            assert_rel(ours, kl_reference(&s, &t, c, temp), 1e-5);
        }
    }
    // Identical logits: zero divergence.
    let x = [1.0, 2.0, 3.0];
    let same = scalar(kl_logits(t2(&x, [1, 3], &dev), t2(&x, [1, 3], &dev), 2.0).unwrap());
    assert!(same.abs() < 1e-6);
}

#[test]
fn kl_logits_gradient_reaches_only_the_student() {
    let dev = device::autodiff(cpu());
    let mut rng = Rng(5);
    let s = rng.vec(6, 2.0);
    let t = rng.vec(6, 2.0);
    let student = t2(&s, [2, 3], &dev).require_grad();
    let teacher = t2(&t, [2, 3], &dev).require_grad();
    let loss = kl_logits(student.clone(), teacher.clone(), 2.0).unwrap();
    let grads = loss.backward();
    let gs = values(student.grad(&grads).expect("student gradient"));
    assert_gradients(&gs, &numeric_gradient(&s, |v| kl_reference(v, &t, 3, 2.0)));
    assert!(teacher.grad(&grads).is_none(), "the teacher is a target");
    for temp in [0.0, -2.0, f64::NAN] {
        assert!(matches!(
            kl_logits(student.clone(), teacher.clone(), temp),
            Err(TrainError::InvalidArgument {
                what: "temperature",
                ..
            })
        ));
    }
    assert!(matches!(
        kl_logits(student, t2(&t[..4], [2, 2], &dev), 1.0),
        Err(TrainError::Shape { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// check_finite

#[test]
fn check_finite_reports_the_step() {
    let dev = cpu();
    let one = |v: f32| Tensor::<1>::from_data(TensorData::new(vec![v], [1]), &dev);
    assert_eq!(check_finite(&one(1.5), 3).unwrap(), 1.5);
    match check_finite(&one(f32::NAN), 17) {
        Err(TrainError::NonFiniteLoss { step, value }) => {
            assert_eq!(step, 17);
            assert!(value.is_nan());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        check_finite(&one(f32::INFINITY), 0),
        Err(TrainError::NonFiniteLoss { .. })
    ));
    let two = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &dev);
    assert!(matches!(
        check_finite(&two, 0),
        Err(TrainError::Shape { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Invariants

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Cross-entropy is non-negative and does not change when a constant is added to a
        /// row of logits (softmax is shift-invariant).
        #[test]
        fn cross_entropy_is_shift_invariant(
            seed in any::<u64>(),
            n in 1usize..6,
            c in 2usize..6,
            shift in -20.0f64..20.0,
            eps in 0.0f32..1.0,
        ) {
            let dev = cpu();
            let mut rng = Rng(seed);
            let logits = rng.vec(n * c, 3.0);
            let targets: Vec<i64> = (0..n).map(|_| rng.below(c) as i64).collect();
            let shifted: Vec<f64> = logits.iter().map(|x| x + shift).collect();
            let opts = CrossEntropy::default().with_label_smoothing(eps);
            let run = |x: &[f64]| {
                scalar(cross_entropy(t2(x, [n, c], &dev), ints1(&targets, &dev), &opts).unwrap())
            };
            let (a, b) = (run(&logits), run(&shifted));
            prop_assert!(a >= 0.0);
            prop_assert!((a - b).abs() <= 1e-4 * a.max(1.0), "{a} vs {b}");
        }

        /// InfoNCE depends on directions only: scaling rows by positive factors changes
        /// nothing, and the loss lies in [0, ln B + 2/τ].
        #[test]
        fn info_nce_ignores_row_norms(
            seed in any::<u64>(),
            b in 1usize..6,
            d in 2usize..8,
            tau in 0.05f64..2.0,
        ) {
            let dev = cpu();
            let mut rng = Rng(seed);
            let a = rng.vec(b * d, 1.0);
            let p = rng.vec(b * d, 1.0);
            let scaled: Vec<f64> = a
                .chunks(d)
                .enumerate()
                .flat_map(|(i, r)| r.iter().map(move |x| x * (0.5 + i as f64)))
                .collect();
            let run = |x: &[f64]| {
                scalar(info_nce(t2(x, [b, d], &dev), t2(&p, [b, d], &dev), tau, true).unwrap())
            };
            let (l, m) = (run(&a), run(&scaled));
            prop_assert!((l - m).abs() <= 1e-4 * l.max(1.0), "{l} vs {m}");
            prop_assert!(l >= -1e-6 && l <= (b as f64).ln() + 2.0 / tau + 1e-4);
        }
    }
}

/// Per word: `T²·KL(softmax(t/T) ‖ softmax(s/T)) + hard·(−log softmax(s)[argmax t])`,
/// averaged over the masked words (0 when none).
fn kl_words_reference(s: &[f64], t: &[f64], mask: &[i64], c: usize, temp: f64, hard: f64) -> f64 {
    let mut total = 0.0;
    let mut count = 0;
    for ((sr, tr), &m) in s.chunks(c).zip(t.chunks(c)).zip(mask) {
        if m == 0 {
            continue;
        }
        let ls = log_softmax_row(&sr.iter().map(|x| x / temp).collect::<Vec<_>>());
        let lt = log_softmax_row(&tr.iter().map(|x| x / temp).collect::<Vec<_>>());
        let kl: f64 = (0..c).map(|k| lt[k].exp() * (lt[k] - ls[k])).sum();
        let target = (0..c)
            .max_by(|&a, &b| tr[a].partial_cmp(&tr[b]).unwrap().then(b.cmp(&a)))
            .unwrap();
        let nll = -log_softmax_row(sr)[target];
        total += temp * temp * kl + hard * nll;
        count += 1;
    }
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

#[test]
fn kl_words_matches_the_reference_on_masked_words() {
    let dev = cpu();
    for seed in 60..66 {
        let mut rng = Rng(seed);
        let (b, w, c) = (1 + rng.below(3), 1 + rng.below(5), 2 + rng.below(7));
        let s = rng.vec(b * w * c, 4.0);
        let t = rng.vec(b * w * c, 4.0);
        let mut mask: Vec<i64> = (0..b * w).map(|_| (rng.below(4) > 0) as i64).collect();
        mask[0] = 1;
        for temp in [0.5, 1.0, 2.0] {
            for hard in [0.0, 0.5] {
                let ours = scalar(
                    kl_words(
                        t3(&s, [b, w, c], &dev),
                        t3(&t, [b, w, c], &dev),
                        ints2(&mask, [b, w], &dev),
                        temp,
                        hard,
                    )
                    .unwrap(),
                );
                assert_rel(ours, kl_words_reference(&s, &t, &mask, c, temp, hard), 1e-5);
            }
        }
    }
    // A hand computation: one word, teacher logits (ln 3, 0), student (0, 0), T = 1:
    // p_t = (3/4, 1/4), p_s = (1/2, 1/2), KL = 3/4·ln(3/2) + 1/4·ln(1/2).
    let t = [3f64.ln(), 0.0, 9.0, 9.0];
    let s = [0.0, 0.0, 1.0, 2.0];
    let got = scalar(
        kl_words(
            t3(&s, [1, 2, 2], &dev),
            t3(&t, [1, 2, 2], &dev),
            ints2(&[1, 0], [1, 2], &dev),
            1.0,
            0.0,
        )
        .unwrap(),
    );
    assert_rel(got, 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln(), 1e-5);
    // With the hard term: + 1·(−ln 1/2), the teacher's argmax being class 0.
    let got = scalar(
        kl_words(
            t3(&s, [1, 2, 2], &dev),
            t3(&t, [1, 2, 2], &dev),
            ints2(&[1, 0], [1, 2], &dev),
            1.0,
            1.0,
        )
        .unwrap(),
    );
    assert_rel(
        got,
        0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln() + 2f64.ln(),
        1e-5,
    );
    // No word to learn: 0, not NaN.
    let none = scalar(
        kl_words(
            t3(&s, [1, 2, 2], &dev),
            t3(&t, [1, 2, 2], &dev),
            ints2(&[0, 0], [1, 2], &dev),
            1.0,
            1.0,
        )
        .unwrap(),
    );
    assert_eq!(none, 0.0);
}

#[test]
fn kl_words_gradient_reaches_only_the_student_and_bad_settings_are_refused() {
    let dev = device::autodiff(cpu());
    let mut rng = Rng(8);
    let s = rng.vec(12, 2.0);
    let t = rng.vec(12, 2.0);
    let mask = [1, 0, 1, 1];
    let student = t3(&s, [2, 2, 3], &dev).require_grad();
    let teacher = t3(&t, [2, 2, 3], &dev).require_grad();
    let loss = kl_words(
        student.clone(),
        teacher.clone(),
        ints2(&mask, [2, 2], &dev),
        2.0,
        0.3,
    )
    .unwrap();
    let grads = loss.backward();
    let gs = values(student.grad(&grads).expect("student gradient"));
    assert_gradients(
        &gs,
        &numeric_gradient(&s, |v| kl_words_reference(v, &t, &mask, 3, 2.0, 0.3)),
    );
    assert!(teacher.grad(&grads).is_none(), "the teacher is a target");
    let m = || ints2(&mask, [2, 2], &dev);
    for (temp, hard) in [
        (0.0, 0.0),
        (f64::NAN, 0.0),
        (1.0, -1.0),
        (1.0, f64::INFINITY),
    ] {
        assert!(matches!(
            kl_words(student.clone(), teacher.clone(), m(), temp, hard),
            Err(TrainError::InvalidArgument { .. })
        ));
    }
    assert!(matches!(
        kl_words(student.clone(), t3(&t[..8], [2, 2, 2], &dev), m(), 1.0, 0.0),
        Err(TrainError::Shape { .. })
    ));
    assert!(matches!(
        kl_words(student, teacher, ints2(&[1, 1], [1, 2], &dev), 1.0, 0.0),
        Err(TrainError::Shape { .. })
    ));
}
