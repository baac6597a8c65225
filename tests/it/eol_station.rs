//! The end-of-line test step on a real pseudo-terminal: the station's runner
//! (`vesper::station::eol::run_plan`) talks to a simulated board flashed with `factory_test` = 1
//! in its NVS, which answers `vesper test PHASE` as the firmware's factory mode does
//! (`vesper_sim::factory`, its own reader). Boards with known measurements give exactly the
//! expected outcomes; a failed `on_fail = "stop"` phase skips the rest; a hanging phase is a
//! TIMEOUT within its `timeout_s`; every record is valid against the schema (Python's jsonschema).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use vesper::eol::plan::TestPlan;
use vesper::eol::record::{MeasurementOutcome, PhaseOutcome, TestOutcome, TestRecord};
use vesper::flashing::{self, ConsoleSession, FlashPlan};
use vesper::nvs::Value;
use vesper::sim::{FactoryScript, SimBoard, SimConfig, SimEvent};
use vesper::station::eol::{Answer, Operator, Seen, TestEvent, Unit, run_plan};

use crate::broker::free_port;
use crate::eol_records::valid;
use crate::flashing::{SECRET, fixture, pty_options};

/// The plan both end-of-line integration tests use.
pub(crate) const PLAN: &str = r#"
name = "bellcore-v2 end-of-line"
[[phases]]
name = "identity"
builtin = "identity"
[[phases]]
name = "power"
command = true
timeout_s = 5
measurements = [
  { name = "vbus", units = "V", in_range = { min = 4.75, max = 5.25, marginal_max = 5.2 } },
  { name = "build", matches_regex = "^v1\\." },
]
[[phases]]
name = "radio"
command = true
timeout_s = 1.5
measurements = [{ name = "tx_power", units = "dBm", within_percent = { expected = 20, percent = 10 } }]
[[phases]]
name = "label"
prompt = "Scan the label"
scan_equals = "{sn}"
"#;

/// Answers every prompt with the scanned serial number it was given.
struct Scanner(String);

impl Operator for Scanner {
    fn answer(&mut self, _phase: &str, _prompt: &str, scan: bool) -> Answer {
        if scan {
            Answer::Scanned(self.0.clone())
        } else {
            Answer::Yes
        }
    }
}

/// A board flashed with `sn` in factory mode, doing `script`; booted.
fn factory_board(sn: &str, mac_last: u8, script: FactoryScript) -> SimBoard {
    let f = fixture(60_000);
    let mut board = f.config.board("bellcore-v2").unwrap().clone();
    board
        .nvs_extra
        .push(("factory_test".to_owned(), Value::U8(1)));
    let secret = vesper::credentials::MasterSecret::new(SECRET, "test").unwrap();
    let nvs = vesper::demo::device_image(&board, &secret, &sn.parse().unwrap());
    let plan = FlashPlan::new(&board, &f.bundle, nvs).unwrap();
    let sim = SimBoard::spawn(SimConfig {
        mac: [0x24, 0x0A, 0xC4, 0x00, 0x03, mac_last],
        // Nothing listens there: the firmware keeps trying, and answers its console meanwhile.
        broker: Some(("127.0.0.1".into(), free_port())),
        factory: script,
        ..SimConfig::default()
    })
    .unwrap();
    let (tx, _rx) = mpsc::channel();
    flashing::flash(
        sim.path().to_str().unwrap(),
        &plan,
        &pty_options(true),
        &tx,
        flashing::ANY_BOARD,
    )
    .unwrap();
    sim.wait_for(
        Duration::from_secs(5),
        |e| matches!(e, SimEvent::Booted(r) if r.ok),
    )
    .expect("the board booted");
    sim
}

fn script(measures: &[&str], hang: &[&str]) -> FactoryScript {
    FactoryScript {
        measures: measures.iter().map(|m| m.parse().unwrap()).collect(),
        fail: Vec::new(),
        hang: hang.iter().map(|p| p.to_string()).collect(),
    }
}

