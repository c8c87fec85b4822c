//! The extension point of the encoder: a linear projection with a pluggable adapter.
//!
//! Every linear map inside a BERT layer (attention `query`, `key`, `value`, the attention output
//! `dense`, the feed-forward `intermediate.dense` and `output.dense`) and the pooler's `dense` is
//! a [`Projection`]: the frozen-able base weights plus an adapter `A` that turns the base linear
//! into the adapted one:
//!
//! ```text
//! y = A.forward(x, base = (W, b), route)      // NoAdapter: y = x·W + b
//! ```
//!
//! The encoder only knows this shape. An adapter scheme (LoRA, IA³, a bottleneck, ...) lives in
//! its own crate, implements [`ProjectionAdapter`], and is installed into a loaded model with
//! [`BertModel::map_projections`](crate::BertModel::map_projections), which moves every base
//! weight into the new projection without copying it. The [`Route`] passed to the forward pass
//! tells the adapter which of its groups to apply: none, one for the whole batch, or one per
//! example. With [`NoAdapter`] (the default) the projection is the plain linear at no extra cost.
//!
//! ```
//! use burn::module::Module;
//! use burn::tensor::Tensor;
//! use lora_bert_encoder::{BaseLinear, NoAdapter, Projection, ProjectionAdapter, Route};
//!
//! /// A toy adapter: adds `scale · x` to the output of square projections for group 0.
//! #[derive(Module, Debug)]
//! struct Scale {
//!     scale: f64,
//! }
//!
//! impl ProjectionAdapter for Scale {
//!     fn forward(&self, input: Tensor<3>, base: BaseLinear<'_>, route: &Route) -> Tensor<3> {
//!         match route.group_for_batch() {
//!             Some(0) => base.forward(input.clone()) + input * self.scale,
//!             _ => base.forward(input),
//!         }
//!     }
//! }
//!
//! let device = lora_bert_encoder::device::device(
//!     lora_bert_encoder::device::Backend::default_cpu()?,
//! )?;
//! let plain = Projection::<NoAdapter>::zeros(4, 4, &device);
//! let scaled = plain.with_adapter(Scale { scale: 2.0 });
//! let x = Tensor::<3>::ones([1, 2, 4], &device);
//! let y = scaled.forward(x.clone(), &Route::Group(0));
//! assert_eq!(y.into_data().try_into_vec::<f32>().unwrap(), vec![2.0; 8]);
//! let y = scaled.forward(x, &Route::Base);
//! assert_eq!(y.into_data().try_into_vec::<f32>().unwrap(), vec![0.0; 8]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;

use burn::module::{Module, ModuleDisplay, Param};
use burn::tensor::{Device, Tensor, module};

/// Which adapter group a forward pass uses.
///
/// Group ids are small integers; the adapter crate maps names (`"ner"`, `"tc"`, an app's name)
/// to ids. An adapter that holds no group with a routed id adds nothing for those examples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Route {
    /// No adapter: the plain backbone.
    #[default]
    Base,
    /// One group for the whole batch.
    Group(usize),
    /// One entry per example of the batch (`None`: that example runs on the plain backbone).
    PerExample(Arc<[Option<usize>]>),
}

impl Route {
    /// A per-example route.
    pub fn per_example(groups: impl IntoIterator<Item = Option<usize>>) -> Self {
        Route::PerExample(groups.into_iter().collect())
    }

    /// The group used by every example, if the route names exactly one for the whole batch
    /// (a per-example route whose entries are all the same group counts).
    pub fn group_for_batch(&self) -> Option<usize> {
        match self {
            Route::Base => None,
            Route::Group(g) => Some(*g),
            Route::PerExample(groups) => {
                let first = *groups.first()?;
                groups
                    .iter()
                    .all(|g| *g == first)
                    .then_some(first)
                    .flatten()
            }
        }
    }

    /// The group of example `index` of the batch.
    pub fn group_of(&self, index: usize) -> Option<usize> {
        match self {
            Route::Base => None,
            Route::Group(g) => Some(*g),
            Route::PerExample(groups) => groups.get(index).copied().flatten(),
        }
    }

    /// Whether no example uses any group.
    pub fn is_base(&self) -> bool {
        match self {
            Route::Base => true,
            Route::Group(_) => false,
            Route::PerExample(groups) => groups.iter().all(Option::is_none),
        }
    }

