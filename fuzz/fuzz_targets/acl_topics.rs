//! The ACL topic and filter checks and the client-id rules, on any topic, filter or id: a
//! device is never granted a topic outside its own serial number, the service account never
//! publishes anywhere but the plugin's control topic, and nobody else gets a grant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::acl::{Access, CONTROL_TOPIC, Decision, Subject, Topics, authorize};
use vesper_core::clientid::{self, Login};
use vesper_core::serial::SerialNumber;

const A: &str = "PV-26A18-BC02R-X7KQA";

fuzz_target!(|text: &str| {
    let topics = Topics::default();
    let a: SerialNumber = A.parse().unwrap();
    let owns_a = |sn: &SerialNumber| sn.as_str() == A;
    for access in [Access::Read, Access::Write, Access::Subscribe] {
        let device = authorize(&topics, &Subject::Device(&a), text, access);
        if device == Decision::Allow {
            assert!(text.contains(A), "device A granted {access:?} on {text:?}");
            assert!(!text.contains(['+', '#']), "device A granted a wildcard {text:?}");
        }
        let owner = authorize(&topics, &Subject::User { may_use: &owns_a }, text, access);
        if owner == Decision::Allow {
            assert!(text.contains(A) && !text.contains(['+', '#']), "owner granted {text:?}");
        }
        let service = authorize(&topics, &Subject::Service, text, access);
        if service == Decision::Allow && access == Access::Write {
            assert_eq!(text, CONTROL_TOPIC, "service publishes on {text:?}");
        }
        if service == Decision::Allow {
            assert!(!text.contains('#'), "service granted {text:?}");
        }
        assert_eq!(authorize(&topics, &Subject::Unknown, text, access), Decision::Deny);
    }
    if clientid::check(Login::Device(&a), text, "vesper-backend").is_ok() {
        assert!(text == A || text.starts_with(&format!("{A}-")), "device took {text:?}");
        assert!(text.len() <= 64);
    }
    if clientid::check(Login::User("uid-1"), text, "vesper-backend").is_ok() {
        assert!(text.starts_with("uid-1"), "user took {text:?}");
        assert!(!text.starts_with("vesper-backend") && !text.starts_with("PV-"));
    }
});
