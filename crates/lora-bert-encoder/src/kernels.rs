//! Kernels of our own for the CPU backends, where burn's generic ops are slow.
//!
//! burn's CPU backends compute `erf` and `exp` one element at a time through libm on one
//! thread, and draw dropout masks from one ChaCha generator, also on one thread. On two cores
//! that made the exact GELU about a tenth of all-MiniLM-L6-v2's forward pass (perf, 32 × 128 on
//! flex), and GELU (forward and backward) plus dropout masks about half of a LoRA training step
//! (perf, 16 × 128). In training, flex also runs every element-wise op on one thread, and
//! burn's autodiff records softmax and layer norm as many such ops each. The kernels here do
//! the same work in one parallel pass each, with arithmetic that vectorises:
//!
//! - [`gelu`]: the exact GELU. Without autodiff, one pass over the data. With autodiff, the
//!   value and the derivative come from one pass and the graph records `x ⊙ d + c` (`d` the
//!   derivative, `c = gelu(x) − x ⊙ d` a constant), whose gradient is the exact derivative
//!   (burn's on flex; ndarray's own is the tanh approximation's).
//! - [`dropout`]: burn's [`Dropout`] with the mask drawn by a counter-based generator over
//!   rayon's threads, seeded from burn's generator (so [`Device::seed`] still makes runs
//!   repeatable), and applied in one multiplication.
//! - `attention` (crate-internal, the encoder's inference path): per example and head, two
//!   strided `gemm` calls and a softmax, without burn's head split and merge copies.
//! - `attention_recorded` (crate-internal, the training path on flex): the same, with dropout
//!   on the probabilities, recorded on `Autodiff<Flex>` as one op whose backward pass is five
//!   strided `gemm` calls and a row pass per example and head.
//! - `attention_probs` (crate-internal, the training path on ndarray): softmax and dropout
//!   recorded as an affine map of the scores with the same value and gradient.
//! - [`layer_norm`]: burn's layer norm; with autodiff on flex, one op of our own with a
//!   parallel pass each way.
//! - [`erf`] and [`exp`]: the branch-free scalar functions the loops above are made of.
//!
//! The ops recorded on `Autodiff<Flex>` use burn's extension API
//! ([`Tensor::try_into_primitive`] and burn-autodiff's `Backward` trait):
//! their forward pass reads the flex buffers in place and their backward pass registers the
//! gradients of the inputs that need one.
//!
//! The kernels run only where they can: a CPU device (flex or ndarray; with or without
//! autodiff, except `attention`, which is for inference) and `f32` tensors. Everywhere else
//! (GPU backends keep their own kernels) they are burn's ops.

use burn::nn::Dropout;
use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData, activation};
use rayon::prelude::*;

/// Elements per rayon task: big enough that scheduling costs nothing next to the work.
const CHUNK: usize = 1 << 14;

/// Defines `fn $name(args)` that runs `$any(args)` compiled for AVX-512 or AVX2 when the CPU
/// has them (checked at run time), and as plain code otherwise. `$any` is `#[inline(always)]`
/// and written so that its loops vectorise: plain multiply-adds (`mul_add` without FMA enabled
/// at compile time is a slow library call), no branches, reductions over several accumulators.
macro_rules! widest_vectors {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $any:ident) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $any($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $any($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $any($($arg),*)
        }
    };
}

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