    /// The batch size this route requires, if it is per-example.
    pub fn batch_len(&self) -> Option<usize> {
        match self {
            Route::PerExample(groups) => Some(groups.len()),
            _ => None,
        }
    }
}

/// `x·W + b` for `x` of shape `[batch, seq, d_in]`, `W` of shape `[d_in, d_out]` and `b` of
/// shape `[d_out]`, as one `[batch·seq, d_in] × [d_in, d_out]` product.
///
/// burn's [`linear`](burn::tensor::module::linear) keeps a 3-D input batched when its rows fill
/// the matmul tiles (a sequence of 128 tokens does): one product per example, each packing `W`
/// again. In training (an autodiff device) the rows of `x` are folded into one product, which
/// packs `W` once (folding contiguous rows is a view). Without autodiff each example keeps its
/// own product, so that a text's output does not depend on the batch it is served in: folded,
/// the runtime test that compares a text alone with the same text in a batch failed about one
/// run in six on last-bit differences, and serving measured no faster folded.
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = lora_bert_encoder::device::device(
///     lora_bert_encoder::device::Backend::default_cpu()?,
/// )?;
/// let x = Tensor::<3>::ones([2, 3, 4], &device);
/// let w = Tensor::<2>::ones([4, 5], &device);
/// let b = Tensor::<1>::ones([5], &device);
/// let y = lora_bert_encoder::projection::linear(x, w, Some(b));
/// assert_eq!(y.dims(), [2, 3, 5]);
/// assert_eq!(y.into_data().try_into_vec::<f32>().unwrap(), vec![5.0; 30]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn linear(input: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    if !input.device().is_autodiff() {
        return module::linear(input, weight, bias);
    }
    let [batch, seq, d_in] = input.dims();
    let d_out = weight.dims()[1];
    module::linear(input.reshape([batch * seq, d_in]), weight, bias).reshape([batch, seq, d_out])
}

/// The base linear map of a [`Projection`], as its adapter sees it: `y = x·W + b`, or
/// `y = ((x⊙r)·Q)⊙c + b` for an int8 weight `Q` with input-row scales `r` and output-column
/// scales `c`.
#[derive(Debug, Clone, Copy)]
pub struct BaseLinear<'a> {
    /// Weight, `[d_in, d_out]` (int8 values when `weight_scale` is set).
    pub weight: &'a Param<Tensor<2>>,
    /// Per-output-column scale of an int8 weight, `[d_out]`.
    pub weight_scale: Option<&'a Param<Tensor<1>>>,
    /// Per-input-row scale of an int8 weight, `[d_in]`.
    pub input_scale: Option<&'a Param<Tensor<1>>>,
    /// Bias, `[d_out]`.
    pub bias: Option<&'a Param<Tensor<1>>>,
}

impl BaseLinear<'_> {
    /// `x·W + b` for `x` of shape `[batch, seq, d_in]`.
    pub fn forward(&self, input: Tensor<3>) -> Tensor<3> {
        if self.weight_scale.is_none() && self.input_scale.is_none() {
            return linear(input, self.weight.val(), self.bias.map(|b| b.val()));
        }
        let y = self.forward_no_bias(input);
        match self.bias {
            Some(b) => y + b.val().unsqueeze::<3>(),
            None => y,
        }
    }

    /// `x·W` without the bias.
    pub fn forward_no_bias(&self, input: Tensor<3>) -> Tensor<3> {
        let input = match self.input_scale {
            Some(r) => input * r.val().unsqueeze::<3>(),
            None => input,
        };
        let y = linear(input, self.weight.val(), None);
        match self.weight_scale {
            Some(s) => y * s.val().unsqueeze::<3>(),
            None => y,
        }
    }
}

