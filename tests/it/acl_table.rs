//! The ACL rules of DESIGN.md section 3, checked over the whole cross product of subjects,
//! topics and filters (well-formed and hostile), and mosquitto's three acc values, against an
//! oracle written independently from the table in the design.

use vesper::acl::{Access, Decision, Subject, TopicTemplate, Topics, authorize};
use vesper::serial::SerialNumber;

const A: &str = "PV-26A18-BC02R-X7KQA";
const B: &str = "PV-26L31-BP01R-ZZ234";

#[derive(Clone, Copy, Debug)]
enum Who {
    DeviceA,
    DeviceB,
    OwnerOfA,
    Stranger,
    Service,
    Unknown,
}

const EVERYONE: [Who; 6] = [
    Who::DeviceA,
    Who::DeviceB,
    Who::OwnerOfA,
    Who::Stranger,
    Who::Service,
    Who::Unknown,
];
const ACCESSES: [Access; 3] = [Access::Read, Access::Write, Access::Subscribe];

fn topics_under_test() -> Vec<String> {
    let mut t = Vec::new();
    for sn in [A, B] {
        for kind in ["data", "status", "control"] {
            t.push(format!("vesper/{sn}/{kind}"));
            t.push(format!("$share/group/vesper/{sn}/{kind}"));
            t.push(format!("/vesper/{sn}/{kind}"));
            t.push(format!("vesper/{sn}/{kind}/extra"));
            t.push(format!("vesper/{}/{kind}", sn.to_lowercase()));
            t.push(format!("Vesper/{sn}/{kind}"));
        }
        for filter in [
            "vesper/{sn}/#",
            "vesper/{sn}/+",
            "vesper/{sn}",
            "vesper/{sn}/",
            "+/{sn}/data",
            "vesper/{sn}/data/#",
            "vesper/{sn}/+/x",
        ] {
            t.push(filter.replace("{sn}", sn));
        }
    }
    for hostile in [
        "vesper/+/data",
        "vesper/+/status",
        "vesper/+/control",
        "$share/group/vesper/+/data",
        "$share//vesper/+/data",
        "$share/group",
        "vesper/#",
        "#",
        "+/+/+",
        "vesper/+/+",
        "$SYS/broker/clients",
        "vesper/../data",
        "vesper/PV-26A18-BC02R-X7KQA/../PV-26L31-BP01R-ZZ234/data",
        "vesper/PV-26A18-BC02R-X7KQA/data\0",
        "vesper/PV-26A18-BC02R-X7KQA\0/data",
        "vesper/PV-26B30-BC02R-X7KQA/data",
        "vesper/PV-26A18-BC02R-X7KQ/data",
        "vesper/#/data",
        "vesper/PV-26A18-BC02R-X7KQA+/data",
        "",
        "/",
        "vesper//data",
        "$CONTROL/vesper/v1",
        "$CONTROL/vesper/v1/x",
        "$CONTROL/vesper/v2",
        "$CONTROL/#",
        "$CONTROL/+/v1",
        "$share/group/$CONTROL/vesper/v1",
    ] {
        t.push(hostile.to_owned());
    }
    t.push(format!("vesper/{A}/data/{}", "x".repeat(2000)));
    t.push(format!("{}/vesper/{A}/data", "a/".repeat(600)));
    t
}

/// The design's table, read literally: exact topics only (a wildcard filter always matches some
/// topic outside a device's or user's grant); the service reads data and status of any device,
/// with `+` allowed in the SN level when subscribing.
fn oracle(who: Who, topic: &str, access: Access) -> bool {
    // Only the service account publishes on the plugin's control topic; nobody reads it.
    if topic == "$CONTROL/vesper/v1" {
        return matches!(who, Who::Service) && access == Access::Write;
    }
    let topic = match access {
        Access::Subscribe => match topic.strip_prefix("$share/") {
            Some(rest) => match rest.split_once('/') {
                Some((group, inner)) if !group.is_empty() && !inner.is_empty() => inner,
                _ => return false,
            },
            None => topic,
        },
        _ => topic,
    };
    let levels: Vec<&str> = topic.split('/').collect();
    let [prefix, sn, kind] = levels[..] else {
        return false;
    };
    if prefix != "vesper" || !["data", "status", "control"].contains(&kind) {
        return false;
    }
    let reading = matches!(access, Access::Read | Access::Subscribe);
    let device_topic = matches!(kind, "data" | "status");
    match who {
        Who::DeviceA | Who::DeviceB => {
            let me = if matches!(who, Who::DeviceA) { A } else { B };
            sn == me
                && if reading {
                    kind == "control"
                } else {
                    device_topic
                }
        }
        Who::OwnerOfA => {
            sn == A
                && if reading {
                    device_topic
                } else {
                    kind == "control"
                }
        }
        Who::Service => {
            let any_device =
                sn.parse::<SerialNumber>().is_ok() || (sn == "+" && access == Access::Subscribe);
            reading && device_topic && any_device
        }
        Who::Stranger | Who::Unknown => false,
    }
}

