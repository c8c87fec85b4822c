//! Inference kernels of our own for the CPU backends, where burn's generic ops are slow.
//!
//! burn's CPU backends compute `erf` one element at a time through libm on one thread, and the
//! exact GELU of BERT's feed-forward layers is several whole-tensor passes around it: about a
//! tenth of all-MiniLM-L6-v2's forward pass on two cores (perf, 32 × 128 on flex). [`gelu`]
//! does it in one pass, split over rayon's threads, with a rational `erf` that vectorises.
//!
//! The kernels run only where they can: a CPU device without autodiff (training keeps burn's
//! ops and their gradients; GPU backends keep their own kernels) and `f32` tensors. Everywhere
//! else they are burn's ops.

use burn::tensor::{DType, Device, Tensor, activation};
use rayon::prelude::*;

/// Elements per rayon task: big enough that scheduling costs nothing next to the work.
const CHUNK: usize = 1 << 14;

/// Exact GELU, `x · ½ · (1 + erf(x / √2))`, as HF's `"gelu"`.
///
/// On a CPU device without autodiff, one parallel pass over the data; it differs from burn's
/// [`activation::gelu`] by at most about `4e-7 · |x|` (the error of [`erf`]). Elsewhere it is
/// burn's op.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if x.dtype() != DType::F32 || !host_inference(&device) {
        return activation::gelu(x);
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

/// Whether `device` runs on this CPU without recording a graph.
pub(crate) fn host_inference(device: &Device) -> bool {
    if device.is_autodiff() {
        return false;
    }
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if *device == Device::ndarray() {
        return true;
    }
    false
}

/// GELU over a slice, with the widest vectors this CPU has.
fn gelu_in_place(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature the function is compiled for.
            return unsafe { gelu_avx512(values) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { gelu_avx2(values) };
        }
    }
    values.iter_mut().for_each(|v| *v = gelu_f32(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gelu_avx512(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = gelu_f32(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gelu_avx2(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = gelu_f32(*v));
}

#[inline(always)]
fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf` in `f32` as a rational function of `x` (Eigen's `generic_fast_erf_float`): no
/// branches, no `exp`, only multiplications, additions and one division, so a loop over it
/// vectorises (plain `a * b + c`: `mul_add` without hardware FMA is a slow library call).
/// Largest absolute error about `4.2e-7` (near `|x| = 3.3`), checked against `f64` `erf` in
/// the tests.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // Outside [-4, 4] erf is ±1 to f32 precision.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_4e-10 + 2.770_681_5e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_2e-5;
    p = x2 * p - 7.349_906_4e-4;
    p = x2 * p - 2.954_6e-3;
    p = x2 * p - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_15e-5 - 2.133_740_5e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329_3e-3;
    q = x2 * q - 1.426_473_9e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

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
}