/// What an adapter scheme provides to a [`Projection`].
///
/// `forward` receives the projection's input `[batch, seq, d_in]` and its base linear map, and
/// returns the adapted output `[batch, seq, d_out]`. An additive scheme (LoRA) returns
/// `base.forward(x) + delta(x)`; a multiplicative one (IA³) may scale the input or the output.
/// It must honour per-example routes: example `i` uses `route.group_of(i)`, and examples routed
/// to no group this adapter holds get exactly `base.forward(x)`.
///
/// Merging into the base weights, saving, loading and parameter accounting are the adapter
/// crate's business: it owns the adapter type and reaches the base weights through the public
/// fields of [`Projection`].
pub trait ProjectionAdapter: Module + ModuleDisplay {
    /// The adapted output for `input` under `route`.
    fn forward(&self, input: Tensor<3>, base: BaseLinear<'_>, route: &Route) -> Tensor<3>;
}

/// The empty adapter: the projection is the plain linear layer.
#[derive(Module, Debug, Default)]
pub struct NoAdapter;

impl ProjectionAdapter for NoAdapter {
    #[inline]
    fn forward(&self, input: Tensor<3>, base: BaseLinear<'_>, _route: &Route) -> Tensor<3> {
        base.forward(input)
    }
}

/// A linear projection `y = x·W + b`, adapted by `A`.
///
/// `weight` is stored `[d_in, d_out]` (burn's layout); Hugging Face checkpoints hold the
/// transpose, `[d_out, d_in]`, and the checkpoint code converts between the two. An int8
/// projection ([`BertModel::quantize_int8`](crate::BertModel::quantize_int8)) holds the int8
/// values in `weight` (a quantized tensor of scale 1), one scale per output column in
/// `weight_scale` and one per input row in `input_scale`.
#[derive(Module, Debug)]
pub struct Projection<A: ProjectionAdapter = NoAdapter> {
    /// Base weight, `[d_in, d_out]`.
    pub weight: Param<Tensor<2>>,
    /// Per-output-column scale of an int8 `weight`, `[d_out]`; `None` for a float weight.
    pub weight_scale: Option<Param<Tensor<1>>>,
    /// Per-input-row scale of an int8 `weight`, `[d_in]`; `None` for a float weight.
    pub input_scale: Option<Param<Tensor<1>>>,
    /// Base bias, `[d_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The adapter; [`NoAdapter`] for the plain layer.
    pub adapter: A,
}

impl Projection<NoAdapter> {
    /// A projection from a weight `[d_in, d_out]` and an optional bias `[d_out]`.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            weight_scale: None,
            input_scale: None,
            bias: bias.map(Param::from_tensor),
            adapter: NoAdapter,
        }
    }

    /// An all-zero projection (weights and bias), for tests and examples.
    pub fn zeros(d_in: usize, d_out: usize, device: &Device) -> Self {
        Self::new(
            Tensor::zeros([d_in, d_out], device),
            Some(Tensor::zeros([d_out], device)),
        )
    }
}

impl<A: ProjectionAdapter> Projection<A> {
    /// Replaces the adapter, keeping the base weights (moved, not copied).
    pub fn with_adapter<B: ProjectionAdapter>(self, adapter: B) -> Projection<B> {
        Projection {
            weight: self.weight,
            weight_scale: self.weight_scale,
            input_scale: self.input_scale,
            bias: self.bias,
            adapter,
        }
    }

    /// Splits the projection into its plain base and its adapter.
    pub fn into_parts(self) -> (Projection<NoAdapter>, A) {
        let adapter = self.adapter;
        let base = Projection {
            weight: self.weight,
            weight_scale: self.weight_scale,
            input_scale: self.input_scale,
            bias: self.bias,
            adapter: NoAdapter,
        };
        (base, adapter)
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.weight.shape().dims::<2>()[0]
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.shape().dims::<2>()[1]
    }

    /// The base linear map, as the adapter sees it.
    pub fn base(&self) -> BaseLinear<'_> {
        BaseLinear {
            weight: &self.weight,
            weight_scale: self.weight_scale.as_ref(),
            input_scale: self.input_scale.as_ref(),
            bias: self.bias.as_ref(),
        }
    }

    /// The base weight as floats, `[d_in, d_out]` (an int8 weight dequantized).
    pub fn weight_f32(&self) -> Tensor<2> {
        match &self.weight_scale {
            None => self.weight.val(),
            Some(scale) => {
                let w = self.weight.val().dequantize() * scale.val().unsqueeze::<2>();
                match &self.input_scale {
                    Some(r) => w * r.val().unsqueeze_dim::<2>(1),
                    None => w,
                }
            }
        }
    }

    /// Whether the base weight is int8 ([`BertModel::quantize_int8`](crate::BertModel::quantize_int8)).
    pub fn is_quantized(&self) -> bool {
        self.weight_scale.is_some()
    }

    /// The base output only, ignoring the adapter.
    pub fn forward_base(&self, input: Tensor<3>) -> Tensor<3> {
        self.base().forward(input)
    }

    /// The adapted output for `route` (the base output when the route selects no group of
    /// the adapter).
    pub fn forward(&self, input: Tensor<3>, route: &Route) -> Tensor<3> {
        if route.is_base() {
            return self.forward_base(input);
        }
        self.adapter.forward(input, self.base(), route)
    }
}