/// BERT's self-attention for inference on the CPU: `softmax(q·kᵀ / √d + mask)·v` for every
/// example and head, from the projections' `[batch, seq, hidden]` outputs straight to the
/// context in the same layout (no head split or merge copies).
///
/// `mask` is the `[batch, heads, seq, seq]` mask of [`attention_mask`](crate::model::attention_mask)
/// (true where the key is padding). A query whose keys are all padding attends to all of them
/// evenly, as Hugging Face's additive mask makes it. Each (example, head) pair is one rayon task:
/// two `gemm` products with strides into the inputs and the output, and a softmax over each score
/// row with a vectorised [`exp`].
///
/// Gives `q`, `k` and `v` back (and the caller runs burn's attention) off the CPU, with
/// autodiff, or for tensors that are not `f32`.
#[cfg(feature = "flex")]
pub(crate) fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask: &Tensor<4, burn::tensor::Bool>,
    heads: usize,
) -> Result<Tensor<3>, Box<[Tensor<3>; 3]>> {
    let device = q.device();
    let [batch, seq, hidden] = q.dims();
    let applies = q.dtype() == DType::F32
        && k.dtype() == DType::F32
        && v.dtype() == DType::F32
        && host_inference(&device)
        && heads > 0
        && seq > 0
        && hidden % heads == 0
        && k.dims() == q.dims()
        && v.dims() == q.dims()
        && mask.dims() == [batch, heads, seq, seq];
    if !applies {
        return Err(Box::new([q, k, v]));
    }
    let head_dim = hidden / heads;
    let key_padding = mask
        .clone()
        .slice([0..batch, 0..1, 0..1, 0..seq])
        .into_data()
        .try_to_vec::<bool>();
    let (q, k, v) = (q.into_data(), k.into_data(), v.into_data());
    let (Ok(key_padding), Ok(qs), Ok(ks), Ok(vs)) = (
        key_padding,
        q.as_slice::<f32>(),
        k.as_slice::<f32>(),
        v.as_slice::<f32>(),
    ) else {
        // Not reachable for f32 tensors and a bool mask.
        let back = |data: &TensorData| Tensor::from_data(data.clone(), &device);
        return Err(Box::new([back(&q), back(&k), back(&v)]));
    };
    let (q, k, v) = (qs, ks, vs);
    let mut out = vec![0.0f32; batch * seq * hidden];
    let out_ptr = SendPtr(out.as_mut_ptr());
    let scale = (head_dim as f32).sqrt().recip();
    let hidden_i = hidden as isize;
    (0..batch * heads).into_par_iter().for_each_init(
        || vec![0.0f32; seq * seq],
        |scores, pair| {
            let (b, h) = (pair / heads, pair % heads);
            let at = b * seq * hidden + h * head_dim;
            // Keys after the example's last real token are padding that every query ignores:
            // leave them out of both products (an example that is all padding keeps them all,
            // to attend to them evenly). Every query row is still computed.
            let padding = &key_padding[b * seq..(b + 1) * seq];
            let keys = padding
                .iter()
                .rposition(|&p| !p)
                .map_or(seq, |last| last + 1);
            let padding = &padding[..keys];
            let scores = &mut scores[..seq * keys];
            // SAFETY: every pointer stays inside its buffer: rows b·seq .. (b+1)·seq of width
            // `hidden`, columns h·head_dim .. (h+1)·head_dim, of which the products read the
            // first `keys` rows of k and v; `scores` holds seq × keys. Tasks write disjoint
            // column blocks of `out`, which outlives the parallel loop.
            unsafe {
                // scores (seq × keys) = scale · q_bh (seq × d) · k_bh[..keys]ᵀ (d × keys)
                product(
                    [seq, keys, head_dim],
                    scores.as_mut_ptr(),
                    [keys as isize, 1],
                    q.as_ptr().add(at),
                    [hidden_i, 1],
                    k.as_ptr().add(at),
                    [1, hidden_i],
                    scale,
                );
            }
            softmax_rows(scores, padding);
            // SAFETY: as above.
            unsafe {
                // out_bh (seq × d) = probs (seq × keys) · v_bh[..keys] (keys × d)
                product(
                    [seq, head_dim, keys],
                    out_ptr.get().add(at),
                    [hidden_i, 1],
                    scores.as_ptr(),
                    [keys as isize, 1],
                    v.as_ptr().add(at),
                    [hidden_i, 1],
                    1.0,
                );
            }
        },
    );
    Ok(Tensor::from_data(
        TensorData::new(out, [batch, seq, hidden]),
        &device,
    ))
}

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

/// Training attention's probabilities, `dropout(softmax(scores + padding))` over the last
/// dimension, recorded as an affine map of `scores` whose gradient is exactly theirs.
///
/// burn's autodiff softmax records five ops on the `[batch, heads, seq, seq]` scores (a
/// maximum, a shift, a libm `exp`, a sum and a division) and dropout one more: six passes over
/// the largest tensors of a training step, each on one thread, and as many in the backward
/// pass. Here one parallel pass computes the probabilities `p` (padding keys get 0; a query
/// whose keys are all padding attends evenly, as with Hugging Face's additive mask), the
/// dropout factors `m` (as [`dropout`] draws them) and `a = m ⊙ p`, and the graph records
///
/// ```text
/// z = a ⊙ (s − Σₖ p ⊙ s) + c,     c = a − a ⊙ (s − Σₖ p ⊙ s) computed off the graph
/// ```
///
/// Its value is `a` up to rounding, and its vector–Jacobian product,
/// `a ⊙ g − p ⊙ Σₖ (a ⊙ g) = p ⊙ (m ⊙ g − Σₖ p ⊙ m ⊙ g)`, is that of `m ⊙ softmax(s)`.
///
/// `mask` is the `[batch, heads, seq, seq]` mask of
/// [`attention_mask`](crate::model::attention_mask). Gives `scores` back (and the caller runs
/// burn's ops) off the CPU, without autodiff, or for tensors that are not `f32`.
pub(crate) fn attention_probs(
    scores: Tensor<4>,
    mask: &Tensor<4, burn::tensor::Bool>,
    module: &Dropout,
) -> Result<Tensor<4>, Box<Tensor<4>>> {
    let device = scores.device();
    if scores.dtype() != DType::F32
        || !device.is_autodiff()
        || !host_cpu(&device)
        || mask.dims() != scores.dims()
        || scores.dims()[3] == 0
    {
        return Err(Box::new(scores));
    }
    let keep = if module.training.is_enabled() && module.prob > 0.0 {
        1.0 - module.prob
    } else {
        1.0
    };
    let seed = if keep < 1.0 {
        draw_seed(&device.clone().without_autodiff())
    } else {
        0
    };
    attention_probs_seeded(scores, mask, keep, seed)
}

