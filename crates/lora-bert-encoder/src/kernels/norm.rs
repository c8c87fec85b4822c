//! Layer normalisation, recorded as one op of our own on `Autodiff<Flex>`.

#[cfg(feature = "flex")]
use burn::tensor::DType;
use burn::tensor::Tensor;

#[cfg(feature = "flex")]
use super::math::{dot, reduce};
#[cfg(feature = "flex")]
use super::recorded;

/// Layer normalisation over the last dimension, `(x − mean) / √(var + eps) ⊙ gamma + beta`, as
/// burn's [`layer_norm`](burn::tensor::module::layer_norm).
///
/// burn's autodiff records it as nine ops (two means, a subtraction, a square, a square root,
/// a division, a product and a sum) and as many more in the backward pass, each a
/// single-threaded pass over the data on flex. On an `Autodiff<Flex>` device with `f32`
/// tensors it is one op of our own instead: one parallel pass forward (keeping `x̂` and
/// `1 / √(var + eps)` per row), one backward for `x`, `gamma` and `beta`. Elsewhere it is
/// burn's op.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if x.dtype() == DType::F32 && gamma.dtype() == DType::F32 && beta.dtype() == DType::F32 {
        match recorded::layer_norm(x, gamma, beta, eps) {
            Ok(y) => return y,
            Err(inputs) => {
                let (x, gamma, beta) = *inputs;
                return burn::tensor::module::layer_norm(x, gamma, Some(beta), eps);
            }
        }
    }
    burn::tensor::module::layer_norm(x, gamma, Some(beta), eps)
}

widest_vectors! {
    #[cfg(feature = "flex")]
    /// One row of [`layer_norm`]: writes `x̂` and `y`, returns `1 / √(var + eps)`.
    pub(super) fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, xhat: &mut [f32], y: &mut [f32]) -> f32 => layer_norm_row_any
}

#[cfg(feature = "flex")]
#[inline(always)]
fn layer_norm_row_any(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    xhat: &mut [f32],
    y: &mut [f32],
) -> f32 {
    let width = x.len() as f32;
    let mean = reduce(x, 0.0, |a, b| a + b) / width;
    for (h, &x) in xhat.iter_mut().zip(x) {
        *h = x - mean;
    }
    let var = dot(xhat, xhat) / width;
    let rstd = 1.0 / (var + eps).sqrt();
    for (((h, y), &g), &b) in xhat.iter_mut().zip(y).zip(gamma).zip(beta) {
        *h *= rstd;
        *y = *h * g + b;
    }
    rstd
}

widest_vectors! {
    #[cfg(feature = "flex")]
    /// The input gradient of one row of [`layer_norm`]:
    /// `rstd · (d − mean(d) − x̂ · mean(d ⊙ x̂))` with `d = g ⊙ gamma`; adds `g ⊙ x̂` to
    /// `dgamma` and `g` to `dbeta`.
    pub(super) fn layer_norm_backward_row(g: &[f32], xhat: &[f32], gamma: &[f32], rstd: f32, dx: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32]) => layer_norm_backward_row_any
}

#[cfg(feature = "flex")]
#[inline(always)]
fn layer_norm_backward_row_any(
    g: &[f32],
    xhat: &[f32],
    gamma: &[f32],
    rstd: f32,
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let width = g.len() as f32;
    for ((d, &g), &gamma) in dx.iter_mut().zip(g).zip(gamma) {
        *d = g * gamma;
    }
    let mean_d = reduce(dx, 0.0, |a, b| a + b) / width;
    let mean_dx = dot(dx, xhat) / width;
    for (d, &h) in dx.iter_mut().zip(xhat) {
        *d = rstd * (*d - mean_d - h * mean_dx);
    }
    for (((dg, db), &g), &h) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(g).zip(xhat) {
        *dg += g * h;
        *db += g;
    }
}
