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

/// Dropout's keep probability for `module` (1 when it is not training) and, if it drops
/// anything, the seed of its mask drawn from burn's generator on `device`.
fn dropout_draw(module: &Dropout, device: &Device) -> (f64, u64) {
    if module.training.is_enabled() && module.prob > 0.0 {
        (
            1.0 - module.prob,
            draw_seed(&device.clone().without_autodiff()),
        )
    } else {
        (1.0, 0)
    }
}

/// Whether the attention kernels take these operands: `f32` projections of one shape
/// `[batch, seq, hidden]` with `seq > 0` and `hidden` a multiple of `heads`, and a
/// `[batch, heads, seq, seq]` mask.
#[cfg(feature = "flex")]
fn attention_applies(
    q: &Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    mask: &Tensor<4, burn::tensor::Bool>,
    heads: usize,
) -> bool {
    let [batch, seq, hidden] = q.dims();
    [q, k, v].iter().all(|t| t.dtype() == DType::F32)
        && heads > 0
        && seq > 0
        && hidden % heads == 0
        && k.dims() == q.dims()
        && v.dims() == q.dims()
        && mask.dims() == [batch, heads, seq, seq]
}

#[cfg(feature = "flex")]
/// Keys an example attends over, given its key padding: up to its last real token (all of them
/// if it has none). The attention kernels leave the rest out of their products.
fn attended_keys(padding: &[bool]) -> usize {
    padding
        .iter()
        .rposition(|&p| !p)
        .map_or(padding.len(), |last| last + 1)
}

/// Which keys are padding, per example (`[batch, seq]` flattened), from an attention mask
/// `[batch, heads, seq, seq]` of [`attention_mask`](crate::model::attention_mask).
fn key_padding(mask: &Tensor<4, burn::tensor::Bool>) -> Option<Vec<bool>> {
    let [batch, _, _, seq] = mask.dims();
    mask.clone()
        .slice([0..batch, 0..1, 0..1, 0..seq])
        .into_data()
        .try_to_vec::<bool>()
        .ok()
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
    if !(host_inference(&device) && attention_applies(&q, &k, &v, mask, heads)) {
        return Err(Box::new([q, k, v]));
    }
    let head_dim = hidden / heads;
    let key_padding = key_padding(mask);
    let (q, k, v) = (q.into_data(), k.into_data(), v.into_data());
    let (Some(key_padding), Ok(qs), Ok(ks), Ok(vs)) = (
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
            let keys = attended_keys(padding);
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
    let (keep, seed) = dropout_draw(module, &device);
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
    let Some(key_padding) = key_padding(mask) else {
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
mod recorded;

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
    let device = q.device();
    let applies =
        device.is_autodiff() && host_cpu(&device) && attention_applies(&q, &k, &v, mask, heads);
    let key_padding = applies.then(|| key_padding(mask)).flatten();
    let Some(key_padding) = key_padding else {
        return Err(Box::new([q, k, v]));
    };
    let (keep, seed) = dropout_draw(module, &device);
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
mod tests;