/// [`attention_probs`] with dropout's keep probability and mask seed given.
fn attention_probs_seeded(
    scores: Tensor<4>,
    mask: &Tensor<4, burn::tensor::Bool>,
    keep: f64,
    seed: u64,
) -> Result<Tensor<4>, Box<Tensor<4>>> {
    let device = scores.device();
    let shape = scores.shape();
    let dims = scores.dims();
    let [batch, _, _, keys] = dims;
    let Ok(key_padding) = mask
        .clone()
        .slice([0..batch, 0..1, 0..1, 0..keys])
        .into_data()
        .try_to_vec::<bool>()
    else {
        // Not reachable for a bool mask.
        return Err(Box::new(scores));
    };
    let data = scores.clone().inner().into_data();
    let Ok(s) = data.as_slice::<f32>() else {
        // Not reachable for an f32 tensor.
        return Err(Box::new(scores));
    };
    let Probs { p, a, c } = probs(s, &key_padding, dims, keep, seed);
    let constant =
        |values: Vec<f32>| Tensor::<4>::from_data(TensorData::new(values, shape.clone()), &device);
    let (p, a, c) = (constant(p), constant(a), constant(c));
    let expected = (scores.clone() * p).sum_dim(3);
    Ok((scores - expected) * a + c)
}

/// What the host pass of [`attention_probs`] computes.
struct Probs {
    /// The probabilities, `softmax(s)` over the keys that are not padding.
    p: Vec<f32>,
    /// `m ⊙ p`, the dropped-out probabilities (`m` the dropout factors).
    a: Vec<f32>,
    /// `a − a ⊙ (s − Σ p ⊙ s)`.
    c: Vec<f32>,
}

/// The host pass of [`attention_probs`] over scores `s` of shape `dims`
/// (`[batch, heads, queries, keys]`), one rayon task per (example, head).
fn probs(s: &[f32], key_padding: &[bool], dims: [usize; 4], keep: f64, seed: u64) -> Probs {
    let [_, heads, queries, keys] = dims;
    let n = s.len();
    let factors = if keep < 1.0 {
        dropout_mask(n, keep, seed)
    } else {
        vec![1.0; n]
    };
    let (mut p, mut a, mut c) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let block = queries * keys;
    p.par_chunks_mut(block)
        .zip(a.par_chunks_mut(block))
        .zip(c.par_chunks_mut(block))
        .enumerate()
        .for_each(|(pair, ((p, a), c))| {
            let example = pair / heads;
            let padding = &key_padding[example * keys..(example + 1) * keys];
            let range = pair * block..(pair + 1) * block;
            let (s, m) = (&s[range.clone()], &factors[range]);
            let all_padding = padding.iter().all(|&p| p);
            for at in (0..block).step_by(keys) {
                let row = at..at + keys;
                let p = &mut p[row.clone()];
                if all_padding {
                    p.fill(1.0 / keys as f32);
                } else {
                    p.copy_from_slice(&s[row.clone()]);
                    softmax_row(p, padding);
                }
                let (s, m) = (&s[row.clone()], &m[row.clone()]);
                probs_affine(s, m, p, &mut a[row.clone()], &mut c[row]);
            }
        });
    Probs { p, a, c }
}

widest_vectors! {
    /// `a = m ⊙ p` and `c = a − a ⊙ (s − Σ p ⊙ s)` for one row (see [`attention_probs`]).
    fn probs_affine(s: &[f32], m: &[f32], p: &[f32], a: &mut [f32], c: &mut [f32]) => probs_affine_any
}

#[inline(always)]
fn probs_affine_any(s: &[f32], m: &[f32], p: &[f32], a: &mut [f32], c: &mut [f32]) {
    let expected = dot(s, p);
    for ((((&s, &m), &p), a), c) in s.iter().zip(m).zip(p).zip(a).zip(c) {
        let scaled = m * p;
        *a = scaled;
        *c = scaled - scaled * (s - expected);
    }
}

widest_vectors! {
    #[cfg(feature = "flex")]
    /// The gradient of one row of attention scores, in place: `g` (the gradient of the
    /// dropped-out probabilities `a = m ⊙ p`) becomes `a ⊙ g − p ⊙ Σ (a ⊙ g)`.
    fn probs_backward_in_place(g: &mut [f32], p: &[f32], a: &[f32]) => probs_backward_in_place_any
}

#[cfg(feature = "flex")]
#[inline(always)]
fn probs_backward_in_place_any(g: &mut [f32], p: &[f32], a: &[f32]) {
    let total = dot(g, a);
    for ((g, &p), &a) in g.iter_mut().zip(p).zip(a) {
        *g = a * *g - p * total;
    }
}

