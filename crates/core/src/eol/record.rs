//! One record per unit and attempt, in OpenHTF's field names and values
//! (`openhtf/core/test_record.py`: `TestRecord`, `PhaseRecord`, `Outcome`, `PhaseOutcome`;
//! `openhtf/core/measurements.py`: a measurement's `name`, `outcome`, `validators`, `units`,
//! `measured_value`, `marginal`). A phase that never ran is a `SKIP` with its measurements
//! `SKIPPED`. The JSON Schema every record is held to is `schemas/test-record.schema.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::plan::{MeasurementSpec, Phase};
use super::validators::MeasuredValue;

/// How a unit's test ended (OpenHTF's `Outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TestOutcome {
    Pass,
    Fail,
    Error,
    Timeout,
    Aborted,
}

impl TestOutcome {
    /// OpenHTF's name of the outcome, as records and reports write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TestOutcome::Pass => "PASS",
            TestOutcome::Fail => "FAIL",
            TestOutcome::Error => "ERROR",
            TestOutcome::Timeout => "TIMEOUT",
            TestOutcome::Aborted => "ABORTED",
        }
    }
}

/// How a phase ended (OpenHTF's `PhaseOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhaseOutcome {
    Pass,
    Fail,
    Skip,
    Error,
}

/// How a measurement ended (OpenHTF's measurement `Outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MeasurementOutcome {
    Pass,
    Fail,
    Unset,
    Skipped,
}

/// Why a test did not pass, as OpenHTF's `OutcomeDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeDetails {
    pub code: String,
    pub description: String,
}

/// What Vesper adds in OpenHTF's free-form `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordMetadata {
    /// The plan's name (OpenHTF's `test_name`).
    pub test_name: String,
    pub batch: String,
    pub board: String,
    /// 1 for the first test of this unit, 2 for its first retest, ...
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
}

/// One unit's test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TestRecord {
    /// The device under test: its serial number.
    pub dut_id: String,
    pub station_id: String,
    pub start_time_millis: i64,
    pub end_time_millis: i64,
    pub outcome: TestOutcome,
    #[serde(default)]
    pub outcome_details: Vec<OutcomeDetails>,
    pub metadata: RecordMetadata,
    pub phases: Vec<PhaseRecord>,
    /// Passed, with at least one marginal measurement.
    pub marginal: bool,
}

/// One phase of a unit's test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PhaseRecord {
    pub name: String,
    pub start_time_millis: i64,
    pub end_time_millis: i64,
    pub outcome: PhaseOutcome,
    pub measurements: BTreeMap<String, MeasurementRecord>,
    pub marginal: bool,
}

/// One measurement of a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeasurementRecord {
    pub name: String,
    pub outcome: MeasurementOutcome,
    /// A number, or text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub measured_value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    pub validators: Vec<String>,
    pub marginal: bool,
}

impl MeasurementRecord {
    /// The measured value as text (a string as it is, a number as JSON writes it).
    pub fn value_text(&self) -> Option<String> {
        self.measured_value.as_ref().map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// A measurement judged against its validator (`UNSET` when the board never reported it).
    pub fn judged(spec: &MeasurementSpec, value: Option<&MeasuredValue>) -> MeasurementRecord {
        let (outcome, marginal) = match value {
            None => (MeasurementOutcome::Unset, false),
            Some(v) => {
                let j = spec.validator.judge(v);
                let outcome = if j.pass {
                    MeasurementOutcome::Pass
                } else {
                    MeasurementOutcome::Fail
                };
                (outcome, j.marginal)
            }
        };
        MeasurementRecord {
            name: spec.name.clone(),
            outcome,
            measured_value: value.map(json_value),
            units: spec.units.clone(),
            validators: vec![spec.validator.to_string()],
            marginal,
        }
    }

    fn skipped(spec: &MeasurementSpec) -> MeasurementRecord {
        MeasurementRecord {
            outcome: MeasurementOutcome::Skipped,
            ..MeasurementRecord::judged(spec, None)
        }
    }
}

/// A value as JSON: a finite number as a number; NaN, infinities and text as strings.
fn json_value(value: &MeasuredValue) -> serde_json::Value {
    match value {
        MeasuredValue::Number(n) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(n.to_string())),
        MeasuredValue::Text(t) => serde_json::Value::String(t.clone()),
    }
}

