//! The configuration loader on any text: a configuration or an error that names the key, never
//! a panic. The partition tables it may reference are the repository's, copied once.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vesper::config::{Config, EXAMPLE_TABLES};

fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        for (path, text) in EXAMPLE_TABLES {
            let target = dir.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, text).unwrap();
        }
        dir
    })
}

fuzz_target!(|text: &str| {
    let _ = Config::parse(text, &folder().join("config.toml"));
});
