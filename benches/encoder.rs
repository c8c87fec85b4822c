//! Encoder forward pass of all-MiniLM-L6-v2 at batch 1 × 128 and 32 × 128 tokens, on every
//! compiled CPU backend.
//!
//! ```text
//! cargo bench -p lora-bert --bench encoder
//! ```
//!
//! Inputs are real text tokenised and truncated to exactly 128 tokens, so no padding is
//! involved. Results and the PyTorch comparison live in docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lora_bert::encoder::tokenizer::LengthPolicy;
use lora_bert::{Backend, BertInput, Embedder, Route, device};

const TEXT: &str = "When the small research team finally gathered in the crowded laboratory late \
    on Friday evening, the senior scientist carefully explained why the unexpected measurements \
    from the northern observatory could not be dismissed as a simple calibration error. ";

fn forward(c: &mut Criterion) {
    lora_bert::malloc::keep_freed_memory();
    let mut group = c.benchmark_group("encoder_forward");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    let text = TEXT.repeat(8);
    for backend in Backend::compiled() {
        if backend == Backend::Wgpu {
            continue;
        }
        let device = device::device(backend).expect("CPU backend");
        let embedder = Embedder::all_minilm_l6_v2(&device).expect("all-MiniLM-L6-v2");
        let tokenizer = embedder
            .tokenizer()
            .clone()
            .with_max_length(128)
            .with_length_policy(LengthPolicy::Truncate);
        for batch_size in [1usize, 32] {
            let texts = vec![text.as_str(); batch_size];
            let batch = tokenizer.encode_batch(&texts).expect("tokenise");
            assert_eq!(batch.shape(), [batch_size, 128]);
            let input = BertInput::from_batch(&batch, embedder.model().config(), &device)
                .expect("valid input");
            group.throughput(Throughput::Elements(batch_size as u64));
            group.bench_with_input(
                BenchmarkId::new(backend.name(), format!("{batch_size}x128")),
                &input,
                |b, input| {
                    b.iter(|| {
                        let out = embedder.model().forward(input, &Route::Base).unwrap();
                        // Reading the data back forces the whole computation.
                        black_box(out.last_hidden_state.into_data());
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