/// The projections of a BERT model, named as in Hugging Face: six per layer and the pooler's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjectionKind {
    /// `attention.self.query`
    Query,
    /// `attention.self.key`
    Key,
    /// `attention.self.value`
    Value,
    /// `attention.output.dense`
    AttentionOutput,
    /// `intermediate.dense`
    Intermediate,
    /// `output.dense`
    Output,
    /// `pooler.dense`, outside the layers (its site's `layer` is the number of layers).
    Pooler,
}

impl ProjectionKind {
    /// The six of a layer, in the order of the forward pass (not [`Pooler`](Self::Pooler)).
    pub const ALL: [ProjectionKind; 6] = [
        ProjectionKind::Query,
        ProjectionKind::Key,
        ProjectionKind::Value,
        ProjectionKind::AttentionOutput,
        ProjectionKind::Intermediate,
        ProjectionKind::Output,
    ];

    /// The module path inside a layer, as in Hugging Face (`attention.self.query`, ...); for the
    /// pooler, its path in the model, `pooler.dense`.
    pub fn hf_name(self) -> &'static str {
        match self {
            ProjectionKind::Query => "attention.self.query",
            ProjectionKind::Key => "attention.self.key",
            ProjectionKind::Value => "attention.self.value",
            ProjectionKind::AttentionOutput => "attention.output.dense",
            ProjectionKind::Intermediate => "intermediate.dense",
            ProjectionKind::Output => "output.dense",
            ProjectionKind::Pooler => "pooler.dense",
        }
    }
}

/// Where a projection sits: its layer and its kind. The pooler's site has kind
/// [`ProjectionKind::Pooler`] and `layer` equal to the number of layers (it comes after the
/// last one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectionSite {
    /// Layer index, from 0.
    pub layer: usize,
    /// Which projection of the layer.
    pub kind: ProjectionKind,
}

impl ProjectionSite {
    /// The full Hugging Face module path, e.g. `encoder.layer.5.attention.self.query`, or
    /// `pooler.dense`.
    pub fn hf_path(&self) -> String {
        match self.kind {
            ProjectionKind::Pooler => self.kind.hf_name().to_owned(),
            kind => format!("encoder.layer.{}.{}", self.layer, kind.hf_name()),
        }
    }

    /// The layer index, or `None` for the pooler.
    pub fn layer_index(&self) -> Option<usize> {
        (self.kind != ProjectionKind::Pooler).then_some(self.layer)
    }
}

impl fmt::Display for ProjectionSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hf_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_queries() {
        assert!(Route::Base.is_base());
        assert_eq!(Route::Group(3).group_for_batch(), Some(3));
        let r = Route::per_example([Some(1), None, Some(1)]);
        assert_eq!(r.group_for_batch(), None);
        assert_eq!(r.group_of(0), Some(1));
        assert_eq!(r.group_of(1), None);
        assert_eq!(r.group_of(7), None);
        assert_eq!(r.batch_len(), Some(3));
        assert!(!r.is_base());
        assert!(Route::per_example([None, None]).is_base());
        assert_eq!(
            Route::per_example([Some(2), Some(2)]).group_for_batch(),
            Some(2)
        );
    }

    #[test]
    fn site_paths_follow_hf() {
        let site = ProjectionSite {
            layer: 5,
            kind: ProjectionKind::AttentionOutput,
        };
        assert_eq!(site.hf_path(), "encoder.layer.5.attention.output.dense");
        let pooler = ProjectionSite {
            layer: 6,
            kind: ProjectionKind::Pooler,
        };
        assert_eq!(pooler.hf_path(), "pooler.dense");
        assert_eq!(pooler.layer_index(), None);
    }
}
