//! The configuration parser on any text: a configuration or an error that names the key, never
//! a panic. The partition tables it may reference are the repository's, served from memory.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vesper_core::config::{Config, EXAMPLE_TABLES, Machine};

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    EXAMPLE_TABLES
        .iter()
        .find(|(name, _)| Path::new("/fuzz").join(name) == path)
        .map(|(_, text)| text.as_bytes().to_vec())
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
}

fuzz_target!(|text: &str| {
    let machine = Machine {
        station_name: "fuzz".into(),
        firmware_cache: "/fuzz/cache".into(),
    };
    let _ = Config::parse(text, Path::new("/fuzz/config.toml"), &read, &machine);
});
