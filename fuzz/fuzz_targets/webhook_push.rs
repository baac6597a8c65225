//! The deploy webhook's push event body (after its signature is checked): a push or a reason,
//! never a panic; a push's commit is a hex id of at most 64 digits and its names are bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::model::read_push;

fuzz_target!(|body: &[u8]| {
    if let Ok(push) = read_push(body, "delivery-1") {
        assert!(!push.commit.is_empty() && push.commit.len() <= 64);
        assert!(push.commit.bytes().all(|b| b.is_ascii_hexdigit()));
        for name in [&push.repository, &push.pusher].into_iter().flatten() {
            assert!(name.chars().count() <= 200);
        }
        assert_eq!(push.body_sha256.len(), 64);
    }
});