/// A record as the backend keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StoredTest {
    pub id: i64,
    /// When the backend received it (RFC 3339).
    pub received_at: String,
    pub record: TestRecord,
}

/// How a phase's run ended, before its measurements are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseEnd {
    /// It ran to its end (the board's `phase NAME end`, the heartbeat, the operator's answer).
    Completed { operator_passed: bool },
    /// It did not end within its `timeout_s`.
    TimedOut,
    /// The station could not run it (the board's console went away).
    Failed,
}

impl PhaseRecord {
    /// A phase that ran: `PASS` when it completed and every measurement passed, `FAIL` when one
    /// failed, was never reported, or the operator said no; `ERROR` when it timed out or could
    /// not run.
    pub fn ran(
        phase: &Phase,
        values: &BTreeMap<String, MeasuredValue>,
        end: PhaseEnd,
        start_time_millis: i64,
        end_time_millis: i64,
    ) -> PhaseRecord {
        let measurements: BTreeMap<String, MeasurementRecord> = phase
            .measurements
            .iter()
            .map(|spec| {
                let record = MeasurementRecord::judged(spec, values.get(&spec.name));
                (spec.name.clone(), record)
            })
            .collect();
        let all_pass = measurements
            .values()
            .all(|m| m.outcome == MeasurementOutcome::Pass);
        let outcome = match end {
            PhaseEnd::Completed { operator_passed } if operator_passed && all_pass => {
                PhaseOutcome::Pass
            }
            PhaseEnd::Completed { .. } => PhaseOutcome::Fail,
            PhaseEnd::TimedOut | PhaseEnd::Failed => PhaseOutcome::Error,
        };
        let marginal = outcome == PhaseOutcome::Pass && measurements.values().any(|m| m.marginal);
        PhaseRecord {
            name: phase.name.clone(),
            start_time_millis,
            end_time_millis,
            outcome,
            measurements,
            marginal,
        }
    }

    /// A phase that never ran (an earlier one stopped the test, or its `run_if` did not hold).
    pub fn skipped(phase: &Phase, at_millis: i64) -> PhaseRecord {
        PhaseRecord {
            name: phase.name.clone(),
            start_time_millis: at_millis,
            end_time_millis: at_millis,
            outcome: PhaseOutcome::Skip,
            measurements: phase
                .measurements
                .iter()
                .map(|spec| (spec.name.clone(), MeasurementRecord::skipped(spec)))
                .collect(),
            marginal: false,
        }
    }
}