widest_vectors! {
    #[cfg(feature = "flex")]
    /// `out = x ⊙ y` over a slice.
    fn times(x: &[f32], y: &[f32], out: &mut [f32]) => times_any
}

#[cfg(feature = "flex")]
#[inline(always)]
fn times_any(x: &[f32], y: &[f32], out: &mut [f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(x).zip(y) {
        *o = x * y;
    }
}

/// `Σ x ⊙ y` over [`LANES`] accumulators.
#[inline(always)]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for (x, y) in x.chunks_exact(LANES).zip(y.chunks_exact(LANES)) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    let tail = x.len() - x.len() % LANES;
    let rest = x[tail..]
        .iter()
        .zip(&y[tail..])
        .map(|(&x, &y)| x * y)
        .sum::<f32>();
    lanes.into_iter().sum::<f32>() + rest
}

widest_vectors! {
    #[cfg(feature = "flex")]
    /// One row of [`layer_norm`]: writes `x̂` and `y`, returns `1 / √(var + eps)`.
    fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, xhat: &mut [f32], y: &mut [f32]) -> f32 => layer_norm_row_any
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
    fn layer_norm_backward_row(g: &[f32], xhat: &[f32], gamma: &[f32], rstd: f32, dx: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32]) => layer_norm_backward_row_any
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

