//! End-of-line records against the repository's JSON Schema (`schemas/test-record.schema.json`),
//! judged by Python's reference `jsonschema` (pinned in tests/requirements.txt), not by the
//! product: records the product builds for passing, failing, marginal, skipped and timed-out
//! units are valid; records with a wrong outcome, a missing field or an unknown one are not.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};

use vesper::eol::plan::TestPlan;
use vesper::eol::record::{PhaseEnd, PhaseRecord, RecordMetadata, TestRecord, test_outcome};
use vesper::eol::validators::MeasuredValue;

use crate::eol_station::PLAN;
use crate::support::{python, root};

/// Which of `records` the schema accepts, as Python's jsonschema says.
pub(crate) fn valid(records: &[Value]) -> Vec<bool> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.json");
    std::fs::write(&path, serde_json::to_vec(records).unwrap()).unwrap();
    let script = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
for record in json.load(open(sys.argv[2])):
    print("valid" if validator.is_valid(record) else "invalid")
"#;
    let schema = root().join("schemas/test-record.schema.json");
    python_lines(script, &[&schema, &path])
        .iter()
        .map(|l| l == "valid")
        .collect()
}

/// The lines a Python script of the test venv prints, given `args`; it must succeed.
fn python_lines(script: &str, args: &[&std::path::Path]) -> Vec<String> {
    let out = Command::new(python())
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn record(values: &[(&str, &str)], last: PhaseEnd, skip_last: bool) -> TestRecord {
    let plan = TestPlan::parse(PLAN).unwrap();
    let values: BTreeMap<String, MeasuredValue> = values
        .iter()
        .map(|(k, v)| (k.to_string(), MeasuredValue::parse(v)))
        .collect();
    let done = PhaseEnd::Completed {
        operator_passed: true,
    };
    let mut phases: Vec<PhaseRecord> = plan.phases[..3]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let end = if i == 2 { last } else { done };
            PhaseRecord::ran(p, &values, end, 1_000 + i as i64, 1_001 + i as i64)
        })
        .collect();
    phases.push(if skip_last {
        PhaseRecord::skipped(&plan.phases[3], 1_010)
    } else {
        PhaseRecord::ran(&plan.phases[3], &values, done, 1_010, 1_012)
    });
    let outcome = test_outcome(&phases, last == PhaseEnd::TimedOut);
    let marginal =
        outcome == vesper::eol::record::TestOutcome::Pass && phases.iter().any(|p| p.marginal);
    TestRecord {
        dut_id: "BC2-2612-000001".into(),
        station_id: "bench-1/2".into(),
        start_time_millis: 1_000,
        end_time_millis: 1_012,
        outcome,
        outcome_details: vec![],
        metadata: RecordMetadata {
            test_name: plan.name.clone(),
            batch: "B-0001".into(),
            board: "bellcore-v2".into(),
            attempt: 1,
            mac: Some("24:0A:C4:00:00:01".into()),
            firmware_version: Some("1.0.0".into()),
        },
        phases,
        marginal,
    }
}

#[test]
fn every_record_the_product_writes_is_valid_and_broken_ones_are_not() {
    let done = PhaseEnd::Completed {
        operator_passed: true,
    };
    let good = [("tx_power", "19.5"), ("vbus", "5.0"), ("build", "v1.4")];
    let marginal = [("tx_power", "19.5"), ("vbus", "5.22"), ("build", "v1.4")];
    let high = [("tx_power", "19.5"), ("vbus", "5.4"), ("build", "v1.4")];
    let records = [
        record(&good, done, false),
        record(&marginal, done, false),
        record(&high, done, true),
        record(&[("tx_power", "19.5"), ("vbus", "nan")], done, true),
        record(
            &[("vbus", "5.0"), ("build", "v1.4")],
            PhaseEnd::TimedOut,
            true,
        ),
    ];
    let outcomes: Vec<String> = records
        .iter()
        .map(|r| format!("{:?}/{}", r.outcome, r.marginal))
        .collect();
    assert_eq!(
        outcomes,
        [
            "Pass/false",
            "Pass/true",
            "Fail/false",
            "Fail/false",
            "Timeout/false"
        ]
    );
    let mut json: Vec<Value> = records
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    // And three a schema must refuse.
    let mut bad_outcome = json[0].clone();
    bad_outcome["outcome"] = json!("MAYBE");
    let mut missing = json[0].clone();
    missing.as_object_mut().unwrap().remove("dut_id");
    let mut unknown = json[0].clone();
    unknown["phases"][0]["colour"] = json!("red");
    json.extend([bad_outcome, missing, unknown]);
    assert_eq!(
        valid(&json),
        [true, true, true, true, true, false, false, false]
    );
}

