//! Application images (what `vesper firmware publish` and a board's bootloader read): the
//! `esp_app_desc_t` reader and the simulated board's image check take any bytes without a
//! panic; a description read has the fields' bounded lengths (32 bytes each).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::firmware::app_description;
use vesper_sim::readers::app_image::read_version;

fuzz_target!(|image: &[u8]| {
    if let Some(desc) = app_description(image) {
        assert!(desc.version.len() <= 32 && desc.project_name.len() <= 32, "{desc:?}");
    }
    let _ = read_version(image);
});
