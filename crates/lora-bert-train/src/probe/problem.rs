//! The problem a fit solves: features standardised on their rows, and the regularised
//! softmax-regression loss on them.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::lbfgs::lbfgs;
use super::{LinearProbe, ProbeConfig, ProbeFit, invalid};
use crate::Result;
use crate::finetune::host_values;

/// The probe's problem on standardised features: the rows, their labels, and the
/// per-feature mean and scale that map raw features onto them.
pub(super) struct Standardised<'a> {
    x: Tensor<2>,
    index: Tensor<2, Int>,
    onehot: Tensor<2>,
    labels: &'a [u32],
    mean: Vec<f64>,
    scale: Vec<f64>,
    dim: usize,
    classes: usize,
    device: &'a Device,
}

impl<'a> Standardised<'a> {
    pub(super) fn new(
        features: &[f32],
        dim: usize,
        labels: &'a [u32],
        classes: usize,
        device: &'a Device,
    ) -> Self {
        let (mean, scale) = standardisation(features, dim);
        let standard: Vec<f32> = features
            .chunks_exact(dim)
            .flat_map(|row| {
                row.iter()
                    .zip(mean.iter().zip(&scale))
                    .map(|(&v, (&m, &s))| ((f64::from(v) - m) / s) as f32)
            })
            .collect();
        let n = labels.len();
        let mut onehot = vec![0.0f32; n * classes];
        for (i, &l) in labels.iter().enumerate() {
            onehot[i * classes + l as usize] = 1.0;
        }
        let index: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
        Self {
            x: Tensor::<2>::from_data(TensorData::new(standard, [n, dim]), device),
            index: Tensor::from_data(TensorData::new(index, [n, 1]), device),
            onehot: Tensor::from_data(TensorData::new(onehot, [n, classes]), device),
            labels,
            mean,
            scale,
            dim,
            classes,
            device,
        }
    }

    /// Minimises the loss with L2 strength `l2` from `theta`.
    pub(super) fn solve(
        &self,
        l2: f64,
        theta: Vec<f64>,
        config: &ProbeConfig,
    ) -> Result<(Vec<f64>, ProbeFit)> {
        let objective = Objective { problem: self, l2 };
        lbfgs(&objective, theta, config)
    }

    /// `θ` on raw features: the standardisation folded into the weights,
    /// `x·W' + b' = ((x − μ)/σ)·W + b`.
    pub(super) fn raw(&self, theta: &[f64]) -> Vec<f64> {
        let (dim, classes) = (self.dim, self.classes);
        let mut out = theta.to_vec();
        let (w, b) = out.split_at_mut(dim * classes);
        for d in 0..dim {
            for c in 0..classes {
                w[d * classes + c] /= self.scale[d];
                b[c] -= self.mean[d] * w[d * classes + c];
            }
        }
        out
    }

    /// The inverse of [`raw`](Self::raw): raw-feature weights in this standardisation.
    pub(super) fn standardised(&self, raw: &[f64]) -> Vec<f64> {
        let (dim, classes) = (self.dim, self.classes);
        let mut out = raw.to_vec();
        let (w, b) = out.split_at_mut(dim * classes);
        for d in 0..dim {
            for c in 0..classes {
                b[c] += self.mean[d] * w[d * classes + c];
                w[d * classes + c] *= self.scale[d];
            }
        }
        out
    }

    /// The probe on raw features (see [`raw`](Self::raw)).
    pub(super) fn probe(&self, theta: &[f64]) -> LinearProbe {
        let (dim, classes) = (self.dim, self.classes);
        let raw = self.raw(theta);
        let (w, b) = raw.split_at(dim * classes);
        let weight: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let bias: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        LinearProbe {
            weight: Tensor::from_data(TensorData::new(weight, [dim, classes]), self.device),
            bias: Tensor::from_data(TensorData::new(bias, [classes]), self.device),
            dim,
            classes,
        }
    }
}

/// Per-feature mean and standard deviation over the rows (a constant feature gets scale 1).
fn standardisation(features: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (features.len() / dim) as f64;
    let mut mean = vec![0.0f64; dim];
    for row in features.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; dim];
    for row in features.chunks_exact(dim) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (f64::from(v) - m).powi(2);
        }
    }
    let scale = var
        .into_iter()
        .map(|s| {
            let sd = (s / n).sqrt();
            if sd > 1e-12 { sd } else { 1.0 }
        })
        .collect();
    (mean, scale)
}

/// The regularised softmax-regression loss of a [`Standardised`] problem at L2 strength
/// `l2`, as a function of `θ = [W (dim × classes, row-major), b (classes)]`.
pub(super) struct Objective<'p, 'a> {
    problem: &'p Standardised<'a>,
    l2: f64,
}

impl Objective<'_, '_> {
    /// The loss and its gradient at `theta`.
    pub(super) fn eval(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let p = self.problem;
        let (dim, classes) = (p.dim, p.classes);
        let n = p.labels.len();
        let (w, b) = theta.split_at(dim * classes);
        let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let wt = Tensor::<2>::from_data(TensorData::new(to_f32(w), [dim, classes]), p.device);
        let bt = Tensor::<1>::from_data(TensorData::new(to_f32(b), [classes]), p.device);
        // Softmax and residual on the device (its kernels are parallel); only the n picked
        // log-probabilities, the bias gradient and `Xᵀ R` come back, summed in f64.
        let log_p = log_softmax(p.x.clone().matmul(wt) + bt.unsqueeze_dim(0), 1);
        let picked = host_values(log_p.clone().gather(1, p.index.clone()), "probe loss")?;
        let inv_n = 1.0 / n as f64;
        let mut loss = -picked.iter().map(|&v| f64::from(v)).sum::<f64>() * inv_n;
        let residual = (log_p.exp() - p.onehot.clone()).mul_scalar(inv_n);
        let gb = host_values(residual.clone().sum_dim(0), "probe bias gradient")?;
        let gw = host_values(p.x.clone().transpose().matmul(residual), "probe gradient")?;
        let mut grad = vec![0.0f64; theta.len()];
        for (g, &v) in grad[dim * classes..].iter_mut().zip(&gb) {
            *g = f64::from(v);
        }
        let mut penalty = 0.0f64;
        for ((g, &x), &wv) in grad.iter_mut().zip(&gw).zip(w) {
            *g = f64::from(x) + self.l2 * wv;
            penalty += wv * wv;
        }
        loss += 0.5 * self.l2 * penalty;
        if !loss.is_finite() {
            return Err(invalid(format!("the probe's loss is {loss}")));
        }
        Ok((loss, grad))
    }
}