/// Ops recorded on `Autodiff<Flex>` with host code for both passes: one op where burn's
/// autodiff records several, each of them a single-threaded pass over the data on flex.
#[cfg(feature = "flex")]
mod recorded {
    use burn::tensor::{Tensor, TensorData};
    use burn_autodiff::Autodiff;
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind};
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    /// Rows per rayon task.
    const ROWS: usize = 64;

    /// What the backward pass of [`attention`] keeps: the inputs, and per (example, head) the
    /// probabilities and their dropped-out version, `seq × keys` each at the start of a
    /// `seq × seq` block.
    #[derive(Debug, Clone)]
    struct AttentionState {
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        p: std::sync::Arc<[f32]>,
        a: std::sync::Arc<[f32]>,
        /// Keys each example attends over (its trailing padding left out).
        keys: std::sync::Arc<[usize]>,
        heads: usize,
    }

    /// Keys example `b` attends over: up to its last real token (all of them if it has none).
    fn attended_keys(padding: &[bool]) -> usize {
        padding
            .iter()
            .rposition(|&p| !p)
            .map_or(padding.len(), |last| last + 1)
    }

    /// [`attention_recorded`](super::attention_recorded) once the dropout draw is made.
    pub(super) fn attention(
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        key_padding: &[bool],
        heads: usize,
        keep: f64,
        seed: u64,
    ) -> Result<Tensor<3>, Box<[Tensor<3>; 3]>> {
        let [batch, seq, hidden] = q.dims();
        let primitives = (
            q.clone().try_into_primitive::<Autodiff<Flex>>(),
            k.clone().try_into_primitive::<Autodiff<Flex>>(),
            v.clone().try_into_primitive::<Autodiff<Flex>>(),
        );
        let (Ok(qt), Ok(kt), Ok(vt)) = primitives else {
            return Err(Box::new([q, k, v]));
        };
        let qf = contiguous(qt.clone().into_primitive());
        let kf = contiguous(kt.clone().into_primitive());
        let vf = contiguous(vt.clone().into_primitive());
        let head_dim = hidden / heads;
        let scale = (head_dim as f32).sqrt().recip();
        let block = seq * seq;
        let factors = (keep < 1.0).then(|| super::dropout_mask(batch * heads * block, keep, seed));
        let keys: Vec<usize> = key_padding.chunks(seq).map(attended_keys).collect();
        let (mut p, mut a) = (
            vec![0.0f32; batch * heads * block],
            vec![0.0f32; batch * heads * block],
        );
        let mut out = vec![0.0f32; batch * seq * hidden];
        let out_ptr = super::SendPtr(out.as_mut_ptr());
        let (qs, ks, vs) = (
            qf.storage::<f32>(),
            kf.storage::<f32>(),
            vf.storage::<f32>(),
        );
        let hidden_i = hidden as isize;
        p.par_chunks_mut(block)
            .zip(a.par_chunks_mut(block))
            .enumerate()
            .for_each(|(pair, (p, a))| {
                let b = pair / heads;
                let at = b * seq * hidden + (pair % heads) * head_dim;
                let n = keys[b];
                let padding = &key_padding[b * seq..b * seq + n];
                let (p, a) = (&mut p[..seq * n], &mut a[..seq * n]);
                // SAFETY: as in `kernels::attention`: rows b·seq .. (b+1)·seq of width hidden,
                // columns of head `pair % heads`; p holds seq × n.
                unsafe {
                    super::product(
                        [seq, n, head_dim],
                        p.as_mut_ptr(),
                        [n as isize, 1],
                        qs.as_ptr().add(at),
                        [hidden_i, 1],
                        ks.as_ptr().add(at),
                        [1, hidden_i],
                        scale,
                    );
                }
                super::softmax_rows(p, padding);
                match &factors {
                    Some(m) => {
                        for (row, (a, p)) in
                            a.chunks_exact_mut(n).zip(p.chunks_exact(n)).enumerate()
                        {
                            let m = &m[pair * block + row * seq..][..n];
                            super::times(p, m, a);
                        }
                    }
                    None => a.copy_from_slice(p),
                }
                // SAFETY: as above; tasks write disjoint column blocks of `out`.
                unsafe {
                    super::product(
                        [seq, head_dim, n],
                        out_ptr.get().add(at),
                        [hidden_i, 1],
                        a.as_ptr(),
                        [n as isize, 1],
                        vs.as_ptr().add(at),
                        [hidden_i, 1],
                        1.0,
                    );
                }
            });
        let output = shaped_like(out, &qf);
        let output = match AttentionBackward
            .prepare::<NoCheckpointing>([qt.node(), kt.node(), vt.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = AttentionState {
                    q: qf,
                    k: kf,
                    v: vf,
                    p: p.into(),
                    a: a.into(),
                    keys: keys.into(),
                    heads,
                };
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(output),
        };
        Ok(Tensor::from_primitive::<Autodiff<Flex>>(output))
    }

    /// The backward pass of [`attention`].
    #[derive(Debug)]
    struct AttentionBackward;

    impl Backward<Flex, 3> for AttentionBackward {
        type State = AttentionState;

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let [q_node, k_node, v_node] = ops.parents;
            let d_out = contiguous(grads.consume::<Flex>(&ops.node));
            let AttentionState {
                q,
                k,
                v,
                p,
                a,
                keys,
                heads,
            } = ops.state;
            let dims = q.layout().shape().clone();
            let (batch, seq, hidden) = (dims[0], dims[1], dims[2]);
            let head_dim = hidden / heads;
            let scale = (head_dim as f32).sqrt().recip();
            let block = seq * seq;
            let n_total = batch * seq * hidden;
            // Keys after an example's last real token get no gradient: zeros stay there.
            let (mut dq, mut dk, mut dv) = (
                vec![0.0f32; n_total],
                vec![0.0f32; n_total],
                vec![0.0f32; n_total],
            );
            let ptrs = [
                super::SendPtr(dq.as_mut_ptr()),
                super::SendPtr(dk.as_mut_ptr()),
                super::SendPtr(dv.as_mut_ptr()),
            ];
            let (qs, ks, vs, gs) = (
                q.storage::<f32>(),
                k.storage::<f32>(),
                v.storage::<f32>(),
                d_out.storage::<f32>(),
            );
            let h = hidden as isize;
            (0..batch * heads).into_par_iter().for_each_init(
                || vec![0.0f32; block],
                |ds, pair| {
                    let b = pair / heads;
                    let at = b * seq * hidden + (pair % heads) * head_dim;
                    let n = keys[b];
                    let ni = n as isize;
                    let p = &p[pair * block..][..seq * n];
                    let a = &a[pair * block..][..seq * n];
                    let ds = &mut ds[..seq * n];
                    let [dq, dk, dv] = ptrs;
                    // SAFETY: every pointer stays in its buffer (rows b·seq .. (b+1)·seq of
                    // width hidden, the head's columns; ds, p and a hold seq × n); tasks write
                    // disjoint column blocks of dq, dk and dv.
                    unsafe {
                        // dA (seq × n) = dO (seq × d) · v[..n]ᵀ (d × n)
                        super::product(
                            [seq, n, head_dim],
                            ds.as_mut_ptr(),
                            [ni, 1],
                            gs.as_ptr().add(at),
                            [h, 1],
                            vs.as_ptr().add(at),
                            [1, h],
                            1.0,
                        );
                        // dv[..n] (n × d) = aᵀ (n × seq) · dO (seq × d)
                        super::product(
                            [n, head_dim, seq],
                            dv.get().add(at),
                            [h, 1],
                            a.as_ptr(),
                            [1, ni],
                            gs.as_ptr().add(at),
                            [h, 1],
                            1.0,
                        );
                    }
                    for ((ds, p), a) in ds
                        .chunks_exact_mut(n)
                        .zip(p.chunks_exact(n))
                        .zip(a.chunks_exact(n))
                    {
                        super::probs_backward_in_place(ds, p, a);
                    }
                    // SAFETY: as above.
                    unsafe {
                        // dq (seq × d) = scale · dS (seq × n) · k[..n] (n × d)
                        super::product(
                            [seq, head_dim, n],
                            dq.get().add(at),
                            [h, 1],
                            ds.as_ptr(),
                            [ni, 1],
                            ks.as_ptr().add(at),
                            [h, 1],
                            scale,
                        );
                        // dk[..n] (n × d) = scale · dSᵀ (n × seq) · q (seq × d)
                        super::product(
                            [n, head_dim, seq],
                            dk.get().add(at),
                            [h, 1],
                            ds.as_ptr(),
                            [1, ni],
                            qs.as_ptr().add(at),
                            [h, 1],
                            scale,
                        );
                    }
                },
            );
            for (node, grad) in [(q_node, dq), (k_node, dk), (v_node, dv)] {
                if let Some(node) = node {
                    grads.register::<Flex>(node.id, shaped_like(grad, &q));
                }
            }
        }
    }

    /// `t` with a contiguous layout from its first element (a copy only if it is a view).
    fn contiguous(t: FlexTensor) -> FlexTensor {
        if t.is_contiguous() && t.layout().start_offset() == 0 {
            t
        } else {
            t.to_contiguous()
        }
    }

    /// A flex tensor of `values` shaped like `like`.
    fn shaped_like(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, like.layout().shape().clone()))
    }

    /// The inputs of [`layer_norm`], given back.
    type LayerNormInputs<const D: usize> = Box<(Tensor<D>, Tensor<1>, Tensor<1>)>;

    /// [`layer_norm`](super::layer_norm) as one op. Gives the inputs back if they are not
    /// `Autodiff<Flex>` tensors.
    pub(super) fn layer_norm<const D: usize>(
        x: Tensor<D>,
        gamma: Tensor<1>,
        beta: Tensor<1>,
        eps: f64,
    ) -> Result<Tensor<D>, LayerNormInputs<D>> {
        let primitives = (
            x.clone().try_into_primitive::<Autodiff<Flex>>(),
            gamma.clone().try_into_primitive::<Autodiff<Flex>>(),
            beta.clone().try_into_primitive::<Autodiff<Flex>>(),
        );
        let (Ok(xt), Ok(gt), Ok(bt)) = primitives else {
            return Err(Box::new((x, gamma, beta)));
        };
        let input = contiguous(xt.clone().into_primitive());
        let gamma_values = contiguous(gt.clone().into_primitive());
        let beta_values = contiguous(bt.clone().into_primitive());
        let width = gamma_values.layout().num_elements();
        let n = input.layout().num_elements();
        let last = input.layout().shape().last().copied();
        if width == 0 || last != Some(width) || beta_values.layout().num_elements() != width {
            return Err(Box::new((x, gamma, beta)));
        }
        let (mut xhat, mut y, mut rstd) =
            (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n / width]);
        let task = ROWS * width;
        let (g, b) = (gamma_values.storage::<f32>(), beta_values.storage::<f32>());
        input
            .storage::<f32>()
            .par_chunks(task)
            .zip(xhat.par_chunks_mut(task))
            .zip(y.par_chunks_mut(task))
            .zip(rstd.par_chunks_mut(ROWS))
            .for_each(|(((x, xhat), y), rstd)| {
                for (((x, xhat), y), r) in x
                    .chunks_exact(width)
                    .zip(xhat.chunks_exact_mut(width))
                    .zip(y.chunks_exact_mut(width))
                    .zip(rstd.iter_mut())
                {
                    *r = super::layer_norm_row(x, g, b, eps as f32, xhat, y);
                }
            });
        let y = shaped_like(y, &input);
        let output = match LayerNormBackward
            .prepare::<NoCheckpointing>([xt.node(), gt.node(), bt.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (shaped_like(xhat, &input), rstd, gamma_values);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        Ok(Tensor::from_primitive::<Autodiff<Flex>>(output))
    }

    /// The backward pass of [`layer_norm`]; its state is `(x̂, 1 / √(var + eps) per row, gamma)`.
    #[derive(Debug)]
    struct LayerNormBackward;

    impl Backward<Flex, 3> for LayerNormBackward {
        type State = (FlexTensor, Vec<f32>, FlexTensor);

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let [x_node, gamma_node, beta_node] = ops.parents;
            let grad = contiguous(grads.consume::<Flex>(&ops.node));
            let (xhat, rstd, gamma) = ops.state;
            let width = gamma.layout().num_elements();
            let mut dx = vec![0.0f32; grad.layout().num_elements()];
            let task = ROWS * width;
            let gamma_values = gamma.storage::<f32>();
            // Each task sums its rows' dgamma and dbeta; the sums are added up after.
            let (dgamma, dbeta) = grad
                .storage::<f32>()
                .par_chunks(task)
                .zip(xhat.storage::<f32>().par_chunks(task))
                .zip(rstd.par_chunks(ROWS))
                .zip(dx.par_chunks_mut(task))
                .map(|(((g, xhat), rstd), dx)| {
                    let (mut dgamma, mut dbeta) = (vec![0.0f32; width], vec![0.0f32; width]);
                    for (((g, xhat), &r), dx) in g
                        .chunks_exact(width)
                        .zip(xhat.chunks_exact(width))
                        .zip(rstd)
                        .zip(dx.chunks_exact_mut(width))
                    {
                        super::layer_norm_backward_row(
                            g,
                            xhat,
                            gamma_values,
                            r,
                            dx,
                            &mut dgamma,
                            &mut dbeta,
                        );
                    }
                    (dgamma, dbeta)
                })
                .reduce(
                    || (vec![0.0f32; width], vec![0.0f32; width]),
                    |(mut g1, mut b1), (g2, b2)| {
                        g1.iter_mut().zip(&g2).for_each(|(a, b)| *a += b);
                        b1.iter_mut().zip(&b2).for_each(|(a, b)| *a += b);
                        (g1, b1)
                    },
                );
            if let Some(node) = x_node {
                grads.register::<Flex>(node.id, shaped_like(dx, &grad));
            }
            if let Some(node) = gamma_node {
                grads.register::<Flex>(node.id, shaped_like(dgamma, &gamma));
            }
            if let Some(node) = beta_node {
                grads.register::<Flex>(node.id, shaped_like(dbeta, &gamma));
            }
        }
    }
}

