//! The NVS CSV reader and image generator: any text is an error or an image of the asked size,
//! never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vesper_core::nvs::Version;
use vesper_core::nvs::csv::{self, Source};

fuzz_target!(|text: &str| {
    let path = Path::new("fuzz.csv");
    let _ = csv::parse(text, path);
    // `file` rows name files relative to `base`: an empty folder that does not exist.
    let base = Path::new("/nonexistent-vesper-fuzz");
    let source = Source { path, text, base };
    if let Ok(image) = csv::generate(&[source], 0x3000, Version::V2, &csv::no_files) {
        assert_eq!(image.len(), 0x3000);
    }
});
