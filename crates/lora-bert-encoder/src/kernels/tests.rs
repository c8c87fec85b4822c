use super::attention::attention_probs_seeded;
use super::dropout::dropout_mask;
use super::*;
use burn::tensor::{Int, Tensor, TensorData};

/// erf in f64 (Abramowitz–Stegun would not do: 1e-7 is what is checked), by its Taylor
/// series below 3 and its asymptotic continued fraction above.
fn erf64(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut sum, mut term, mut n) = (0.0f64, a, 0.0f64);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -a * a / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    r.copysign(x)
}

#[test]
fn erf_is_within_its_stated_error_everywhere() {
    assert!((erf64(0.5) - 0.520_499_877_813_046_5).abs() < 1e-15);
    assert!((erf64(3.5) - 0.999_999_256_901_627_7).abs() < 1e-15);
    let mut worst = 0.0f64;
    for i in -200_000..=200_000 {
        let x = i as f32 * 5e-5; // [-10, 10]
        worst = worst.max((f64::from(erf(x)) - erf64(f64::from(x))).abs());
    }
    assert!(worst < 5e-7, "largest error {worst}");
    assert_eq!(erf(0.0), 0.0);
    assert_eq!(erf(f32::INFINITY), 1.0);
    assert!(erf(f32::NAN).is_nan());
}

#[test]
fn gelu_on_the_cpu_is_burns_gelu() {
    for device in crate::device::Backend::compiled()
        .into_iter()
        .filter(|b| *b != crate::device::Backend::Wgpu)
        .map(|b| crate::device::device(b).unwrap())
    {
        assert!(host_inference(&device));
        assert!(!host_inference(&device.clone().autodiff()));
        // Odd sizes (not a multiple of the chunk or a SIMD width), large magnitudes.
        let rows = CHUNK / 2 + 5;
        let n = 7 * rows;
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 24.0)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [rows, 7]), &device);
        let ours = gelu(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        let burns = activation::gelu(x).into_data().try_to_vec::<f32>().unwrap();
        for ((a, b), x) in ours.iter().zip(&burns).zip(&xs) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + x.abs()), "{x}: {a} vs {b}");
        }
    }
}

