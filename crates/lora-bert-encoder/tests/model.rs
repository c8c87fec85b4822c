//! Model behaviour on tiny random models: dropout only in training, the projection extension
//! point and routing.

mod common;

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use lora_bert_encoder::device::{self, Backend, Device};
use lora_bert_encoder::{
    BaseLinear, BertConfig, BertInput, BertModel, NoAdapter, Projection, ProjectionAdapter,
    ProjectionKind, Route,
};

fn cpu() -> Device {
    device::device(Backend::default_cpu().unwrap()).unwrap()
}

fn config() -> BertConfig {
    let mut c = BertConfig::new(40, 16, 2, 2, 24);
    c.max_position_embeddings = 16;
    c.hidden_dropout_prob = 0.3;
    c.attention_probs_dropout_prob = 0.3;
    c
}

fn input(config: &BertConfig, device: &Device) -> BertInput {
    let ids = [2, 5, 8, 3, 2, 9, 3, 0];
    let mask = [1, 1, 1, 1, 1, 1, 1, 0];
    BertInput::from_ids(&ids, &[0; 8], &mask, [2, 4], config, device).unwrap()
}

fn run<A: ProjectionAdapter>(model: &BertModel<A>, input: &BertInput, route: &Route) -> Vec<f32> {
    model
        .forward(input, route)
        .unwrap()
        .last_hidden_state
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn dropout_is_active_only_when_training_on_autodiff() {
    let c = config();
    let plain = cpu();
    let model = BertModel::init(&c, false, &plain);
    let x = input(&c, &plain);
    assert_eq!(run(&model, &x, &Route::Base), run(&model, &x, &Route::Base));

    let train = device::autodiff(plain.clone());
    let model = model.to_device(&train);
    let x = input(&c, &train);
    let (a, b) = (run(&model, &x, &Route::Base), run(&model, &x, &Route::Base));
    assert_ne!(a, b, "dropout must change outputs in training mode");

    let eval = model.valid();
    assert_eq!(run(&eval, &x, &Route::Base), run(&eval, &x, &Route::Base));
}

/// The training path of self-attention (explicit scores, additive padding mask, dropout)
/// computes what the inference path computes, on a batch with padding and with an example that
/// is all padding (whose queries attend evenly, as with Hugging Face's additive mask).
#[test]
fn training_attention_computes_what_inference_attention_computes() {
    let mut c = config();
    // Active, so the training path runs, but it drops about one element in ten million.
    c.hidden_dropout_prob = 1e-7;
    c.attention_probs_dropout_prob = 1e-7;
    let ids = [2, 5, 8, 3, 2, 9, 3, 0, 2, 0, 0, 0];
    let mask = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
    let plain = cpu();
    let model = BertModel::init(&c, false, &plain);
    let x = BertInput::from_ids(&ids, &[0; 12], &mask, [3, 4], &c, &plain).unwrap();
    let want = run(&model, &x, &Route::Base);

    let train = device::autodiff(plain.clone());
    let model = model.to_device(&train);
    let x = BertInput::from_ids(&ids, &[0; 12], &mask, [3, 4], &c, &train).unwrap();
    let got = run(&model, &x, &Route::Base);
    assert!(got.iter().all(|v| v.is_finite()));
    let diff = common::max_abs_diff(&got, &want);
    assert!(diff < 1e-4, "max |diff| {diff}");
}

/// A per-group additive bias on the output of one kind of projection: enough to exercise
/// routing through the extension point.
#[derive(Module, Debug)]
struct GroupBias {
    /// `[groups, d_out]`.
    bias: Param<Tensor<2>>,
}

impl ProjectionAdapter for GroupBias {
    fn forward(&self, input: Tensor<3>, base: BaseLinear<'_>, route: &Route) -> Tensor<3> {
        let [batch, seq, _] = input.dims();
        let [groups, d_out] = self.bias.dims();
        let device = input.device();
        let rows: Vec<Tensor<3>> = (0..batch)
            .map(|i| match route.group_of(i) {
                Some(g) if g < groups => self
                    .bias
                    .val()
                    .narrow(0, g, 1)
                    .reshape([1, 1, d_out])
                    .expand([1, seq, d_out]),
                _ => Tensor::zeros([1, seq, d_out], &device),
            })
            .collect();
        base.forward(input) + Tensor::cat(rows, 0)
    }
}

/// Either the bias adapter or nothing, decided per site.
#[derive(Module, Debug)]
struct Maybe {
    inner: Option<GroupBias>,
}

impl ProjectionAdapter for Maybe {
    fn forward(&self, input: Tensor<3>, base: BaseLinear<'_>, route: &Route) -> Tensor<3> {
        match &self.inner {
            Some(inner) => inner.forward(input, base, route),
            None => base.forward(input),
        }
    }
}

#[test]
fn adapters_plug_in_without_copying_and_route_per_example() {
    let c = config();
    let device = cpu();
    let base = BertModel::init(&c, false, &device);
    let x = input(&c, &device);
    let plain = run(&base, &x, &Route::Base);
    let n_params = base.num_params();

    let mut sites = Vec::new();
    let adapted: BertModel<Maybe> = base.map_projections(|site, p: Projection<NoAdapter>| {
        sites.push(site);
        let inner = (site.layer == 1 && site.kind == ProjectionKind::Value).then(|| GroupBias {
            bias: Param::from_tensor(Tensor::from_floats([[0.5; 16], [-1.0; 16]], &device)),
        });
        p.with_adapter(Maybe { inner })
    });
    assert_eq!(sites.len(), 12);
    assert_eq!(sites[6].hf_path(), "encoder.layer.1.attention.self.query");
    assert_eq!(adapted.num_params(), n_params + 32);

    // Base route: exactly the plain model.
    assert_eq!(run(&adapted, &x, &Route::Base), plain);
    let g0 = run(&adapted, &x, &Route::Group(0));
    let g1 = run(&adapted, &x, &Route::Group(1));
    assert_ne!(g0, plain);
    assert_ne!(g0, g1);
    // Mixed batch: example 0 on group 1, example 1 on the plain backbone, in one pass.
    let mixed = run(&adapted, &x, &Route::per_example([Some(1), None]));
    let half = mixed.len() / 2;
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(close(&mixed[..half], &g1[..half]));
    assert!(close(&mixed[half..], &plain[half..]));

    // Removing the adapters gives back the plain model.
    let back = adapted.map_projections(|_, p| p.into_parts().0);
    assert_eq!(run(&back, &x, &Route::Base), plain);
    assert_eq!(back.num_params(), n_params);
}