/// A record as a station posts it, written by hand in OpenHTF's names.
fn posted(sn: &str, start: i64, outcome: &str) -> Value {
    json!({
        "dut_id": sn, "station_id": "bench-1/2",
        "start_time_millis": start, "end_time_millis": start + 4100,
        "outcome": outcome, "outcome_details": [], "marginal": false,
        "metadata": { "test_name": "eol", "batch": "B-1", "board": "bellcore-v2", "attempt": 1 },
        "phases": [{ "name": "power", "start_time_millis": start, "end_time_millis": start + 900,
            "outcome": outcome, "marginal": false,
            "measurements": { "vbus": { "name": "vbus", "outcome": outcome, "measured_value": 5.4,
                "units": "V", "validators": ["4.75 <= x <= 5.25"], "marginal": false } } }]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backend_stores_a_record_once_and_answers_it_back() {
    let app = crate::backend_support::App::start().await;
    let (_, sns) = app.batch(2).await;
    let path = format!("/manufacturing/devices/{}/tests", sns[0]);
    let record = posted(&sns[0], 1_765_152_000_000, "FAIL");
    let first = app.post(&path, &app.technician, record.clone()).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["record"], record);
    // Posted again (a station retrying after a lost answer): the same row, 200.
    let again = app.post(&path, &app.technician, record.clone()).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let retest = posted(&sns[0], 1_765_152_060_000, "PASS");
    assert_eq!(
        app.post(&path, &app.technician, retest.clone())
            .await
            .status(),
        201
    );
    let listed: Value = app.get(&path, &app.viewer).await.json().await.unwrap();
    let records: Vec<Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["record"].clone())
        .collect();
    assert_eq!(records, [record.clone(), retest.clone()]);
    assert_eq!(valid(&records), [true, true]);
    // The station's typed client reads and writes the same.
    let client = vesper::client::ApiClient::new(&app.api, &app.technician);
    let typed: TestRecord = serde_json::from_value(retest).unwrap();
    let stored = client.record_test(&sns[0], &typed).await.unwrap();
    assert_eq!(stored.id, listed[1]["id"].as_i64().unwrap());
    let back = client.test_records(&sns[0]).await.unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[1].record, typed);
    // Refusals: a viewer may not post, a record of another unit, a malformed one, no token.
    assert_eq!(
        app.post(&path, &app.viewer, record.clone()).await.status(),
        403
    );
    let other = posted(&sns[1], 1, "PASS");
    assert_eq!(app.post(&path, &app.technician, other).await.status(), 400);
    let mut bad = record.clone();
    bad["outcome"] = json!("MAYBE");
    assert_eq!(app.post(&path, &app.technician, bad).await.status(), 400);
    assert_eq!(app.get(&path, "").await.status(), 401);
    let unknown = "/manufacturing/devices/PV-26A18-BC02R-ZZZZZ/tests";
    assert_eq!(app.get(unknown, &app.viewer).await.status(), 404);
    app.stop().await;
}

/// What Python's `junitparser` (a JUnit consumer, pinned in tests/requirements.txt) reads in a
/// JUnit file: one line per suite and per case.
fn junit_as_read(path: &std::path::Path) -> Vec<String> {
    let script = r#"
import sys
from junitparser import JUnitXml, Failure, Error, Skipped
xml = JUnitXml.fromfile(sys.argv[1])
for suite in xml:
    print(f"suite {suite.name} tests={suite.tests} failures={suite.failures} errors={suite.errors} skipped={suite.skipped}")
    for case in suite:
        results = [type(r).__name__ + ":" + (r.message or "") for r in case.result]
        print(f"case {case.classname} {case.name} {' '.join(results)}".rstrip())
"#;
    python_lines(script, &[path])
}