fn cpu_devices() -> Vec<Device> {
    crate::device::Backend::compiled()
        .into_iter()
        .filter(|b| *b != crate::device::Backend::Wgpu)
        .map(|b| crate::device::device(b).unwrap())
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn exp_is_within_its_stated_error() {
    let mut worst = 0.0f64;
    for i in -870_000..=880_000 {
        let x = i as f32 * 1e-4;
        let want = f64::from(x).exp();
        worst = worst.max((f64::from(exp(x)) - want).abs() / want);
    }
    assert!(worst < 2e-7, "largest relative error {worst}");
    assert_eq!(exp(0.0), 1.0);
    assert!(exp(-1e30) < 2e-38 && exp(-1e30) >= 0.0);
    assert!(exp(f32::NAN).is_nan());
}

/// On an autodiff CPU device, the recorded GELU has burn's value, and the exact gradient
/// (computed here in f64). burn's own GELU gradient is not the reference: ndarray's is the
/// derivative of the tanh approximation (off by up to about 2e-3 · |x|).
#[test]
fn gelu_with_autodiff_has_burns_value_and_the_exact_gradient() {
    for device in cpu_devices() {
        let device = device.autodiff();
        assert!(host_cpu(&device));
        let rows = CHUNK / 4 + 3;
        let n = 5 * rows;
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 20.0)
            .collect();
        let upstream: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let upstream_t =
            Tensor::<2>::from_data(TensorData::new(upstream.clone(), [rows, 5]), &device);
        let x =
            Tensor::<2>::from_data(TensorData::new(xs.clone(), [rows, 5]), &device).require_grad();
        let y = gelu(x.clone());
        let grads = (y.clone() * upstream_t).sum().backward();
        let ours = values(y);
        let grad = values(x.grad(&grads).expect("gradient"));
        let burns = values(activation::gelu(x.inner()));
        for (i, &x) in xs.iter().enumerate() {
            let tol = 2e-6 * (1.0 + x.abs());
            assert!(
                (ours[i] - burns[i]).abs() <= tol,
                "gelu({x}): {} vs {}",
                ours[i],
                burns[i]
            );
            let x64 = f64::from(x);
            let pdf = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want = (0.5 * (1.0 + erf64(x64 / std::f64::consts::SQRT_2)) + x64 * pdf)
                * f64::from(upstream[i]);
            assert!(
                (f64::from(grad[i]) - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "gelu'({x}) · {}: {} vs {want}",
                upstream[i],
                grad[i]
            );
        }
    }
}

#[test]
fn dropout_keeps_scales_and_routes_the_gradient_through_its_mask() {
    for device in cpu_devices() {
        let device = device.autodiff();
        let module = burn::nn::DropoutConfig::new(0.1).init();
        let n = 200_000;
        device.seed(11);
        let x = Tensor::<1>::ones([n], &device).require_grad();
        let y = dropout(&module, x.clone());
        let grads = y.clone().sum().backward();
        let y = values(y);
        let grad = values(x.grad(&grads).expect("gradient"));
        let scale = (1.0 / 0.9f64) as f32;
        assert!(y.iter().all(|&v| v == 0.0 || v == scale));
        // The gradient of sum(x ⊙ mask) is the mask.
        assert_eq!(grad, y);
        // Kept fraction within 5 standard deviations of 0.9.
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        let sd = (0.9 * 0.1 / n as f64).sqrt();
        assert!((kept - 0.9).abs() < 5.0 * sd, "kept {kept}");
        // Neighbours are independent: both dropped about 1% of the time.
        let both = y.windows(2).filter(|w| w[0] == 0.0 && w[1] == 0.0).count() as f64;
        let p = both / (n - 1) as f64;
        assert!(
            (p - 0.01).abs() < 5.0 * (0.01 * 0.99 / n as f64).sqrt(),
            "{p}"
        );

        // Seeding repeats the mask; the next call draws another.
        device.seed(11);
        let again = values(dropout(&module, Tensor::<1>::ones([n], &device)));
        assert_eq!(again, y);
        let next = values(dropout(&module, Tensor::<1>::ones([n], &device)));
        assert_ne!(next, y);

        // Identity off the training path: no autodiff, or the flag cleared.
        let inner = device.clone().without_autodiff();
        let plain = Tensor::<1>::ones([8], &inner);
        assert_eq!(values(dropout(&module, plain)), vec![1.0; 8]);
        let frozen = burn::module::Module::freeze(module.clone());
        assert_eq!(
            values(dropout(&frozen, Tensor::<1>::ones([8], &device))),
            vec![1.0; 8]
        );
    }
}

#[test]
fn dropout_masks_do_not_depend_on_chunking() {
    let long = dropout_mask(3 * CHUNK + 17, 0.75, 42);
    let short = dropout_mask(CHUNK + 5, 0.75, 42);
    assert_eq!(&long[..short.len()], &short[..]);
    assert_ne!(dropout_mask(1000, 0.75, 43), dropout_mask(1000, 0.75, 42));
    // Blocks are not copies of each other: at keep 0.5, the same offset in two blocks
    // agrees half the time, and so do two seeds.
    let a = dropout_mask(2 * CHUNK, 0.5, 7);
    let b = dropout_mask(CHUNK, 0.5, 8);
    let sd = (0.25 / CHUNK as f64).sqrt();
    for (x, y) in [(&a[..CHUNK], &a[CHUNK..]), (&a[..CHUNK], &b[..])] {
        let agree = x
            .iter()
            .zip(y)
            .filter(|(p, q)| (**p == 0.0) == (**q == 0.0))
            .count();
        let agree = agree as f64 / CHUNK as f64;
        assert!((agree - 0.5).abs() < 5.0 * sd, "{agree}");
    }
}

/// On an autodiff CPU device the layer norm has burn's value and burn's gradients for the
/// input, the scale and the shift (with rows of very different means and spreads).
#[test]
fn layer_norm_with_autodiff_is_burns_layer_norm() {
    for device in cpu_devices() {
        let device = device.autodiff();
        let (rows, width) = (CHUNK / 16 + 3, 48);
        let n = rows * width;
        let xs: Vec<f32> = (0..n)
            .map(|i| {
                let row = (i / width) as f32;
                ((i as f32 * 0.618_034).fract() - 0.5) * (0.1 + row % 7.0) + row % 5.0 * 10.0
            })
            .collect();
        let upstream: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let upstream = Tensor::<3>::from_data(TensorData::new(upstream, [rows, 1, width]), &device);
        let gammas: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 * 0.03).collect();
        let betas: Vec<f32> = (0..width).map(|i| i as f32 * 0.1 - 2.0).collect();
        let run = |ours: bool| {
            let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [rows, 1, width]), &device)
                .require_grad();
            let gamma = Tensor::<1>::from_data(TensorData::new(gammas.clone(), [width]), &device)
                .require_grad();
            let beta = Tensor::<1>::from_data(TensorData::new(betas.clone(), [width]), &device)
                .require_grad();
            let y = if ours {
                layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-12)
            } else {
                burn::tensor::module::layer_norm(
                    x.clone(),
                    gamma.clone(),
                    Some(beta.clone()),
                    1e-12,
                )
            };
            let grads = (y.clone() * upstream.clone()).sum().backward();
            [
                values(y),
                values(x.grad(&grads).unwrap()),
                values(gamma.grad(&grads).unwrap()),
                values(beta.grad(&grads).unwrap()),
            ]
        };
        // The reference in f64.
        let up = values(upstream.clone());
        let mut want = [
            vec![0.0f64; n],
            vec![0.0f64; n],
            vec![0.0f64; width],
            vec![0.0f64; width],
        ];
        for r in 0..rows {
            let x: Vec<f64> = xs[r * width..(r + 1) * width]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let mean = x.iter().sum::<f64>() / width as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
            let rstd = 1.0 / (var + 1e-12).sqrt();
            let xhat: Vec<f64> = x.iter().map(|v| (v - mean) * rstd).collect();
            let g = &up[r * width..(r + 1) * width];
            let d: Vec<f64> = (0..width)
                .map(|j| f64::from(g[j]) * f64::from(gammas[j]))
                .collect();
            let mean_d = d.iter().sum::<f64>() / width as f64;
            let mean_dx = (0..width).map(|j| d[j] * xhat[j]).sum::<f64>() / width as f64;
            for j in 0..width {
                want[0][r * width + j] = xhat[j] * f64::from(gammas[j]) + f64::from(betas[j]);
                want[1][r * width + j] = rstd * (d[j] - mean_d - xhat[j] * mean_dx);
                want[2][j] += f64::from(g[j]) * xhat[j];
                want[3][j] += f64::from(g[j]);
            }
        }
        let (ours, burns) = (run(true), run(false));
        let names = ["value", "x gradient", "gamma gradient", "beta gradient"];
        for (k, what) in names.iter().enumerate() {
            let scale = want[k].iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let error = |got: &[f32]| {
                got.iter()
                    .zip(&want[k])
                    .map(|(&a, b)| (f64::from(a) - b).abs() / scale)
                    .fold(0.0f64, f64::max)
            };
            // Relative to the largest value of each, in f32 with rows of spread 0.1 around
            // 40 (burn's own op is within 4e-6 here).
            let (ours, burns) = (error(&ours[k]), error(&burns[k]));
            assert!(
                ours < 1e-4,
                "{what}: relative error {ours} (burn's {burns})"
            );
        }
    }
}

