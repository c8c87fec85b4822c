//! Property: for any batch and any per-example route, one routed pass through a projection
//! equals running every example alone through its own group.

mod common;

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use common::*;
use lora_bert_adapters::{Adapter, Lora, LoraConfig, SiteGroups, Targets};
use lora_bert_encoder::{Projection, ProjectionKind, ProjectionSite, Route};
use proptest::prelude::*;

const D_IN: usize = 6;
const D_OUT: usize = 5;
const SEQ: usize = 3;

fn wave(len: usize, phase: f32) -> Vec<f32> {
    (0..len).map(|i| (0.7 * i as f32 + phase).sin()).collect()
}

/// A projection with LoRA modules in the slots where `present[g]` is true.
fn projection(present: &[bool]) -> Projection<SiteGroups<Lora>> {
    let device = cpu();
    let base = Projection::new(
        Tensor::from_data(
            TensorData::new(wave(D_IN * D_OUT, 0.1), [D_IN, D_OUT]),
            &device,
        ),
        Some(Tensor::from_data(
            TensorData::new(wave(D_OUT, 2.0), [D_OUT]),
            &device,
        )),
    );
    let site = ProjectionSite {
        layer: 0,
        kind: ProjectionKind::Query,
    };
    let mut groups = SiteGroups::<Lora>::default();
    for (g, _) in present.iter().enumerate().filter(|(_, p)| **p) {
        let mut m = Lora::init(
            &LoraConfig::new(2, Targets::new(["query"])),
            site,
            D_IN,
            D_OUT,
            &device,
        );
        m.a = Param::from_tensor(Tensor::from_data(
            TensorData::new(wave(D_IN * 2, g as f32), [D_IN, 2]),
            &device,
        ));
        m.b = Param::from_tensor(Tensor::from_data(
            TensorData::new(wave(2 * D_OUT, 3.0 + g as f32), [2, D_OUT]),
            &device,
        ));
        groups.set(g, Some(m));
    }
    base.with_adapter(groups)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mixed_routes_equal_single_example_routes(
        present in proptest::collection::vec(any::<bool>(), 3),
        route in proptest::collection::vec(proptest::option::of(0usize..4), 1..7),
    ) {
        let device = cpu();
        let p = projection(&present);
        let batch = route.len();
        let x = Tensor::<3>::from_data(
            TensorData::new(wave(batch * SEQ * D_IN, 0.5), [batch, SEQ, D_IN]),
            &device,
        );
        let mixed = values(p.forward(x.clone(), &Route::per_example(route.clone())));
        for (i, g) in route.iter().enumerate() {
            let row = x.clone().narrow(0, i, 1);
            let alone = values(p.forward(row.clone(), &g.map_or(Route::Base, Route::Group)));
            let chunk = &mixed[i * SEQ * D_OUT..(i + 1) * SEQ * D_OUT];
            prop_assert!(max_diff(chunk, &alone) < 1e-6, "example {i} group {g:?}");
            // A group absent at this site leaves the example on the base projection.
            if g.is_none_or(|g| !present.get(g).copied().unwrap_or(false)) {
                let base = values(p.forward_base(row));
                prop_assert!(max_diff(chunk, &base) < 1e-6);
            }
        }
    }
}
