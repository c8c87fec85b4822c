//! One LoRA fine-tuning step of a text classifier on all-MiniLM-L6-v2, 16 × 128 tokens, on
//! every compiled CPU backend.
//!
//! ```text
//! cargo bench -p lora-bert --bench train_step
//! ```
//!
//! The step is the library's own: `Trainer::fit` for one step (forward, cross-entropy,
//! backward, gradient clipping at 1, AdamW) of LoRA r8/alpha 16 on query/value of every layer
//! with a linear head over mean-pooled states, dropout 0.1; the backbone stays frozen. The same
//! step is timed against PyTorch + PEFT by `scripts/bench_side_by_side.sh` (docs/benchmarks.md).

use std::time::Duration;

use burn::tensor::{Int, Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lora_bert::adapters::{LoraConfig, Targets};
use lora_bert::encoder::tokenizer::LengthPolicy;
use lora_bert::train::loss::cross_entropy;
use lora_bert::train::{
    AppSetup, CrossEntropy, FineTuneMode, SequenceClassificationHeadConfig, TextClassifier,
    TrainConfig, Trainer,
};
use lora_bert::{Backend, BertInput, Embedder, device};

const TEXT: &str = "When the small research team finally gathered in the crowded laboratory late \
    on Friday evening, the senior scientist carefully explained why the unexpected measurements \
    from the northern observatory could not be dismissed as a simple calibration error. ";

fn train_step(c: &mut Criterion) {
    lora_bert::malloc::keep_freed_memory();
    let mut group = c.benchmark_group("lora_train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(5))
        .measurement_time(Duration::from_secs(30));
    let (rows, tokens) = (16usize, 128usize);
    for backend in Backend::compiled() {
        if backend == Backend::Wgpu {
            continue;
        }
        let device = device::autodiff(device::device(backend).expect("CPU backend"));
        let embedder = Embedder::all_minilm_l6_v2(&device).expect("all-MiniLM-L6-v2");
        let tokenizer = embedder
            .tokenizer()
            .clone()
            .with_max_length(tokens)
            .with_length_policy(LengthPolicy::Truncate);
        let text = TEXT.repeat(8);
        let batch = tokenizer
            .encode_batch(&vec![text.as_str(); rows])
            .expect("tokenise");
        assert_eq!(batch.shape(), [rows, tokens]);
        let input =
            BertInput::from_batch(&batch, embedder.model().config(), &device).expect("valid input");
        let labels: Vec<i64> = (0..rows as i64).map(|i| i % 2).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [rows]), &device);
        let lora = LoraConfig::new(8, Targets::new(["query", "value"])).alpha(16.0);
        let setup = AppSetup::new("bench", FineTuneMode::LoraHead).with_lora(lora);
        let head = SequenceClassificationHeadConfig::new(embedder.model().config().hidden_size, 2)
            .with_dropout(0.1);
        let mut classifier =
            Some(TextClassifier::new(embedder.model().clone(), &setup, &head).expect("classifier"));
        let route = classifier.as_ref().unwrap().route().expect("route");
        let mut config = TrainConfig::new(1);
        config.learning_rate = 3e-3;
        let trainer = Trainer::new(config);
        let ce = CrossEntropy::default();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(
            BenchmarkId::new(backend.name(), format!("{rows}x{tokens}")),
            |b| {
                b.iter(|| {
                    // Each step trains the model the previous one returned.
                    let (model, _) = trainer
                        .fit(
                            classifier.take().unwrap(),
                            [()],
                            |m: &TextClassifier, ()| {
                                cross_entropy(m.forward(&input, &route)?, labels.clone(), &ce)
                            },
                            |_| Ok(0.0),
                        )
                        .expect("one step");
                    classifier = Some(model);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