/// BERT's self-attention with dropout on the probabilities, recorded on `Autodiff<Flex>` as one
/// op: the training counterpart of [`attention`], from the projections' `[batch, seq, hidden]`
/// outputs to the context in the same layout.
///
/// burn records the head split, the two batched products, the softmax and the dropout as
/// separate ops, and flex allocates each product's output twice (a zeroed buffer, then an
/// aligned copy of it) on one thread. Here the forward pass is, per example and head, the two
/// strided `gemm` products of [`attention`] with the softmax and dropout between them (the
/// probabilities `p` and their dropped-out version `a = m ⊙ p` are kept), and the backward
/// pass five strided products per example and head:
///
/// ```text
/// dA = dO·vᵀ   dv = aᵀ·dO   dS = a ⊙ dA − p ⊙ Σₖ (a ⊙ dA)   dq = scale·dS·k   dk = scale·dSᵀ·q
/// ```
///
/// Trailing padding keys are left out of every product, as in [`attention`]: their
/// probabilities are 0, so they receive no gradient. `mask` is the `[batch, heads, seq, seq]`
/// mask of [`attention_mask`](crate::model::attention_mask). Gives `q`, `k` and `v` back where
/// it does not apply (not `Autodiff<Flex>`, not `f32`, shapes that do not agree).
#[cfg(feature = "flex")]
pub(crate) fn attention_recorded(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask: &Tensor<4, burn::tensor::Bool>,
    heads: usize,
    module: &Dropout,
) -> Result<Tensor<3>, Box<[Tensor<3>; 3]>> {
    let [batch, seq, hidden] = q.dims();
    let applies = q.dtype() == DType::F32
        && k.dtype() == DType::F32
        && v.dtype() == DType::F32
        && q.device().is_autodiff()
        && host_cpu(&q.device())
        && heads > 0
        && seq > 0
        && hidden % heads == 0
        && k.dims() == q.dims()
        && v.dims() == q.dims()
        && mask.dims() == [batch, heads, seq, seq];
    if !applies {
        return Err(Box::new([q, k, v]));
    }
    let keep = if module.training.is_enabled() && module.prob > 0.0 {
        1.0 - module.prob
    } else {
        1.0
    };
    let seed = if keep < 1.0 {
        draw_seed(&q.device().without_autodiff())
    } else {
        0
    };
    let Ok(key_padding) = mask
        .clone()
        .slice([0..batch, 0..1, 0..1, 0..seq])
        .into_data()
        .try_to_vec::<bool>()
    else {
        return Err(Box::new([q, k, v]));
    };
    recorded::attention(q, k, v, &key_padding, heads, keep, seed)
}

