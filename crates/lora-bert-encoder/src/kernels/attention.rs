//! Self-attention on the CPU: the inference kernel, the recorded training op and the
//! training probabilities, with the strided products and row softmax they share.

use burn::nn::Dropout;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::dropout::{dropout_draw, dropout_mask};
use super::host_cpu;
use super::math::{dot, exp, reduce};
#[cfg(feature = "flex")]
use super::{host_inference, recorded};

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
pub(super) fn attended_keys(padding: &[bool]) -> usize {
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
///
/// [`dropout`]: super::dropout::dropout
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
pub(super) fn attention_probs_seeded(
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
    pub(super) fn probs_backward_in_place(g: &mut [f32], p: &[f32], a: &[f32]) => probs_backward_in_place_any
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
    pub(super) fn times(x: &[f32], y: &[f32], out: &mut [f32]) => times_any
}

#[cfg(feature = "flex")]
#[inline(always)]
fn times_any(x: &[f32], y: &[f32], out: &mut [f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(x).zip(y) {
        *o = x * y;
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
pub(super) unsafe fn product(
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
pub(super) struct SendPtr(pub(super) *mut f32);

// SAFETY: the tasks that share it write disjoint elements (see `attention`).
#[cfg(feature = "flex")]
unsafe impl Send for SendPtr {}
// SAFETY: as above.
#[cfg(feature = "flex")]
unsafe impl Sync for SendPtr {}

#[cfg(feature = "flex")]
impl SendPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Softmax of each row of `scores` (rows as long as `padding`) over the keys that are not
/// padding; padding keys get 0. A row whose keys are all padding gets the even distribution.
pub(super) fn softmax_rows(scores: &mut [f32], padding: &[bool]) {
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
