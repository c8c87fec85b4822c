//! Cost of adapter groups on all-MiniLM-L6-v2 (flex, 8 × 128 tokens): the plain backbone, one
//! LoRA group, a batch mixing four groups in one pass, and a merged group; plus the time to
//! add, load and switch a group (the backbone is never copied or reloaded).
//!
//! ```text
//! cargo bench -p lora-bert --bench adapters
//! ```
//!
//! Every group is LoRA rank 8 on `query` and `value` of all six layers (PEFT's usual
//! targets). Results live in docs/benchmarks.md.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lora_bert::adapters::{AdaptedModel, Lora, LoraConfig, Targets};
use lora_bert::encoder::tokenizer::LengthPolicy;
use lora_bert::{Backend, BertInput, Embedder, Route, device};

const TEXT: &str = "When the small research team finally gathered in the crowded laboratory late \
    on Friday evening, the senior scientist carefully explained why the unexpected measurements \
    from the northern observatory could not be dismissed as a simple calibration error. ";

const BATCH: usize = 8;
const GROUPS: [&str; 4] = ["ner", "tc", "app1", "app2"];

fn config() -> LoraConfig {
    LoraConfig::new(8, Targets::new(["query", "value"])).alpha(16.0)
}

/// Gives `B` non-zero values so the adapters do real work (B = 0 at init).
fn perturb(model: &mut AdaptedModel<Lora>) {
    for (_, projection) in model.model.projections_mut() {
        for slot in projection.adapter.slots.iter_mut().flatten() {
            slot.b = burn::module::Param::from_tensor(slot.b.val().ones_like() * 0.01);
        }
    }
}

fn setup() -> (AdaptedModel<Lora>, BertInput) {
    let device = device::device(Backend::Flex).expect("flex");
    let embedder = Embedder::all_minilm_l6_v2(&device).expect("all-MiniLM-L6-v2");
    let tokenizer = embedder
        .tokenizer()
        .clone()
        .with_max_length(128)
        .with_length_policy(LengthPolicy::Truncate);
    let text = TEXT.repeat(8);
    let batch = tokenizer
        .encode_batch(&[text.as_str(); BATCH])
        .expect("tokenise");
    let input = BertInput::from_batch(&batch, embedder.model().config(), &device).expect("input");
    let mut model = AdaptedModel::<Lora>::new(embedder.into_backbone());
    for g in GROUPS {
        model.add_group(g, config()).expect("group");
    }
    perturb(&mut model);
    (model, input)
}

fn forward(c: &mut Criterion) {
    lora_bert::malloc::keep_freed_memory();
    let (mut model, input) = setup();
    let mut group = c.benchmark_group("adapter_forward");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(BATCH as u64));
    let mixed: Vec<Option<&str>> = (0..BATCH).map(|i| Some(GROUPS[i % 4])).collect();
    let routes = [
        ("base", Route::Base),
        ("1_group", model.route("ner").unwrap()),
        ("4_groups_mixed", model.route_per_example(&mixed).unwrap()),
    ];
    for (name, route) in &routes {
        group.bench_with_input(BenchmarkId::new(*name, "8x128"), route, |b, route| {
            b.iter(|| {
                black_box(
                    model
                        .forward(&input, route)
                        .unwrap()
                        .last_hidden_state
                        .into_data(),
                )
            })
        });
    }
    model.merge("ner").unwrap();
    let route = model.route("ner").unwrap();
    group.bench_function(BenchmarkId::new("1_group_merged", "8x128"), |b| {
        b.iter(|| {
            black_box(
                model
                    .forward(&input, &route)
                    .unwrap()
                    .last_hidden_state
                    .into_data(),
            )
        })
    });
    model.unmerge().unwrap();
    group.finish();
}

fn manage(c: &mut Criterion) {
    let (mut model, _) = setup();
    let mut group = c.benchmark_group("adapter_manage");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("add_and_remove_group", |b| {
        b.iter(|| {
            model.add_group("new", config()).unwrap();
            model.remove_group("new").unwrap();
        })
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lora-bert-adapters/tests/fixtures/peft/qv-last2-rslora");
    group.bench_function("load_peft_group_and_remove", |b| {
        b.iter(|| {
            model.load_group("loaded", &dir).unwrap();
            model.remove_group("loaded").unwrap();
        })
    });
    group.bench_function("switch_group", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(model.route(GROUPS[i % 4]).unwrap())
        })
    });
    group.bench_function("merge_and_unmerge", |b| {
        b.iter(|| {
            model.merge("tc").unwrap();
            model.unmerge().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, forward, manage);
criterion_main!(benches);
