//! Checks one backend against another on a model shaped like all-MiniLM-L6-v2 (random
//! weights, so no download), with LoRA adapter groups, and times the forward pass.
//!
//! ```text
//! cargo run --release --features lora-bert/wgpu --example backend_check -- \
//!     [--backend wgpu] [--reference flex] [--batch 32] [--seq 128] [--iters 20]
//! ```
//!
//! The model is built on the reference backend, saved as safetensors (backbone) and in
//! PEFT's layout (two LoRA groups), and loaded on both backends through the same files. For
//! the plain backbone, one group, a batch mixing both groups and a merged group it prints the
//! largest difference between the backends, then the median forward time on each. Use it to
//! qualify a GPU (or a driver) before serving on it.

#[path = "common/args.rs"]
mod args;

use std::time::{Duration, Instant};

use clap::Parser;
use lora_bert::adapters::{AdaptedModel, Layers, Lora, LoraConfig, Targets};
use lora_bert::{Backend, BertConfig, BertInput, BertModel, Device, Route, device};

/// Checks one backend against another on a model shaped like all-MiniLM-L6-v2 (random
/// weights, so no download), with LoRA adapter groups, and times the forward pass.
#[derive(Parser)]
// An option's value is the word after it, even when that word starts with `-`.
#[command(
    name = "backend_check",
    args_override_self = true,
    allow_hyphen_values = true
)]
struct Cli {
    /// The backend checked (ndarray, flex, wgpu)
    #[arg(long, value_name = "NAME", default_value = "wgpu")]
    backend: Backend,
    /// The backend it is compared with (default: flex, or ndarray when flex is not compiled in)
    #[arg(long, value_name = "NAME")]
    reference: Option<Backend>,
    /// Rows per batch (at least 1)
    #[arg(long, value_name = "N", default_value_t = 32)]
    batch: usize,
    /// Tokens per row (at least 4)
    #[arg(long, value_name = "N", default_value_t = 128)]
    seq: usize,
    /// Timed forward passes per route on the checked backend (at most 5 on the reference)
    #[arg(long, value_name = "N", default_value_t = 20)]
    iters: usize,
}

struct Args {
    backend: Backend,
    reference: Backend,
    batch: usize,
    seq: usize,
    iters: usize,
}

impl Cli {
    fn into_args(self) -> Result<Args, String> {
        let a = Args {
            backend: self.backend,
            reference: match self.reference {
                Some(reference) => reference,
                None => Backend::default_cpu().map_err(|e| e.to_string())?,
            },
            batch: self.batch,
            seq: self.seq,
            iters: self.iters.max(1),
        };
        if a.batch == 0 || a.seq < 4 {
            return Err("--batch must be at least 1 and --seq at least 4".into());
        }
        Ok(a)
    }
}

/// all-MiniLM-L6-v2's shape.
fn minilm_config() -> BertConfig {
    serde_json::from_str(
        r#"{"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512,
            "hidden_act": "gelu", "layer_norm_eps": 1e-12, "type_vocab_size": 2}"#,
    )
    .expect("config")
}

/// Deterministic ids; every other example has its second half padded.
fn input(batch: usize, seq: usize, config: &BertConfig, device: &Device) -> BertInput {
    let mut ids = Vec::with_capacity(batch * seq);
    let mut mask = Vec::with_capacity(batch * seq);
    for i in 0..batch {
        for j in 0..seq {
            let pad = i % 2 == 1 && j >= seq / 2;
            let id = match j {
                0 => 101,
                _ if j == seq - 1 || (i % 2 == 1 && j == seq / 2 - 1) => 102,
                _ => 1000 + ((i * 7919 + j * 104_729) % 28_000) as u32,
            };
            ids.push(if pad { 0 } else { id });
            mask.push(u32::from(!pad));
        }
    }
    let types = vec![0; ids.len()];
    BertInput::from_ids(&ids, &types, &mask, [batch, seq], config, device).expect("valid ids")
}

fn adapted(
    dir: &std::path::Path,
    device: &Device,
) -> Result<AdaptedModel<Lora>, Box<dyn std::error::Error>> {
    let (backbone, _) = BertModel::load(dir.join("backbone"), device)?;
    let mut model = AdaptedModel::<Lora>::new(backbone);
    model.load_group("ner", dir.join("ner"))?;
    model.load_group("tc", dir.join("tc"))?;
    Ok(model)
}