/// For each file, `valid` or `invalid` against `schemas/junit.xsd`, as Python's `xmlschema`
/// (pinned in tests/requirements.txt) judges.
fn junit_schema_problems(files: &[&std::path::Path]) -> Vec<String> {
    let script = r#"
import sys, xmlschema
schema = xmlschema.XMLSchema(sys.argv[1])
for path in sys.argv[2:]:
    print("valid" if schema.is_valid(path) else "invalid")
"#;
    let xsd = root().join("schemas/junit.xsd");
    let mut args: Vec<&std::path::Path> = vec![&xsd];
    args.extend_from_slice(files);
    python_lines(script, &args)
}

/// A copy of a JUnit file without its suite's `tests` count: the schema must refuse it.
fn broken_junit(good: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(good).unwrap();
    let start = text.find("<testsuite ").unwrap();
    let tests_at = start + text[start..].find(" tests=\"").unwrap();
    let end = tests_at + 1 + text[tests_at + 1..].find(' ').unwrap();
    let broken = good.with_extension("broken.xml");
    std::fs::write(&broken, format!("{}{}", &text[..tests_at], &text[end..])).unwrap();
    broken
}

#[tokio::test(flavor = "multi_thread")]
async fn vesper_report_gives_a_batch_as_junit_and_json() {
    let app = crate::backend_support::App::start().await;
    let (batch, sns) = app.batch(3).await;
    // The first unit fails and passes its retest, the second passes, the third times out.
    for (sn, start, outcome) in [
        (&sns[0], 1_765_152_000_000, "FAIL"),
        (&sns[1], 1_765_152_010_000, "PASS"),
        (&sns[2], 1_765_152_020_000, "TIMEOUT"),
        (&sns[0], 1_765_152_090_000, "PASS"),
    ] {
        let mut record = posted(sn, start, outcome);
        if outcome == "TIMEOUT" {
            record["phases"][0]["outcome"] = json!("ERROR");
            record["phases"][0]["measurements"]["vbus"] =
                json!({ "name": "vbus", "outcome": "UNSET", "validators": [], "marginal": false });
        }
        let path = format!("/manufacturing/devices/{sn}/tests");
        assert_eq!(app.post(&path, &app.technician, record).await.status(), 201);
    }
    let dir = tempfile::tempdir().unwrap();
    crate::backend_support::write_config(dir.path(), "http://127.0.0.1:9/unused-jwks");
    let config = dir.path().join("config.toml");
    let text =
        std::fs::read_to_string(&config)
            .unwrap()
            .replacen("http://127.0.0.1:8080", &app.api, 1);
    std::fs::write(&config, text).unwrap();
    let out = crate::support::vesper_env(
        dir.path(),
        &[
            "report",
            "batch",
            &batch,
            "--format",
            "junit",
            "--output",
            "report.xml",
        ],
        &[("VESPER_TOKEN", &app.viewer)],
    );
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let report_xml = dir.path().join("report.xml");
    assert_eq!(
        junit_schema_problems(&[&report_xml, &broken_junit(&report_xml)]),
        ["valid", "invalid"]
    );
    let read = junit_as_read(&report_xml);
    assert_eq!(
        read[0],
        format!("suite {batch} tests=4 failures=1 errors=1 skipped=0")
    );
    assert_eq!(
        read[1],
        format!(
            "case {} power Failure:vbus = 5.4 V, limits 4.75 <= x <= 5.25",
            sns[0]
        )
    );
    assert_eq!(read[2], format!("case {} power", sns[1]));
    assert_eq!(
        read[3],
        format!("case {} power Error:power ended with TIMEOUT", sns[2])
    );
    assert_eq!(read[4], format!("case {}#2 power", sns[0]));
    let out = crate::support::vesper_env(
        dir.path(),
        &["report", "batch", &batch],
        &[("VESPER_TOKEN", &app.viewer)],
    );
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = &report["summary"];
    assert_eq!(
        (
            &summary["units"],
            &summary["first_pass"],
            &summary["passed"],
            &summary["retests"]
        ),
        (&json!(3), &json!(1), &json!(2), &json!(1))
    );
    assert_eq!(report["records"].as_array().unwrap().len(), 4);
    assert_eq!(valid(report["records"].as_array().unwrap()), [true; 4]);
    // An unknown batch is named.
    let out = crate::support::vesper_env(
        dir.path(),
        &["report", "batch", "B-9999"],
        &[("VESPER_TOKEN", &app.viewer)],
    );
    assert!(!out.status.success());
    assert!(
        crate::support::stderr(&out).contains("B-9999"),
        "{}",
        crate::support::stderr(&out)
    );
    app.stop().await;
}
