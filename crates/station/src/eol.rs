//! The end-of-line test step: a board's test plan run after verify, on its console, with the
//! operator for prompts, giving one OpenHTF-style record (`vesper_core::eol::record`). Phases run
//! in order; a phase whose `run_if` does not hold, or that comes after a failed `on_fail =
//! "stop"` phase, is a SKIP; a phase that fails is run again up to its `repeat_limit`; a phase
//! that does not end within its `timeout_s` ends the test as TIMEOUT and frees the slot. No
//! screen here: the bench and the wizard render the [`TestEvent`]s.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use vesper_core::eol::console::{self as factory, FactoryLine};
use vesper_core::eol::plan::{MeasurementSpec, OnFail, Phase, PhaseKind, TestPlan};
use vesper_core::eol::record::{
    MeasurementOutcome, PhaseEnd, PhaseOutcome, PhaseRecord, RecordMetadata, TestOutcome,
    TestRecord, test_outcome,
};
use vesper_core::eol::validators::{Expected, MeasuredValue, Validator};

/// The board's console, as the test step uses it.
pub trait Console {
    /// Writes a command (with its newline).
    fn send(&mut self, text: &str) -> Result<(), String>;
    /// The next line the board prints, or `None` when none comes by `until`.
    fn next_line(&mut self, until: Instant) -> Option<String>;
}

impl Console for vesper_flash::ConsoleSession {
    fn send(&mut self, text: &str) -> Result<(), String> {
        vesper_flash::ConsoleSession::send(self, text)
    }
    fn next_line(&mut self, until: Instant) -> Option<String> {
        vesper_flash::ConsoleSession::next_line(self, until)
    }
}

/// The operator's answer to a prompt phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// What a barcode scanner (a keyboard) typed.
    Scanned(String),
    /// The operator stopped the test.
    Abort,
}

/// Who answers prompt phases.
pub trait Operator {
    /// `scan`: the phase wants a scanned value rather than `y`/`n`.
    fn answer(&mut self, phase: &str, prompt: &str, scan: bool) -> Answer;
}

/// The unit under test, as the registry knows it.
#[derive(Debug, Clone)]
pub struct Unit {
    pub serial_number: String,
    pub mac: Option<String>,
    pub chip: Option<String>,
    pub batch: String,
    pub board: String,
    pub firmware_version: Option<String>,
    /// 1 for the first test, 2 for the first retest, ...
    pub attempt: u32,
}

/// What verify saw: the board's boot line and its first heartbeat's `rssi`.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The fields of `vesper: boot sn=... mac=... chip=...`.
    pub boot: Option<BTreeMap<String, String>>,
    pub heartbeat: bool,
    pub rssi: Option<f64>,
}

impl Seen {
    /// Notes a console line (the boot line is the one kept).
    pub fn console_line(&mut self, line: &str) {
        if let Some(fields) = line.trim_end().strip_prefix("vesper: boot ") {
            self.boot = Some(
                fields
                    .split(' ')
                    .filter_map(|f| f.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            );
        }
    }
}

/// What the test step shows while it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TestEvent {
    PhaseStarted {
        phase: String,
        attempt: u32,
    },
    Measured {
        phase: String,
        name: String,
        value: Option<String>,
        units: Option<String>,
        outcome: MeasurementOutcome,
        marginal: bool,
        /// The limits it is drawn against (either open).
        limits: (Option<f64>, Option<f64>),
    },
    PhaseEnded {
        phase: String,
        outcome: PhaseOutcome,
    },
}

/// Milliseconds since the Unix epoch.
fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs `plan` on the unit; returns its record. Blocking: run it on a thread of its own.
pub fn run_plan(
    plan: &TestPlan,
    unit: &Unit,
    seen: &Seen,
    station_id: &str,
    console: &mut dyn Console,
    operator: &mut dyn Operator,
    mut emit: impl FnMut(TestEvent),
) -> TestRecord {
    let start_time_millis = now_millis();
    let mut phases: Vec<PhaseRecord> = Vec::with_capacity(plan.phases.len());
    let (mut stopped, mut timed_out, mut aborted) = (false, false, false);
    for phase in &plan.phases {
        let holds = phase.run_if.as_ref().is_none_or(|cond| {
            phases
                .iter()
                .find(|p| p.name == cond.phase)
                .is_some_and(|p| (p.outcome == PhaseOutcome::Pass) == cond.passed)
        });
        if stopped || !holds {
            phases.push(PhaseRecord::skipped(phase, now_millis()));
            continue;
        }
        let mut last = None;
        for attempt in 1..=phase.repeat_limit {
            emit(TestEvent::PhaseStarted {
                phase: phase.name.clone(),
                attempt,
            });
            let ran = run_phase(phase, unit, seen, console, operator);
            (aborted, timed_out) = (ran.aborted, ran.timed_out);
            let done = ran.record.outcome == PhaseOutcome::Pass || aborted || timed_out;
            last = Some(ran);
            if done {
                break;
            }
        }
        let Ran { record, specs, .. } = last.expect("repeat_limit is at least 1");
        for m in record.measurements.values() {
            let limits = specs
                .iter()
                .find(|s| s.name == m.name)
                .map_or((None, None), |s| s.validator.limits());
            emit(TestEvent::Measured {
                phase: phase.name.clone(),
                name: m.name.clone(),
                value: m.value_text(),
                units: m.units.clone(),
                outcome: m.outcome,
                marginal: m.marginal,
                limits,
            });
        }
        emit(TestEvent::PhaseEnded {
            phase: phase.name.clone(),
            outcome: record.outcome,
        });
        let failed = record.outcome != PhaseOutcome::Pass;
        stopped = aborted || timed_out || (failed && phase.on_fail == OnFail::Stop);
        phases.push(record);
    }
    let outcome = if aborted {
        TestOutcome::Aborted
    } else {
        test_outcome(&phases, timed_out)
    };
    let marginal = outcome == TestOutcome::Pass && phases.iter().any(|p| p.marginal);
    TestRecord {
        dut_id: unit.serial_number.clone(),
        station_id: station_id.to_owned(),
        start_time_millis,
        end_time_millis: now_millis(),
        outcome,
        outcome_details: Vec::new(),
        metadata: RecordMetadata {
            test_name: plan.name.clone(),
            batch: unit.batch.clone(),
            board: unit.board.clone(),
            attempt: unit.attempt,
            mac: unit.mac.clone(),
            firmware_version: unit.firmware_version.clone(),
        },
        phases,
        marginal,
    }
}

