//! Dropout, with masks drawn in parallel by a counter-based generator seeded from burn's.

use burn::nn::Dropout;
use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};
use rayon::prelude::*;

use super::{CHUNK, host_cpu};

/// Dropout as [`Dropout::forward`]: in training on an autodiff device, zeroes each element
/// with probability `prob` and scales the others by `1 / (1 − prob)`; otherwise the identity.
///
/// On a CPU device the mask comes from a counter-based generator run in parallel, seeded by one
/// draw from burn's generator: [`Device::seed`] makes it repeatable, and every call draws a new
/// mask. Elsewhere it is burn's [`Dropout::forward`].
pub fn dropout<const D: usize>(module: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !module.training.is_enabled() || !device.is_autodiff() || module.prob == 0.0 {
        return x;
    }
    if x.dtype() != DType::F32 || !host_cpu(&device) {
        return module.forward(x);
    }
    let keep = 1.0 - module.prob;
    let seed = draw_seed(&device.clone().without_autodiff());
    let shape = x.shape();
    let mask = dropout_mask(shape.num_elements(), keep, seed);
    x * Tensor::<D>::from_data(TensorData::new(mask, shape), &device)
}

/// Dropout's keep probability for `module` (1 when it is not training) and, if it drops
/// anything, the seed of its mask drawn from burn's generator on `device`.
pub(super) fn dropout_draw(module: &Dropout, device: &Device) -> (f64, u64) {
    if module.training.is_enabled() && module.prob > 0.0 {
        (
            1.0 - module.prob,
            draw_seed(&device.clone().without_autodiff()),
        )
    } else {
        (1.0, 0)
    }
}

/// 64 random bits from burn's generator on `device`.
fn draw_seed(device: &Device) -> u64 {
    // Four draws of 16 bits: an int tensor may be 32-bit signed.
    let words = Tensor::<1, Int>::random([4], Distribution::Uniform(0.0, 65_536.0), device)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap_or_default();
    words
        .iter()
        .fold(0u64, |acc, &w| (acc << 16) ^ (w as u64 & 0xffff))
}

/// `n` dropout factors: `1 / keep` with probability `keep`, else 0. Element `i` depends only
/// on `seed` and `i`, so the mask is the same for any thread count: each block of [`CHUNK`]
/// elements gets a 64-bit key (SplitMix64 of the seed and the block's index), and element `j`
/// of the block two rounds of a 32-bit integer hash keyed by it, which vectorises.
pub(crate) fn dropout_mask(n: usize, keep: f64, seed: u64) -> Vec<f32> {
    // keep = 1 - prob with prob in (0, 1): the threshold fits in 32 bits.
    let threshold = (keep * 4_294_967_296.0).round().min(4_294_967_295.0) as u32;
    let scale = (1.0 / keep) as f32;
    let mut mask = vec![0.0f32; n];
    mask.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, out)| {
            let key = splitmix64(seed ^ (chunk as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            mask_block(out, key, threshold, scale);
        });
    mask
}

widest_vectors! {
    /// One block of [`dropout_mask`], with the widest vectors this CPU has.
    fn mask_block(out: &mut [f32], key: u64, threshold: u32, scale: f32) => mask_block_any
}

#[inline(always)]
fn mask_block_any(out: &mut [f32], key: u64, threshold: u32, scale: f32) {
    let (k0, k1) = (key as u32, (key >> 32) as u32);
    for (j, m) in out.iter_mut().enumerate() {
        let bits = hash32(hash32(j as u32 ^ k0) ^ k1);
        *m = if bits < threshold { scale } else { 0.0 };
    }
}

/// A bijective 32-bit integer hash (Wellons' `lowbias32`: xor-shift-multiply, twice).
#[inline(always)]
fn hash32(x: u32) -> u32 {
    let mut x = x;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// SplitMix64's output function: a bijective mix of 64 bits.
#[inline(always)]
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