/// Runs the plan on the board; the record and the events.
fn test(sim: &SimBoard, sn: &str, mac_last: u8) -> (TestRecord, Vec<TestEvent>, Duration) {
    let plan = TestPlan::parse(PLAN).unwrap();
    let mut seen = Seen::default();
    for e in sim.events() {
        if let SimEvent::Console(line) = e {
            seen.console_line(&line);
        }
    }
    let unit = Unit {
        serial_number: sn.to_owned(),
        mac: Some(format!("24:0A:C4:00:03:{mac_last:02X}")),
        chip: Some("esp32".into()),
        batch: "B-0001".into(),
        board: "bellcore-v2".into(),
        firmware_version: Some("1.0.1".into()),
        attempt: 1,
    };
    let mut console = ConsoleSession::open(sim.path().to_str().unwrap()).unwrap();
    let mut events = Vec::new();
    let started = Instant::now();
    let record = run_plan(
        &plan,
        &unit,
        &seen,
        "bench-1/1",
        &mut console,
        &mut Scanner(sn.to_owned()),
        |e| events.push(e),
    );
    (record, events, started.elapsed())
}

fn phase_outcomes(record: &TestRecord) -> Vec<(String, PhaseOutcome)> {
    record
        .phases
        .iter()
        .map(|p| (p.name.clone(), p.outcome))
        .collect()
}

/// A board's serial number, its MAC's last byte, what it reports, and the record expected.
type Case = (
    &'static str,
    u8,
    FactoryScript,
    TestOutcome,
    bool,
    [PhaseOutcome; 4],
);

#[test]
fn boards_with_known_measurements_give_the_expected_records() {
    use PhaseOutcome::{Error, Fail, Pass, Skip};
    let names = |outcomes: [PhaseOutcome; 4]| -> Vec<(String, PhaseOutcome)> {
        ["identity", "power", "radio", "label"]
            .into_iter()
            .map(String::from)
            .zip(outcomes)
            .collect()
    };
    let good = ["vbus=5.02", "build=v1.4.2", "tx_power=19.5"];
    let cases: [Case; 4] = [
        (
            "PV-26A18-BC02R-X7KQA",
            1,
            script(&good, &[]),
            TestOutcome::Pass,
            false,
            [Pass; 4],
        ),
        (
            "PV-26A18-BC02R-X7KQB",
            2,
            script(&["vbus=5.22", "build=v1.4.2", "tx_power=19.5"], &[]),
            TestOutcome::Pass,
            true,
            [Pass; 4],
        ),
        (
            "PV-26A18-BC02R-X7KQC",
            3,
            script(&["vbus=5.4", "build=v1.4.2", "tx_power=19.5"], &[]),
            TestOutcome::Fail,
            false,
            [Pass, Fail, Skip, Skip],
        ),
        (
            "PV-26A18-BC02R-X7KQD",
            4,
            script(&good, &["radio"]),
            TestOutcome::Timeout,
            false,
            [Pass, Pass, Error, Skip],
        ),
    ];
    let mut records = Vec::new();
    for (sn, mac_last, script, outcome, marginal, phases) in cases {
        let sim = factory_board(sn, mac_last, script);
        let (record, events, took) = test(&sim, sn, mac_last);
        assert_eq!(
            (record.outcome, record.marginal, phase_outcomes(&record)),
            (outcome, marginal, names(phases)),
            "{sn}: {record:#?}"
        );
        assert_eq!(record.dut_id, sn);
        // A hanging phase costs its timeout, not more: the slot is free again.
        assert!(took < Duration::from_secs(6), "{sn}: {took:?}");
        let identity = &record.phases[0].measurements;
        assert_eq!(identity["sn"].outcome, MeasurementOutcome::Pass);
        assert_eq!(identity["mac"].outcome, MeasurementOutcome::Pass);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, TestEvent::Measured { name, .. } if name == "vbus")),
            "{events:?}"
        );
        sim.stop();
        records.push(serde_json::to_value(&record).unwrap());
    }
    assert_eq!(valid(&records), [true; 4]);
}

#[test]
fn vesper_sim_takes_its_factory_mode_from_the_command_line_and_names_bad_input() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vesper"))
            .arg("sim")
            .args(args)
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for words in [
        "--measure <NAME=VALUE[~SPREAD]>",
        "--hang <PHASE>",
        "vesper test PHASE",
    ] {
        assert!(text.contains(words), "{words} not in:\n{text}");
    }
    for (args, expected) in [
        (&["--measure", "vbus"][..], "`vbus` is not NAME=VALUE"),
        (&["--measure", "build=v1~2"][..], "is not NAME=VALUE"),
        (&["--hang", "a b"][..], "`a b` is not a phase name"),
        (&["--fail", "write-error@0"][..], "N must be a block number"),
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
