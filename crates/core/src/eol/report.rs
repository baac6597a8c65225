//! A batch's end-of-line results for a quality engineer: the summary (units, first-pass yield,
//! retests, marginal passes, the measurements that fail most, every numeric measurement's values
//! against its limits) and the JUnit XML a CI dashboard reads (one test suite for the batch, one
//! test case per unit, attempt and phase; a failure names the measurement and its limits), in
//! the format of Ant's JUnit XML report as Jenkins reads it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::record::{MeasurementOutcome, PhaseOutcome, TestOutcome, TestRecord};

/// The report formats `vesper report` and `GET /manufacturing/batch/{id}/report` give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// The summary and every record.
    #[default]
    Json,
    /// JUnit XML for CI dashboards.
    Junit,
}

/// `GET /manufacturing/batch/{id}/report`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// `json` (default) or `junit`.
    pub format: Option<ReportFormat>,
}

/// The JSON report: the summary and the records it sums up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JsonReport {
    pub summary: BatchReport,
    pub records: Vec<TestRecord>,
}

/// A batch's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchReport {
    pub batch: String,
    /// Units with at least one record.
    pub units: usize,
    /// Records (tests and retests).
    pub records: usize,
    /// Units whose first record passed.
    pub first_pass: usize,
    /// `first_pass / units` (0 with no units).
    pub first_pass_yield: f64,
    /// Units whose latest record passed.
    pub passed: usize,
    /// Records after a unit's first.
    pub retests: usize,
    /// Passing records with a marginal measurement.
    pub marginal: usize,
    /// Records by outcome (`PASS`, `FAIL`, ...).
    pub outcomes: BTreeMap<String, usize>,
    /// Measurements that failed, most failures first.
    pub failing: Vec<FailingMeasurement>,
    /// Each numeric measurement's values against its limits, in plan order.
    pub numeric: Vec<NumericMeasurement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FailingMeasurement {
    pub phase: String,
    pub name: String,
    pub failures: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NumericMeasurement {
    pub phase: String,
    pub name: String,
    pub units: Option<String>,
    /// The validator as the records describe it.
    pub validator: String,
    pub values: Vec<f64>,
}

/// Summarizes a batch's records (oldest first: a unit's first record is its first test).
pub fn summarize(batch: &str, records: &[TestRecord]) -> BatchReport {
    let mut by_unit: HashMap<&str, Vec<&TestRecord>> = HashMap::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut failing: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut numeric: Vec<NumericMeasurement> = Vec::new();
    for record in records {
        by_unit.entry(&record.dut_id).or_default().push(record);
        *outcomes
            .entry(record.outcome.as_str().to_owned())
            .or_default() += 1;
        for phase in &record.phases {
            for m in phase.measurements.values() {
                if m.outcome == MeasurementOutcome::Fail {
                    *failing
                        .entry((phase.name.clone(), m.name.clone()))
                        .or_default() += 1;
                }
                let Some(value) = m.measured_value.as_ref().and_then(|v| v.as_f64()) else {
                    continue;
                };
                match numeric
                    .iter_mut()
                    .find(|n| n.phase == phase.name && n.name == m.name)
                {
                    Some(series) => series.values.push(value),
                    None => numeric.push(NumericMeasurement {
                        phase: phase.name.clone(),
                        name: m.name.clone(),
                        units: m.units.clone(),
                        validator: m.validators.first().cloned().unwrap_or_default(),
                        values: vec![value],
                    }),
                }
            }
        }
    }
    let units = by_unit.len();
    let passes = |r: &&TestRecord| r.outcome == TestOutcome::Pass;
    let first_pass = by_unit.values().filter(|rs| passes(&rs[0])).count();
    let passed = by_unit
        .values()
        .filter(|rs| rs.last().is_some_and(passes))
        .count();
    let mut failing: Vec<FailingMeasurement> = failing
        .into_iter()
        .map(|((phase, name), failures)| FailingMeasurement {
            phase,
            name,
            failures,
        })
        .collect();
    failing.sort_by_key(|f| std::cmp::Reverse(f.failures));
    BatchReport {
        batch: batch.to_owned(),
        units,
        records: records.len(),
        first_pass,
        first_pass_yield: if units == 0 {
            0.0
        } else {
            first_pass as f64 / units as f64
        },
        passed,
        retests: records.len() - units,
        marginal: records
            .iter()
            .filter(|r| r.outcome == TestOutcome::Pass && r.marginal)
            .count(),
        outcomes,
        failing,
        numeric,
    }
}

/// Text for an XML attribute or element.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no other control characters but tab, newline and return.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

fn seconds(millis: i64) -> String {
    format!("{:.3}", millis.max(0) as f64 / 1000.0)
}

/// Why a phase did not pass: each failed or unreported measurement with its value and limits.
fn failure_message(phase: &super::record::PhaseRecord) -> String {
    let reasons: Vec<String> = phase
        .measurements
        .values()
        .filter(|m| {
            matches!(
                m.outcome,
                MeasurementOutcome::Fail | MeasurementOutcome::Unset
            )
        })
        .map(|m| {
            let value = m.value_text().unwrap_or_else(|| "not reported".to_owned());
            let units = m
                .units
                .as_deref()
                .map_or(String::new(), |u| format!(" {u}"));
            format!(
                "{} = {value}{units}, limits {}",
                m.name,
                m.validators.join("; ")
            )
        })
        .collect();
    if reasons.is_empty() {
        "the phase did not pass".into()
    } else {
        reasons.join("; ")
    }
}

/// The batch as a JUnit XML report: the suite is the batch, each case a unit's phase in one
/// attempt (`classname` = serial number, `#2` for its first retest).
pub fn junit(batch: &str, records: &[TestRecord]) -> String {
    let (mut tests, mut failures, mut errors, mut skipped, mut time) = (0, 0, 0, 0, 0i64);
    let mut cases = String::new();
    let mut attempts: HashMap<&str, u32> = HashMap::new();
    for record in records {
        let attempt = attempts.entry(&record.dut_id).or_default();
        *attempt += 1;
        let classname = if *attempt == 1 {
            record.dut_id.clone()
        } else {
            format!("{}#{attempt}", record.dut_id)
        };
        time += record.end_time_millis - record.start_time_millis;
        for phase in &record.phases {
            tests += 1;
            let took = seconds(phase.end_time_millis - phase.start_time_millis);
            let _ = write!(
                cases,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{took}\"",
                xml(&classname),
                xml(&phase.name)
            );
            match phase.outcome {
                PhaseOutcome::Pass => cases.push_str("/>\n"),
                PhaseOutcome::Skip => {
                    skipped += 1;
                    cases.push_str(">\n      <skipped/>\n    </testcase>\n");
                }
                PhaseOutcome::Fail => {
                    failures += 1;
                    let message = failure_message(phase);
                    let _ = write!(
                        cases,
                        ">\n      <failure message=\"{}\" type=\"FAIL\">{}</failure>\n    </testcase>\n",
                        xml(&message),
                        xml(&message)
                    );
                }
                PhaseOutcome::Error => {
                    errors += 1;
                    let kind = record.outcome.as_str();
                    let message = format!("{} ended with {kind}", phase.name);
                    let _ = write!(
                        cases,
                        ">\n      <error message=\"{}\" type=\"{}\"/>\n    </testcase>\n",
                        xml(&message),
                        xml(kind)
                    );
                }
            }
        }
    }
    let timestamp = records
        .first()
        .and_then(|r| chrono::DateTime::from_timestamp_millis(r.start_time_millis))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_else(|| "1970-01-01T00:00:00".into());
    let batch = xml(batch);
    let total = seconds(time);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <testsuites name=\"{batch}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{total}\">\n  \
         <testsuite name=\"{batch}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{total}\" timestamp=\"{timestamp}\">\n\
         {cases}  </testsuite>\n</testsuites>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-phase record, written by hand.
    fn record(sn: &str, start: i64, outcome: &str, vbus: f64, marginal: bool) -> TestRecord {
        let phase = if outcome == "TIMEOUT" {
            "ERROR"
        } else {
            outcome
        };
        let m = if outcome == "FAIL" { "FAIL" } else { "PASS" };
        serde_json::from_value(serde_json::json!({
            "dut_id": sn, "station_id": "bench-1/1",
            "start_time_millis": start, "end_time_millis": start + 2500,
            "outcome": outcome, "outcome_details": [], "marginal": marginal,
            "metadata": { "test_name": "eol", "batch": "B-1", "board": "b", "attempt": 1 },
            "phases": [{ "name": "power", "start_time_millis": start, "end_time_millis": start + 1500,
                "outcome": phase, "marginal": marginal,
                "measurements": { "vbus": { "name": "vbus", "outcome": m, "measured_value": vbus,
                    "units": "V", "validators": ["4.75 <= x <= 5.25"], "marginal": marginal } } }]
        }))
        .unwrap()
    }

    fn batch() -> Vec<TestRecord> {
        vec![
            record("PV-A", 1_000, "FAIL", 5.4, false),
            record("PV-B", 2_000, "PASS", 5.24, true),
            record("PV-C", 3_000, "TIMEOUT", 5.0, false),
            record("PV-A", 9_000, "PASS", 5.01, false),
        ]
    }

    #[test]
    fn the_summary_counts_first_passes_retests_and_failures() {
        let r = summarize("B-1", &batch());
        assert_eq!(
            (
                r.units,
                r.records,
                r.first_pass,
                r.passed,
                r.retests,
                r.marginal
            ),
            (3, 4, 1, 2, 1, 1)
        );
        assert!((r.first_pass_yield - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.outcomes["PASS"], 2);
        assert_eq!(r.outcomes["FAIL"], 1);
        assert_eq!(r.outcomes["TIMEOUT"], 1);
        assert_eq!(
            r.failing,
            [FailingMeasurement {
                phase: "power".into(),
                name: "vbus".into(),
                failures: 1
            }]
        );
        assert_eq!(r.numeric[0].values, [5.4, 5.24, 5.0, 5.01]);
        assert_eq!(r.numeric[0].validator, "4.75 <= x <= 5.25");
        let empty = summarize("B-2", &[]);
        assert_eq!((empty.units, empty.first_pass_yield), (0, 0.0));
    }

    #[test]
    fn junit_has_a_case_per_unit_attempt_and_phase() {
        let xml = junit("B-1 <\"&>", &batch());
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
        assert!(xml.contains(
            "<testsuite name=\"B-1 &lt;&quot;&amp;&gt;\" tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"0\" time=\"10.000\""
        ));
        assert!(xml.contains("<testcase classname=\"PV-A\" name=\"power\" time=\"1.500\">"));
        assert!(xml.contains("<testcase classname=\"PV-A#2\" name=\"power\" time=\"1.500\"/>"));
        assert!(
            xml.contains("message=\"vbus = 5.4 V, limits 4.75 &lt;= x &lt;= 5.25\" type=\"FAIL\"")
        );
        assert!(xml.contains("<error message=\"power ended with TIMEOUT\" type=\"TIMEOUT\"/>"));
    }
}