/// The recorded training probabilities have the value and the gradient of burn's
/// `mask ⊙ softmax(scores + additive padding)`, with and without dropout, on a padded batch
/// that includes an example made only of padding.
#[test]
fn training_attention_probs_are_burns_softmax_and_dropout() {
    use burn::tensor::activation::softmax;
    for device in cpu_devices() {
        let device = device.autodiff();
        let (batch, heads, seq) = (3, 2, 37);
        let n = batch * heads * seq * seq;
        let shape = [batch, heads, seq, seq];
        let raw: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 16.0)
            .collect();
        let scores =
            || Tensor::<4>::from_data(TensorData::new(raw.clone(), shape), &device).require_grad();
        let upstream: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let upstream = Tensor::<4>::from_data(TensorData::new(upstream, shape), &device);
        // Example 0: no padding; 1: its last 20 tokens; 2: every token.
        let real = [seq, seq - 20, 0];
        let padding: Vec<i64> = (0..batch * seq)
            .map(|i| i64::from(i % seq < real[i / seq]))
            .collect();
        let padding = Tensor::<2, Int>::from_data(TensorData::new(padding, [batch, seq]), &device);
        let mask = crate::model::attention_mask(&padding, heads);
        for keep in [1.0, 0.9] {
            let x = scores();
            let ours = attention_probs_seeded(x.clone(), &mask, keep, 99)
                .unwrap_or_else(|_| panic!("the host kernel applies on an autodiff CPU device"));
            let grads = (ours.clone() * upstream.clone()).sum().backward();
            let (ours, ours_grad) = (values(ours), values(x.grad(&grads).unwrap()));

            let x = scores();
            let additive = mask.clone().float() * f32::MIN;
            let factors = if keep < 1.0 {
                dropout_mask(n, keep, 99)
            } else {
                vec![1.0; n]
            };
            let factors = Tensor::<4>::from_data(TensorData::new(factors, shape), &device);
            let burns = softmax(x.clone() + additive, 3) * factors;
            let grads = (burns.clone() * upstream.clone()).sum().backward();
            let (burns, burns_grad) = (values(burns), values(x.grad(&grads).unwrap()));
            for i in 0..n {
                assert!(
                    (ours[i] - burns[i]).abs() < 4e-6,
                    "keep {keep}, value {i}: {} vs {}",
                    ours[i],
                    burns[i]
                );
                assert!(
                    (ours_grad[i] - burns_grad[i]).abs() < 1e-5 * (1.0 + burns_grad[i].abs()),
                    "keep {keep}, gradient {i}: {} vs {}",
                    ours_grad[i],
                    burns_grad[i]
                );
            }
            // Padding keys get nothing and pass no gradient; dropped ones likewise.
            let last_real = (heads * seq * seq) + (seq - 21);
            assert_eq!(ours[last_real + 1], 0.0);
            assert_eq!(ours_grad[last_real + 1], 0.0);
            if keep < 1.0 {
                assert!(ours.iter().take(heads * seq * seq).any(|&z| z == 0.0));
            }
        }
        // Without autodiff the kernel declines.
        let plain = device.clone().without_autodiff();
        let t = Tensor::<4>::zeros([1, 1, 2, 2], &plain);
        let m = crate::model::attention_mask(&Tensor::<2, Int>::ones([1, 2], &plain), 1);
        let module = burn::nn::DropoutConfig::new(0.1).init();
        assert!(attention_probs(t, &m, &module).is_err());
    }
}

