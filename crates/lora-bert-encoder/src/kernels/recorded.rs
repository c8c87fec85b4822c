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
    let factors =
        (keep < 1.0).then(|| super::dropout::dropout_mask(batch * heads * block, keep, seed));
    let keys: Vec<usize> = key_padding
        .chunks(seq)
        .map(super::attention::attended_keys)
        .collect();
    let (mut p, mut a) = (
        vec![0.0f32; batch * heads * block],
        vec![0.0f32; batch * heads * block],
    );
    let mut out = vec![0.0f32; batch * seq * hidden];
    let out_ptr = super::attention::SendPtr(out.as_mut_ptr());
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
                super::attention::product(
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
            super::attention::softmax_rows(p, padding);
            match &factors {
                Some(m) => {
                    for (row, (a, p)) in a.chunks_exact_mut(n).zip(p.chunks_exact(n)).enumerate() {
                        let m = &m[pair * block + row * seq..][..n];
                        super::attention::times(p, m, a);
                    }
                }
                None => a.copy_from_slice(p),
            }
            // SAFETY: as above; tasks write disjoint column blocks of `out`.
            unsafe {
                super::attention::product(
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
            super::attention::SendPtr(dq.as_mut_ptr()),
            super::attention::SendPtr(dk.as_mut_ptr()),
            super::attention::SendPtr(dv.as_mut_ptr()),
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
                    super::attention::product(
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
                    super::attention::product(
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
                    super::attention::probs_backward_in_place(ds, p, a);
                }
                // SAFETY: as above.
                unsafe {
                    // dq (seq × d) = scale · dS (seq × n) · k[..n] (n × d)
                    super::attention::product(
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
                    super::attention::product(
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
    let (mut xhat, mut y, mut rstd) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n / width]);
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
                *r = super::norm::layer_norm_row(x, g, b, eps as f32, xhat, y);
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
                    super::norm::layer_norm_backward_row(
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