/// `dst (m × n) = scale · lhs (m × k) · rhs (k × n)` on the calling thread, each matrix given
/// by its first element and its (row, column) strides, as `gemm_f32` takes them.
///
/// # Safety
///
/// Every element the strides reach must lie inside its buffer, and `dst` must not overlap the
/// inputs.
#[cfg(feature = "flex")]
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    [dst_rs, dst_cs]: [isize; 2],
    lhs: *const f32,
    [lhs_rs, lhs_cs]: [isize; 2],
    rhs: *const f32,
    [rhs_rs, rhs_cs]: [isize; 2],
    scale: f32,
) {
    let gemm = gemm_f32::gemm::f32::get_gemm_fn();
    // SAFETY: the caller's strides keep every access inside its buffer.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            false,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            0.0,
            scale,
            false,
            false,
            false,
            gemm_common::Parallelism::None,
        );
    }
}

/// A pointer the attention tasks share; each writes its own block.
#[cfg(feature = "flex")]
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: the tasks that share it write disjoint elements (see `attention`).
#[cfg(feature = "flex")]
unsafe impl Send for SendPtr {}
// SAFETY: as above.
#[cfg(feature = "flex")]
unsafe impl Sync for SendPtr {}

#[cfg(feature = "flex")]
impl SendPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Softmax of each row of `scores` (rows as long as `padding`) over the keys that are not
/// padding; padding keys get 0. A row whose keys are all padding gets the even distribution.
fn softmax_rows(scores: &mut [f32], padding: &[bool]) {
    let all_padding = padding.iter().all(|&p| p);
    for row in scores.chunks_exact_mut(padding.len()) {
        if all_padding {
            row.fill(1.0 / padding.len() as f32);
        } else {
            softmax_row(row, padding);
        }
    }
}