fn ask(topics: &Topics, who: Who, topic: &str, access: Access) -> bool {
    let (a, b): (SerialNumber, SerialNumber) = (A.parse().unwrap(), B.parse().unwrap());
    let owns_a = |sn: &SerialNumber| sn.as_str() == A;
    let owns_nothing = |_: &SerialNumber| false;
    let subject = match who {
        Who::DeviceA => Subject::Device(&a),
        Who::DeviceB => Subject::Device(&b),
        Who::OwnerOfA => Subject::User { may_use: &owns_a },
        Who::Stranger => Subject::User {
            may_use: &owns_nothing,
        },
        Who::Service => Subject::Service,
        Who::Unknown => Subject::Unknown,
    };
    authorize(topics, &subject, topic, access) == Decision::Allow
}

#[test]
fn every_subject_topic_and_access_matches_the_design_table() {
    let topics = Topics::default();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for topic in topics_under_test() {
        for who in EVERYONE {
            for access in ACCESSES {
                let expected = oracle(who, &topic, access);
                if ask(&topics, who, &topic, access) != expected {
                    mismatches.push(format!(
                        "{who:?} {access:?} {topic:?}: expected {}",
                        if expected { "allow" } else { "deny" }
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(checked > 1000);
}

#[test]
fn the_design_table_row_by_row() {
    let t = Topics::default();
    let data = format!("vesper/{A}/data");
    let status = format!("vesper/{A}/status");
    let control = format!("vesper/{A}/control");
    // device SN: publish data and status, subscribe and receive control
    assert!(ask(&t, Who::DeviceA, &data, Access::Write));
    assert!(ask(&t, Who::DeviceA, &status, Access::Write));
    assert!(ask(&t, Who::DeviceA, &control, Access::Subscribe));
    assert!(ask(&t, Who::DeviceA, &control, Access::Read));
    assert!(!ask(&t, Who::DeviceA, &control, Access::Write));
    assert!(!ask(&t, Who::DeviceA, &data, Access::Subscribe));
    // owner: publish control, subscribe and receive data and status
    assert!(ask(&t, Who::OwnerOfA, &control, Access::Write));
    assert!(ask(&t, Who::OwnerOfA, &data, Access::Subscribe));
    assert!(ask(&t, Who::OwnerOfA, &status, Access::Read));
    assert!(!ask(&t, Who::OwnerOfA, &data, Access::Write));
    // another device or a non-owner: nothing
    assert!(!ask(&t, Who::DeviceB, &data, Access::Write));
    assert!(!ask(&t, Who::DeviceB, &control, Access::Subscribe));
    assert!(!ask(&t, Who::Stranger, &data, Access::Subscribe));
    // wildcards in the SN level, and `#` under a device, are refused for devices and users
    assert!(!ask(&t, Who::DeviceA, "vesper/+/data", Access::Subscribe));
    assert!(!ask(&t, Who::DeviceA, "vesper/#", Access::Subscribe));
    assert!(!ask(
        &t,
        Who::OwnerOfA,
        &format!("vesper/{A}/#"),
        Access::Subscribe
    ));
    // the service account reads all data
    assert!(ask(&t, Who::Service, "vesper/+/data", Access::Subscribe));
    assert!(ask(&t, Who::Service, &data, Access::Read));
    assert!(!ask(&t, Who::Service, &control, Access::Write));
    assert!(!ask(&t, Who::Service, "vesper/#", Access::Subscribe));
    assert!(ask(
        &t,
        Who::Service,
        "$share/vesper-backend/vesper/+/status",
        Access::Subscribe
    ));
    // ... and publishes only the plugin's kick/forget commands
    assert!(ask(&t, Who::Service, "$CONTROL/vesper/v1", Access::Write));
    assert!(!ask(
        &t,
        Who::Service,
        "$CONTROL/vesper/v1",
        Access::Subscribe
    ));
    assert!(!ask(&t, Who::DeviceA, "$CONTROL/vesper/v1", Access::Write));
    assert!(!ask(&t, Who::OwnerOfA, "$CONTROL/vesper/v1", Access::Write));
}

#[test]
fn templates_with_the_seeds_leading_slash_work() {
    let t = |s: &str| TopicTemplate::try_from(s.to_owned()).unwrap();
    let topics = Topics {
        data: t("/vesper/{sn}/data"),
        status: t("/vesper/{sn}/status"),
        control: t("/vesper/{sn}/control"),
    };
    assert!(ask(
        &topics,
        Who::DeviceA,
        &format!("/vesper/{A}/data"),
        Access::Write
    ));
    assert!(!ask(
        &topics,
        Who::DeviceA,
        &format!("vesper/{A}/data"),
        Access::Write
    ));
    assert!(ask(
        &topics,
        Who::Service,
        "/vesper/+/data",
        Access::Subscribe
    ));
    assert!(ask(
        &topics,
        Who::OwnerOfA,
        &format!("/vesper/{A}/control"),
        Access::Write
    ));
}

#[test]
fn acc_numbers_map_to_mosquittos_meaning() {
    assert_eq!(Access::from_acc(1), Some(Access::Read));
    assert_eq!(Access::from_acc(2), Some(Access::Write));
    assert_eq!(Access::from_acc(4), Some(Access::Subscribe));
    for other in [0, 3, 5, 8, -1, 1 << 40] {
        assert_eq!(Access::from_acc(other), None, "acc {other}");
    }
}
