//! Cache folder resolution from the environment. Environment variables are process-wide, so
//! this file holds a single test.

use std::path::Path;

use lora_bert_assets::{AssetCache, AssetError};

fn set(name: &str, value: Option<&str>) {
    // SAFETY: the only test of this binary; no other thread reads the environment meanwhile.
    unsafe {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
}

#[test]
fn from_env_follows_lora_bert_cache_then_xdg_then_home() {
    set("LORA_BERT_CACHE", Some("/explicit/cache"));
    set("XDG_CACHE_HOME", Some("/xdg"));
    set("HOME", Some("/home/someone"));
    assert_eq!(
        AssetCache::from_env().unwrap().root(),
        Path::new("/explicit/cache")
    );

    set("LORA_BERT_CACHE", Some(""));
    assert_eq!(
        AssetCache::from_env().unwrap().root(),
        Path::new("/xdg/lora-bert")
    );

    set("LORA_BERT_CACHE", None);
    set("XDG_CACHE_HOME", Some("relative/xdg"));
    assert_eq!(
        AssetCache::from_env().unwrap().root(),
        Path::new("/home/someone/.cache/lora-bert")
    );

    set("XDG_CACHE_HOME", None);
    assert_eq!(
        AssetCache::from_env().unwrap().root(),
        Path::new("/home/someone/.cache/lora-bert")
    );

    set("HOME", None);
    let err = AssetCache::from_env().unwrap_err();
    assert!(matches!(err, AssetError::NoCacheDir), "{err:?}");
    assert!(err.to_string().contains("LORA_BERT_CACHE"), "{err}");
    let err = lora_bert_assets::default_model().unwrap_err();
    assert!(matches!(err, AssetError::NoCacheDir), "{err:?}");
}
