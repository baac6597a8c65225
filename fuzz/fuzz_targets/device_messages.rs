//! What devices publish, as the backend's heartbeat listener reads it (heartbeat and status
//! JSON on any topic): a sighting, nothing, or an error; never a panic. A sighting names a
//! device whose topic it came from, and its firmware version is bounded and printable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::acl::Topics;
use vesper_core::sightings::read;

const TOPICS: [&str; 4] = [
    "vesper/PV-26A18-BC02R-X7KQA/data",
    "vesper/PV-26A18-BC02R-X7KQA/status",
    "vesper/PV-26A18-BC02R-X7KQA/control",
    "vesper/not-a-serial/data",
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, payload)) = data.split_first() else {
        return;
    };
    let topic = TOPICS[usize::from(first) % TOPICS.len()];
    if let Ok(Some(sighting)) = read(&Topics::default(), topic, payload, "now") {
        assert_eq!(sighting.serial_number, "PV-26A18-BC02R-X7KQA");
        assert!(!sighting.heartbeat || topic.ends_with("/data"));
        if let Some(fw) = &sighting.firmware {
            assert!(fw.len() <= 64 && !fw.chars().any(char::is_control), "{fw:?}");
        }
    }
});