/// The recorded training attention has the value and the gradients (for q, k and v) of
/// burn's ops with the same dropout mask, on a padded batch with an all-padding example.
#[cfg(feature = "flex")]
#[test]
fn recorded_attention_is_burns_attention_with_dropout() {
    use burn::tensor::activation::softmax;
    let device = Device::flex().autodiff();
    let (batch, seq, heads, head_dim) = (3, 19, 2, 8);
    let hidden = heads * head_dim;
    let n = batch * seq * hidden;
    let raw = |salt: f32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 0.618_034 + salt).fract() - 0.5) * 4.0)
            .collect()
    };
    let (qs, ks, vs) = (raw(0.1), raw(0.4), raw(0.7));
    let upstream: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
    let upstream = Tensor::<3>::from_data(TensorData::new(upstream, [batch, seq, hidden]), &device);
    // Example 0: no padding; 1: its last 7 tokens; 2: every token.
    let real = [seq, seq - 7, 0];
    let padding: Vec<i64> = (0..batch * seq)
        .map(|i| i64::from(i % seq < real[i / seq]))
        .collect();
    let padding = Tensor::<2, Int>::from_data(TensorData::new(padding, [batch, seq]), &device);
    let mask = crate::model::attention_mask(&padding, heads);
    let key_padding = mask
        .clone()
        .slice([0..batch, 0..1, 0..1, 0..seq])
        .into_data()
        .try_to_vec::<bool>()
        .unwrap();
    let leaf = |values: &Vec<f32>| {
        Tensor::<3>::from_data(
            TensorData::new(values.clone(), [batch, seq, hidden]),
            &device,
        )
        .require_grad()
    };
    for keep in [1.0, 0.8] {
        let run = |ours: bool| {
            let (q, k, v) = (leaf(&qs), leaf(&ks), leaf(&vs));
            let out = if ours {
                recorded::attention(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    &key_padding,
                    heads,
                    keep,
                    5,
                )
                .unwrap_or_else(|_| panic!("the recorded op applies on Autodiff<Flex>"))
            } else {
                let split = |t: Tensor<3>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
                let scale = (head_dim as f64).sqrt().recip();
                let scores = (split(q.clone()) * scale).matmul(split(k.clone()).swap_dims(2, 3))
                    + mask.clone().float() * f32::MIN;
                let factors = if keep < 1.0 {
                    dropout_mask(batch * heads * seq * seq, keep, 5)
                } else {
                    vec![1.0; batch * heads * seq * seq]
                };
                let factors = Tensor::<4>::from_data(
                    TensorData::new(factors, [batch, heads, seq, seq]),
                    &device,
                );
                (softmax(scores, 3) * factors)
                    .matmul(split(v.clone()))
                    .swap_dims(1, 2)
                    .reshape([batch, seq, hidden])
            };
            let grads = (out.clone() * upstream.clone()).sum().backward();
            [
                values(out),
                values(q.grad(&grads).unwrap()),
                values(k.grad(&grads).unwrap()),
                values(v.grad(&grads).unwrap()),
            ]
        };
        let (ours, burns) = (run(true), run(false));
        for (what, (a, b)) in ["context", "q gradient", "k gradient", "v gradient"]
            .iter()
            .zip(ours.iter().zip(&burns))
        {
            for (i, (a, b)) in a.iter().zip(b).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "keep {keep}, {what} {i}: {a} vs {b}"
                );
            }
        }
        // Keys of padding get no gradient.
        let padded_key = (seq + seq - 1) * hidden;
        assert_eq!(ours[2][padded_key], 0.0);
        assert_eq!(ours[3][padded_key], 0.0);
    }
}

