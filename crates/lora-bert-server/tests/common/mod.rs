//! Apps on the real all-MiniLM-L6-v2 for the server's tests and load generator: LoRA groups
//! with random (non-zero) weights, so that every app computes something of its own and a row
//! routed through the wrong group gives another answer, and fresh heads.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lora_bert::adapters::{AdaptedModel, Layers, Lora, LoraConfig, Targets};
use lora_bert::assets::{self, AssetCache, ModelFiles};
use lora_bert::data::LabelVocab;
use lora_bert::encoder::tokenizer::BertTokenizer;
use lora_bert::runtime::Runtime;
use lora_bert::train::{
    AppSetup, FineTuneMode, SequenceClassificationHeadConfig, TextClassifier,
    TokenClassificationHeadConfig, TokenClassifier,
};
use lora_bert::{Backend, BertModel, Device, device};
use lora_bert_server::{RunningServer, Server, ServerConfig};
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

pub fn cpu() -> Device {
    device::device(Backend::default_cpu().expect("a CPU backend")).expect("cpu device")
}

pub fn minilm() -> ModelFiles {
    assets::all_minilm_l6_v2(&AssetCache::from_env().expect("asset cache"))
        .expect("all-MiniLM-L6-v2")
}

pub fn tokenizer() -> BertTokenizer {
    BertTokenizer::from_file(minilm().tokenizer).expect("tokenizer")
}

/// Adds seeded noise of scale `scale` to every tensor of the app's adapter file.
fn perturb(dir: &Path, seed: u32, scale: f32) {
    let path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&path).expect("adapter file");
    let file = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        let values: Vec<u8> = view
            .data()
            .chunks_exact(4)
            .flat_map(|b| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                (f32::from_le_bytes([b[0], b[1], b[2], b[3]]) + scale * noise).to_le_bytes()
            })
            .collect();
        tensors.push((name, view.shape().to_vec(), values));
    }
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.as_str(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), v).expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).expect("write adapter");
}

/// `n_ner` entity taggers (`ner0`, ...) and `n_clf` text classifiers (`clf0`, ...), saved
/// under `root`. Returns (name, directory) of each.
pub fn make_apps(root: &Path, n_ner: usize, n_clf: usize) -> Vec<(String, PathBuf)> {
    let device = cpu();
    let files = minilm();
    let backbone =
        || AdaptedModel::<Lora>::new(BertModel::load(&files.dir, &device).expect("backbone").0);
    let bio = LabelVocab::new(
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
            .map(String::from)
            .to_vec(),
    )
    .expect("labels");
    let sentiment = LabelVocab::new(vec!["negative".into(), "neutral".into(), "positive".into()])
        .expect("labels");
    let lora = LoraConfig::new(8, Targets::new(["query", "value"]).layers(Layers::All));
    let mut apps = Vec::new();
    for i in 0..n_ner.max(n_clf) {
        if i < n_ner {
            let name = format!("ner{i}");
            device.seed(100 + i as u64);
            let setup = AppSetup::new(&name, FineTuneMode::LoraHead).with_lora(lora.clone());
            let path = root.join(&name);
            TokenClassifier::new(
                backbone(),
                &setup,
                &TokenClassificationHeadConfig::new(384, bio.len()),
            )
            .expect("tagger")
            .save(&path, &bio)
            .expect("save tagger");
            perturb(&path, 100 + i as u32, 0.2);
            apps.push((name, path));
        }
        if i < n_clf {
            let name = format!("clf{i}");
            device.seed(200 + i as u64);
            let setup = AppSetup::new(&name, FineTuneMode::LoraHead).with_lora(lora.clone());
            let path = root.join(&name);
            TextClassifier::new(
                backbone(),
                &setup,
                &SequenceClassificationHeadConfig::new(384, sentiment.len()),
            )
            .expect("classifier")
            .save(&path, &sentiment)
            .expect("save classifier");
            perturb(&path, 200 + i as u32, 0.2);
            apps.push((name, path));
        }
    }
    apps
}

/// A runtime on all-MiniLM-L6-v2 and a server on it with `apps` registered, serving on a
/// free loopback port. The runtime is returned too: the library's pipelines on it give the
/// answers the server must give.
pub fn start(apps: &[(String, PathBuf)], config: ServerConfig) -> (Arc<Runtime>, RunningServer) {
    let device = cpu();
    let files = minilm();
    let runtime = Arc::new(Runtime::load(&files.dir, &device).expect("runtime"));
    let server =
        Server::new(runtime.clone(), tokenizer(), config, "all-MiniLM-L6-v2").expect("server");
    for (name, dir) in apps {
        server.register(name, dir).expect("register");
    }
    let running = server
        .spawn("127.0.0.1:0".parse().expect("address"))
        .expect("spawn");
    (runtime, running)
}

/// Texts of 10 to 40 words, with multi-byte characters and names.
pub const SHORT: &[&str] = &[
    "Going to see Coldplay in London tonight with Anna and José!",
    "Zoë flew from Zürich to São Paulo on Monday to meet the Müller family.",
    "The film was a gripping, beautifully shot story about two brothers in Chicago.",
    "I waited forty minutes for customer support and nobody answered my call, again.",
    "Apple and Microsoft reported higher profits as cloud revenue grew in Europe and Asia.",
    "Dr. Smith told the committee in Washington that the new vaccine was safe and effective.",
    "Worst pizza I have ever had; the crust was soggy and the cheese tasted like plastic.",
    "Barack Obama met Angela Merkel in Berlin to discuss trade, climate and security.",
    "Tomorrow the weather in Paris will be sunny in the morning with rain in the evening 🙂",
    "Our team from Nairobi won the regional robotics contest held at the University of Lagos.",
    "The new update broke everything: my phone restarts every hour and the battery drains.",
    "Lionel Messi scored twice as Inter Miami beat Orlando City 3-1 on Saturday night.",
];

/// A text of `words` words (sentences of [`SHORT`] repeated).
pub fn long_text(words: usize) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < words {
        out.extend(SHORT[i % SHORT.len()].split_whitespace());
        i += 1;
    }
    out.truncate(words);
    out.join(" ")
}
