//! The exact GELU, with its derivative for autodiff, in parallel passes.

use burn::tensor::{DType, Tensor, TensorData, activation};
use rayon::prelude::*;

use super::math::{erf, exp};
use super::{CHUNK, host_cpu};

/// Exact GELU, `x · ½ · (1 + erf(x / √2))`, as HF's `"gelu"`.
///
/// On a CPU device, one parallel pass over the data; it differs from burn's
/// [`activation::gelu`] by at most about `4e-7 · |x|` (the error of [`erf`]), and on an
/// autodiff device its gradient is the exact derivative to about the same accuracy. Elsewhere
/// it is burn's op.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if x.dtype() != DType::F32 || !host_cpu(&device) {
        return activation::gelu(x);
    }
    if device.is_autodiff() {
        return gelu_recorded(x);
    }
    let mut data = x.into_data();
    match data.as_mut_slice::<f32>() {
        Ok(values) => {
            values.par_chunks_mut(CHUNK).for_each(gelu_in_place);
            Tensor::from_data(data, &device)
        }
        // Not reachable for an f32 tensor; burn's op is the answer if it ever is.
        Err(_) => activation::gelu(Tensor::from_data(data, &device)),
    }
}

/// GELU on an autodiff device: `x ⊙ d + c`, with the derivative `d = Φ(x) + x·φ(x)` and
/// `c = gelu(x) − x ⊙ d` computed off the graph. The value is `gelu(x)` up to the rounding of
/// one addition, the gradient is `d`, and the graph keeps `d` where burn's op keeps `x`.
fn gelu_recorded<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let shape = x.shape();
    let values = x.clone().inner().into_data();
    let Ok(values) = values.as_slice::<f32>() else {
        return activation::gelu(x);
    };
    let mut derivative = vec![0.0f32; values.len()];
    let mut constant = vec![0.0f32; values.len()];
    values
        .par_chunks(CHUNK)
        .zip(derivative.par_chunks_mut(CHUNK))
        .zip(constant.par_chunks_mut(CHUNK))
        .for_each(|((x, d), c)| gelu_with_derivative(x, d, c));
    let derivative = Tensor::<D>::from_data(TensorData::new(derivative, shape.clone()), &device);
    let constant = Tensor::<D>::from_data(TensorData::new(constant, shape), &device);
    x * derivative + constant
}

widest_vectors! {
    /// GELU over a slice, with the widest vectors this CPU has.
    fn gelu_in_place(values: &mut [f32]) => gelu_in_place_any
}

#[inline(always)]
fn gelu_in_place_any(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = gelu_f32(*v));
}

widest_vectors! {
    /// GELU's derivative `d` and the constant `c = gelu(x) − x·d` over a slice (see [`gelu`]).
    fn gelu_with_derivative(x: &[f32], d: &mut [f32], c: &mut [f32]) => gelu_with_derivative_any
}

#[inline(always)]
fn gelu_with_derivative_any(x: &[f32], d: &mut [f32], c: &mut [f32]) {
    /// `1 / √(2π)`.
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    for ((&x, d), c) in x.iter().zip(d).zip(c) {
        let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
        let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * x * x);
        let derivative = cdf + x * pdf;
        *d = derivative;
        *c = x * cdf - x * derivative;
    }
}

#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}