/// The host attention equals burn's on a padded batch, and a query whose keys are all
/// padding averages the values evenly.
#[cfg(feature = "flex")]
#[test]
fn attention_on_the_cpu_is_burns_attention() {
    use burn::tensor::ops::AttentionModuleOptions;
    let device = Device::flex();
    let (batch, seq, heads, head_dim) = (4, 7, 3, 4);
    let hidden = heads * head_dim;
    let n = batch * seq * hidden;
    let make = |salt: f32| {
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.618_034 + salt).fract() - 0.5) * 6.0)
            .collect();
        Tensor::<3>::from_data(TensorData::new(xs, [batch, seq, hidden]), &device)
    };
    let (q, k, v) = (make(0.1), make(0.4), make(0.7));
    // Example 0: no padding; 1: its last 3 tokens; 2: every token; 3: tokens 2, 5 and 6
    // (padding inside the sequence stays masked, the trailing keys are left out).
    let padding: Vec<i64> = [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 1, 1, 0, 0],
    ]
    .concat();
    let padding = Tensor::<2, Int>::from_data(TensorData::new(padding, [batch, seq]), &device);
    let mask = crate::model::attention_mask(&padding, heads);
    let ours = values(
        attention(q.clone(), k.clone(), v.clone(), &mask, heads)
            .unwrap_or_else(|_| panic!("the host kernel applies on flex")),
    );
    let split = |t: Tensor<3>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
    let burns = burn::tensor::module::attention(
        split(q),
        split(k),
        split(v.clone()),
        Some(mask),
        None,
        AttentionModuleOptions::default(),
    );
    let burns = values(burns.swap_dims(1, 2).reshape([batch, seq, hidden]));
    let per_example = seq * hidden;
    for i in (0..2 * per_example).chain(3 * per_example..4 * per_example) {
        assert!(
            (ours[i] - burns[i]).abs() < 1e-5,
            "{i}: {} vs {}",
            ours[i],
            burns[i]
        );
    }
    // All padding: every query gets the mean of example 2's value rows.
    let v = values(v);
    for c in 0..hidden {
        let mean = (0..seq)
            .map(|j| v[2 * per_example + j * hidden + c])
            .sum::<f32>()
            / seq as f32;
        for i in 0..seq {
            let got = ours[2 * per_example + i * hidden + c];
            assert!(
                (got - mean).abs() < 1e-5,
                "query {i}, column {c}: {got} vs {mean}"
            );
        }
    }
    // Not the host path: an autodiff device gives the tensors back.
    let ad = device.autodiff();
    let t = Tensor::<3>::zeros([1, 2, hidden], &ad);
    let m = crate::model::attention_mask(&Tensor::<2, Int>::ones([1, 2], &ad), heads);
    assert!(attention(t.clone(), t.clone(), t, &m, heads).is_err());
}