widest_vectors! {
    /// Softmax of one score row over its non-padding keys (see [`softmax_rows`]).
    fn softmax_row(row: &mut [f32], padding: &[bool]) => softmax_row_any
}

/// Independent accumulators for the row reductions: a float sum or maximum in one accumulator is
/// a chain the compiler may not reorder, in [`LANES`] of them it is one vector operation.
const LANES: usize = 16;

#[inline(always)]
fn softmax_row_any(row: &mut [f32], padding: &[bool]) {
    for (x, &p) in row.iter_mut().zip(padding) {
        *x = if p { f32::NEG_INFINITY } else { *x };
    }
    let max = reduce(row, f32::NEG_INFINITY, f32::max);
    for (x, &p) in row.iter_mut().zip(padding) {
        *x = if p { 0.0 } else { exp(*x - max) };
    }
    let inv = 1.0 / reduce(row, 0.0, |a, b| a + b);
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Folds `values` with `f` over [`LANES`] accumulators, then folds those.
#[inline(always)]
fn reduce(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, x);
        }
    }
    let folded = rest.iter().fold(init, |acc, &x| f(acc, x));
    lanes.into_iter().fold(folded, f)
}

/// Whether `device` computes on this CPU (flex or ndarray), with or without autodiff.
pub(crate) fn host_cpu(device: &Device) -> bool {
    let device = device.clone().without_autodiff();
    #[cfg(feature = "flex")]
    if device == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if device == Device::ndarray() {
        return true;
    }
    let _ = device;
    false
}

/// Whether `device` computes on this CPU without recording a graph.
pub(crate) fn host_inference(device: &Device) -> bool {
    !device.is_autodiff() && host_cpu(device)
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

/// `eˣ` in `f32` (Cephes' `expf`: `2^k · e^r` with `|r| ≤ ln 2 / 2` and a degree-7
/// polynomial), without branches or library calls so that a loop over it vectorises. Relative
/// error below `2e-7` on `[-87, 88]`; inputs outside are clamped to it (so `exp(-∞)` is about
/// `1.6e-38`, not 0, and NaN stays NaN).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round x / ln 2 to the nearest integer by adding and removing 1.5 · 2²³.
    let k = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    // r = x − k·ln 2, with ln 2 split so that k·0.693359375 is exact.
    let r = x - k * 0.693_359_4;
    let r = r + k * 2.121_944_4e-4;
    let mut p = r * 1.987_569_1e-4 + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = p * (r * r) + r + 1.0;
    // 2^k through the exponent bits (k is in [-126, 127] after the clamp).
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
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
            let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [rows, 5]), &device)
                .require_grad();
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
            let upstream =
                Tensor::<3>::from_data(TensorData::new(upstream, [rows, 1, width]), &device);
            let gammas: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 * 0.03).collect();
            let betas: Vec<f32> = (0..width).map(|i| i as f32 * 0.1 - 2.0).collect();
            let run = |ours: bool| {
                let x =
                    Tensor::<3>::from_data(TensorData::new(xs.clone(), [rows, 1, width]), &device)
                        .require_grad();
                let gamma =
                    Tensor::<1>::from_data(TensorData::new(gammas.clone(), [width]), &device)
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
            let scores = || {
                Tensor::<4>::from_data(TensorData::new(raw.clone(), shape), &device).require_grad()
            };
            let upstream: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let upstream = Tensor::<4>::from_data(TensorData::new(upstream, shape), &device);
            // Example 0: no padding; 1: its last 20 tokens; 2: every token.
            let real = [seq, seq - 20, 0];
            let padding: Vec<i64> = (0..batch * seq)
                .map(|i| i64::from(i % seq < real[i / seq]))
                .collect();
            let padding =
                Tensor::<2, Int>::from_data(TensorData::new(padding, [batch, seq]), &device);
            let mask = crate::model::attention_mask(&padding, heads);
            for keep in [1.0, 0.9] {
                let x = scores();
                let ours =
                    attention_probs_seeded(x.clone(), &mask, keep, 99).unwrap_or_else(|_| {
                        panic!("the host kernel applies on an autodiff CPU device")
                    });
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
        let upstream =
            Tensor::<3>::from_data(TensorData::new(upstream, [batch, seq, hidden]), &device);
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
                    let split =
                        |t: Tensor<3>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
                    let scale = (head_dim as f64).sqrt().recip();
                    let scores = (split(q.clone()) * scale)
                        .matmul(split(k.clone()).swap_dims(2, 3))
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
}
