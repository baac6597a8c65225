//! An NVS partition as read back from a board (or a file someone hands the station): the
//! dump decoder and the simulated board's own NVS reader take any bytes without a panic, and a
//! dump's CSV is produced for whatever was decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::nvs::dump::{decode, to_csv};
use vesper_sim::readers::nvs::read_namespace;

fuzz_target!(|image: &[u8]| {
    let dump = decode(image);
    let _ = to_csv(&dump, "nvs");
    let _ = read_namespace(image, "vesper");
});
