//! Release manifests (`manifest.json`, `latest.json`) as the station and the backend read
//! them, ours and other tools' (ESP Web Tools): JSON to a manifest or an error, never a panic;
//! the version check takes any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::firmware::{BundleManifest, Manifest, release_version_problem};

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        let _ = release_version_problem(&manifest.version);
        let bundle = BundleManifest::from(manifest);
        assert!(bundle.app.is_some());
    }
    let _ = serde_json::from_slice::<BundleManifest>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = release_version_problem(text);
    }
});