fn hidden(
    model: &AdaptedModel<Lora>,
    input: &BertInput,
    route: &Route,
) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let out = model.forward(input, route)?;
    Ok(out
        .last_hidden_state
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| format!("{e:?}"))?)
}

fn median_time(
    model: &AdaptedModel<Lora>,
    input: &BertInput,
    route: &Route,
    iters: usize,
) -> Result<Duration, Box<dyn std::error::Error>> {
    for _ in 0..2 {
        hidden(model, input, route)?;
    }
    let mut times: Vec<Duration> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            hidden(model, input, route).map(|_| start.elapsed())
        })
        .collect::<Result<_, _>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}

fn main() -> std::process::ExitCode {
    args::exit(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let args = cli.into_args()?;
    let reference = device::device(args.reference)?;
    let target = device::device(args.backend)?;
    let tmp = std::env::temp_dir().join(format!("lora-bert-backend-check-{}", std::process::id()));

    // Build on the reference backend and write everything to files.
    let mut model = AdaptedModel::<Lora>::new(BertModel::init(&minilm_config(), true, &reference));
    let last2 = Targets::new(["query", "value"]).layers(Layers::Last(2));
    model.add_group("ner", LoraConfig::new(8, last2).alpha(16.0))?;
    model.add_group(
        "tc",
        LoraConfig::new(8, Targets::new(["dense"])).alpha(16.0),
    )?;
    for (_, projection) in model.model.projections_mut() {
        for slot in projection.adapter.slots.iter_mut().flatten() {
            slot.b = burn::module::Param::from_tensor(slot.b.val().ones_like() * 0.02);
        }
    }
    model.model.save(tmp.join("backbone"))?;
    model.save_group("ner", tmp.join("ner"))?;
    model.save_group("tc", tmp.join("tc"))?;
    drop(model);

    let mut on_ref = adapted(&tmp, &reference)?;
    let mut on_target = adapted(&tmp, &target)?;
    let config = minilm_config();
    let x_ref = input(args.batch, args.seq, &config, &reference);
    let x_target = input(args.batch, args.seq, &config, &target);
    let mixed: Vec<Option<&str>> = (0..args.batch)
        .map(|i| Some(["ner", "tc"][i % 2]))
        .collect();
    let routes = [
        ("plain backbone", Route::Base),
        ("group ner", on_ref.route("ner")?),
        ("ner/tc mixed", on_ref.route_per_example(&mixed)?),
    ];
    println!(
        "{} vs {} on a random all-MiniLM-L6-v2-shaped model, batch {} x {} tokens",
        args.backend, args.reference, args.batch, args.seq
    );
    let mut worst = 0f32;
    let report = |name: &str, a: &[f32], b: &[f32], worst: &mut f32| {
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        *worst = worst.max(d);
        println!(
            "  max |{} - {}| {name:<16} {d:.2e}",
            args.backend, args.reference
        );
    };
    for (name, route) in &routes {
        report(
            name,
            &hidden(&on_target, &x_target, route)?,
            &hidden(&on_ref, &x_ref, route)?,
            &mut worst,
        );
    }
    on_ref.merge("tc")?;
    on_target.merge("tc")?;
    let tc = on_ref.route("tc")?;
    report(
        "tc merged",
        &hidden(&on_target, &x_target, &tc)?,
        &hidden(&on_ref, &x_ref, &tc)?,
        &mut worst,
    );
    on_ref.unmerge()?;
    on_target.unmerge()?;

    for (name, route) in &routes {
        let t = median_time(&on_target, &x_target, route, args.iters)?;
        let r = median_time(&on_ref, &x_ref, route, args.iters.min(5))?;
        println!(
            "  forward {name:<16} {}: {:>9.2?}   {}: {:>9.2?}   ({:.1}x)",
            args.backend,
            t,
            args.reference,
            r,
            r.as_secs_f64() / t.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if worst > 1e-3 {
        return Err(format!("backends disagree by {worst:.2e} (more than 1e-3)").into());
    }
    println!("ok: largest difference {worst:.2e}");
    Ok(())
}
