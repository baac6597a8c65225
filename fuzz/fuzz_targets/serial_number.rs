//! The serial number parser: what it accepts prints back as the same text, and has the shape
//! `PV-YYMDD-BBTTR-XXXXX`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::serial::SerialNumber;

fuzz_target!(|text: &str| {
    if let Ok(sn) = text.parse::<SerialNumber>() {
        assert_eq!(sn.as_str(), text);
        assert_eq!(text.len(), 20);
        assert!(text.starts_with("PV-"));
        assert!(text.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'));
        assert_eq!(sn.to_string().parse::<SerialNumber>().unwrap(), sn);
    }
});