struct Ran {
    record: PhaseRecord,
    /// The measurements the phase was judged by (an identity phase's come from the unit).
    specs: Vec<MeasurementSpec>,
    /// It did not end within its timeout (its record is an ERROR).
    timed_out: bool,
    aborted: bool,
}

/// The measurements an identity phase takes: the boot line's fields against the record's.
fn identity_specs(unit: &Unit) -> Vec<MeasurementSpec> {
    let expected = [
        ("sn", Some(unit.serial_number.clone())),
        ("mac", unit.mac.clone()),
        ("chip", unit.chip.clone()),
    ];
    expected
        .into_iter()
        .filter_map(|(name, value)| {
            Some(MeasurementSpec {
                name: name.to_owned(),
                units: None,
                validator: Validator::Equals(Expected::Text(value?)),
            })
        })
        .collect()
}

fn run_phase(
    phase: &Phase,
    unit: &Unit,
    seen: &Seen,
    console: &mut dyn Console,
    operator: &mut dyn Operator,
) -> Ran {
    let start = now_millis();
    let mut values: BTreeMap<String, MeasuredValue> = BTreeMap::new();
    let mut aborted = false;
    let mut judged = phase.clone();
    let end = match &phase.kind {
        PhaseKind::Identity => {
            judged.measurements = identity_specs(unit);
            for spec in &judged.measurements {
                if let Some(v) = seen.boot.as_ref().and_then(|b| b.get(&spec.name)) {
                    values.insert(spec.name.clone(), MeasuredValue::Text(v.clone()));
                }
            }
            PhaseEnd::Completed {
                operator_passed: true,
            }
        }
        PhaseKind::Heartbeat => {
            if let Some(rssi) = seen.rssi {
                values.insert("rssi".into(), MeasuredValue::Number(rssi));
            }
            PhaseEnd::Completed {
                operator_passed: seen.heartbeat,
            }
        }
        PhaseKind::Board { command } => board_phase(phase, *command, console, &mut values),
        PhaseKind::Prompt { text, scan_equals } => {
            let answer = operator.answer(&phase.name, text, scan_equals.is_some());
            let passed = match (answer, scan_equals) {
                (Answer::Abort, _) => {
                    aborted = true;
                    false
                }
                (Answer::Scanned(value), Some(expected)) => {
                    let expected = expected
                        .replace("{sn}", &unit.serial_number)
                        .replace("{mac}", unit.mac.as_deref().unwrap_or_default());
                    value.trim() == expected
                }
                (Answer::Yes, None) => true,
                _ => false,
            };
            PhaseEnd::Completed {
                operator_passed: passed,
            }
        }
    };
    Ran {
        record: PhaseRecord::ran(&judged, &values, end, start, now_millis()),
        specs: judged.measurements,
        timed_out: end == PhaseEnd::TimedOut,
        aborted,
    }
}

/// A board phase: the command (when the plan asks for it), then the board's lines until its
/// `phase NAME end` or the timeout. Only this phase's measurements between its begin and end
/// count; a measurement reported twice counts its last value.
fn board_phase(
    phase: &Phase,
    command: bool,
    console: &mut dyn Console,
    values: &mut BTreeMap<String, MeasuredValue>,
) -> PhaseEnd {
    if command && console.send(&factory::command(&phase.name)).is_err() {
        return PhaseEnd::Failed;
    }
    let deadline = Instant::now() + phase.timeout;
    let mut begun = false;
    while let Some(line) = console.next_line(deadline) {
        match factory::read(&line) {
            Some(FactoryLine::PhaseBegin(name)) if name == phase.name => begun = true,
            Some(FactoryLine::PhaseEnd(name)) if name == phase.name && begun => {
                return PhaseEnd::Completed {
                    operator_passed: true,
                };
            }
            Some(FactoryLine::Measurement { name, value, .. })
                if begun && phase.measurements.iter().any(|m| m.name == name) =>
            {
                values.insert(name, value);
            }
            _ => {}
        }
    }
    PhaseEnd::TimedOut
}