/// The test's outcome from its phases (and whether one timed out): `TIMEOUT` when a phase
/// timed out, `ERROR` when one could not run, `FAIL` when one failed, else `PASS`.
pub fn test_outcome(phases: &[PhaseRecord], timed_out: bool) -> TestOutcome {
    if timed_out {
        TestOutcome::Timeout
    } else if phases.iter().any(|p| p.outcome == PhaseOutcome::Error) {
        TestOutcome::Error
    } else if phases.iter().any(|p| p.outcome == PhaseOutcome::Fail) {
        TestOutcome::Fail
    } else {
        TestOutcome::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eol::plan::TestPlan;

    fn plan() -> TestPlan {
        TestPlan::parse(
            r#"
[[phases]]
name = "power"
command = true
measurements = [
  { name = "vbus", units = "V", in_range = { min = 4.75, max = 5.25, marginal_max = 5.2 } },
  { name = "build", matches_regex = "^v1" },
]
[[phases]]
name = "radio"
measurements = [{ name = "rssi", units = "dBm", in_range = { min = -80, max = -20 } }]
"#,
        )
        .unwrap()
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, MeasuredValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), MeasuredValue::parse(v)))
            .collect()
    }

    #[test]
    fn a_phase_passes_only_when_every_measurement_passes() {
        let plan = plan();
        let done = PhaseEnd::Completed {
            operator_passed: true,
        };
        let pass = PhaseRecord::ran(
            &plan.phases[0],
            &values(&[("vbus", "5.0"), ("build", "v1.2")]),
            done,
            1,
            2,
        );
        assert_eq!((pass.outcome, pass.marginal), (PhaseOutcome::Pass, false));
        let marginal = PhaseRecord::ran(
            &plan.phases[0],
            &values(&[("vbus", "5.21"), ("build", "v1.2")]),
            done,
            1,
            2,
        );
        assert_eq!(
            (marginal.outcome, marginal.marginal),
            (PhaseOutcome::Pass, true)
        );
        let missing = PhaseRecord::ran(&plan.phases[0], &values(&[("vbus", "5.0")]), done, 1, 2);
        assert_eq!(missing.outcome, PhaseOutcome::Fail);
        assert_eq!(
            missing.measurements["build"].outcome,
            MeasurementOutcome::Unset
        );
        let high = PhaseRecord::ran(
            &plan.phases[0],
            &values(&[("vbus", "5.3"), ("build", "v1.2")]),
            done,
            1,
            2,
        );
        assert_eq!(high.outcome, PhaseOutcome::Fail);
        assert_eq!(
            high.measurements["vbus"].measured_value,
            Some(serde_json::json!(5.3))
        );
        assert_eq!(
            high.measurements["vbus"].validators,
            ["4.75 <= x <= Marginal:5.2 <= 5.25"]
        );
        let hung = PhaseRecord::ran(&plan.phases[0], &values(&[]), PhaseEnd::TimedOut, 1, 2);
        assert_eq!(hung.outcome, PhaseOutcome::Error);
        assert_eq!(
            test_outcome(&[pass.clone(), hung], true),
            TestOutcome::Timeout
        );
        assert_eq!(
            test_outcome(&[pass.clone(), high], false),
            TestOutcome::Fail
        );
        let skipped = PhaseRecord::skipped(&plan.phases[1], 3);
        assert_eq!(skipped.outcome, PhaseOutcome::Skip);
        assert_eq!(
            skipped.measurements["rssi"].outcome,
            MeasurementOutcome::Skipped
        );
        assert_eq!(test_outcome(&[pass, skipped], false), TestOutcome::Pass);
    }

    #[test]
    fn outcome_names_are_the_serialized_ones() {
        use TestOutcome::*;
        for outcome in [Pass, Fail, Error, Timeout, Aborted] {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
    }

    #[test]
    fn records_use_openhtfs_names_and_values() {
        let plan = plan();
        let phase = PhaseRecord::ran(
            &plan.phases[0],
            &values(&[("vbus", "nan"), ("build", "v1")]),
            PhaseEnd::Completed {
                operator_passed: true,
            },
            10,
            20,
        );
        let record = TestRecord {
            dut_id: "PV-1".into(),
            station_id: "bench-1".into(),
            start_time_millis: 10,
            end_time_millis: 20,
            outcome: TestOutcome::Fail,
            outcome_details: vec![],
            metadata: RecordMetadata {
                test_name: "eol".into(),
                batch: "B-0001".into(),
                board: "bellcore-v2".into(),
                attempt: 1,
                mac: None,
                firmware_version: None,
            },
            phases: vec![phase],
            marginal: false,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["outcome"], "FAIL");
        assert_eq!(json["phases"][0]["outcome"], "FAIL");
        let vbus = &json["phases"][0]["measurements"]["vbus"];
        assert_eq!(vbus["outcome"], "FAIL");
        assert_eq!(vbus["measured_value"], "NaN");
        assert_eq!(vbus["units"], "V");
        let back: TestRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}
