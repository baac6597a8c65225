//! Reading what devices publish (DESIGN.md section 3): which device a data or status topic
//! names, and what its JSON payload says (a heartbeat, the firmware version). Every byte here
//! comes from a device, so nothing is trusted: a payload that is not a JSON object is an error,
//! fields of the wrong type are refused, and the version is bounded. The backend's heartbeat
//! listener applies what this reads; `fuzz/fuzz_targets/device_messages.rs` feeds it anything.

use serde::Deserialize;

use crate::acl::{SN_PLACEHOLDER, TopicTemplate, Topics};
use crate::model::Sighting;
use crate::serial::SerialNumber;

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
    fw: Option<String>,
}

/// The serial number in `topic` if it matches `template` (SN level parsed, other levels equal).
fn device_of(template: &TopicTemplate, topic: &str) -> Option<SerialNumber> {
    let text = template.to_string();
    let t: Vec<&str> = text.split('/').collect();
    let levels: Vec<&str> = topic.split('/').collect();
    if t.len() != levels.len() {
        return None;
    }
    let mut sn = None;
    for (pattern, level) in t.iter().zip(&levels) {
        if *pattern == SN_PLACEHOLDER {
            sn = Some(level.parse().ok()?);
        } else if pattern != level {
            return None;
        }
    }
    sn
}

/// Reads one message: `Ok(None)` for topics that are not a device's data or status,
/// `Err` for a malformed payload (logged and ignored by the caller). The firmware version is
/// kept only when it is at most 64 characters without control characters.
pub fn read(
    topics: &Topics,
    topic: &str,
    payload: &[u8],
    at: &str,
) -> Result<Option<Sighting>, String> {
    let (sn, is_data) = match (
        device_of(&topics.data, topic),
        device_of(&topics.status, topic),
    ) {
        (Some(sn), _) => (sn, true),
        (None, Some(sn)) => (sn, false),
        (None, None) => return Ok(None),
    };
    let body: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("{topic}: payload is not a JSON object: {e}"))?;
    let heartbeat = is_data && body.kind.as_deref() == Some("heartbeat");
    let firmware = body
        .fw
        .filter(|f| !f.is_empty() && f.len() <= 64 && !f.chars().any(char::is_control));
    Ok(Some(Sighting {
        serial_number: sn.as_str().to_owned(),
        at: at.to_owned(),
        heartbeat,
        firmware,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SN: &str = "PV-26A18-BC02R-X7KQA";

    #[test]
    fn heartbeats_and_other_messages() {
        let t = Topics::default();
        let hb = read(
            &t,
            &format!("vesper/{SN}/data"),
            br#"{"type":"heartbeat","fw":"1.0.1","rssi":-60}"#,
            "now",
        )
        .unwrap()
        .unwrap();
        assert!(hb.heartbeat);
        assert_eq!(
            (hb.serial_number.as_str(), hb.firmware.as_deref()),
            (SN, Some("1.0.1"))
        );
        let reading = read(
            &t,
            &format!("vesper/{SN}/data"),
            br#"{"type":"reading","t":21.5}"#,
            "now",
        )
        .unwrap()
        .unwrap();
        assert!(!reading.heartbeat);
        let status = read(
            &t,
            &format!("vesper/{SN}/status"),
            br#"{"type":"heartbeat"}"#,
            "now",
        )
        .unwrap()
        .unwrap();
        assert!(!status.heartbeat, "only the data topic provisions");
        assert_eq!(
            read(&t, &format!("vesper/{SN}/control"), b"{}", "now"),
            Ok(None)
        );
        assert_eq!(read(&t, "vesper/not-a-serial/data", b"{}", "now"), Ok(None));
        assert_eq!(
            read(&t, &format!("vesper/{SN}/data/extra"), b"{}", "now"),
            Ok(None)
        );
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"\"heartbeat\"",
            b"",
            br#"{"type":5}"#,
        ] {
            assert!(
                read(&t, &format!("vesper/{SN}/data"), bad, "now").is_err(),
                "{bad:?}"
            );
        }
    }
}
