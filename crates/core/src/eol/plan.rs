//! A board's test plan (`[boards.NAME] test_plan = "plans/NAME.toml"`): ordered phases, each a
//! built-in check (`identity`, `heartbeat`), a board phase whose measurements the firmware's
//! factory mode prints (optionally started by the station's `vesper test PHASE` command), or an
//! operator prompt (a `y`/`n` key, or a scanned value compared with `scan_equals`). Read once,
//! checked whole: every bad input is refused with where it is and what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::validators::{Expected, Validator};

/// Longest a phase may be given (`timeout_s`).
pub const MAX_TIMEOUT_S: f64 = 3600.0;
/// Most attempts of one phase (`repeat_limit`).
pub const MAX_REPEAT_LIMIT: u32 = 10;
/// Longest phase or measurement name (they travel in console lines and JUnit test case names).
pub const MAX_NAME: usize = 64;

/// A plan: its phases in order.
#[derive(Debug, Clone)]
pub struct TestPlan {
    pub name: String,
    pub phases: Vec<Phase>,
}

/// One phase of a plan.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub kind: PhaseKind,
    pub timeout: Duration,
    pub on_fail: OnFail,
    /// Run only when an earlier phase passed (or failed); otherwise the phase is a SKIP.
    pub run_if: Option<RunIf>,
    /// Attempts before the phase fails (1: no repeat).
    pub repeat_limit: u32,
    pub measurements: Vec<MeasurementSpec>,
}

/// What a phase does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseKind {
    /// The boot line's serial number, MAC and chip equal the device's record.
    Identity,
    /// The first heartbeat arrived (its `rssi` may be measured).
    Heartbeat,
    /// The board measures; `command`: the station starts it with `vesper test PHASE\n`.
    Board { command: bool },
    /// The operator answers `text` with `y`/`n`, or scans a value that must equal `scan_equals`
    /// (`{sn}` and `{mac}` stand for the device's own).
    Prompt {
        text: String,
        scan_equals: Option<String>,
    },
}

/// What a failed phase does to the rest of the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFail {
    Stop,
    Continue,
}

/// `run_if = "PHASE passed"` or `"PHASE failed"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIf {
    pub phase: String,
    pub passed: bool,
}

/// A measurement a phase takes: its units and its one validator.
#[derive(Debug, Clone)]
pub struct MeasurementSpec {
    pub name: String,
    pub units: Option<String>,
    pub validator: Validator,
}

/// A plan that cannot be used: where (`phases[2] power`, `... measurement vbus`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct PlanError {
    pub at: String,
    pub problem: String,
}

fn error(at: impl Into<String>, problem: impl Into<String>) -> PlanError {
    PlanError {
        at: at.into(),
        problem: problem.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: Option<String>,
    #[serde(default)]
    phases: Vec<RawPhase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: String,
    builtin: Option<String>,
    #[serde(default)]
    command: bool,
    prompt: Option<String>,
    scan_equals: Option<String>,
    timeout_s: Option<f64>,
    on_fail: Option<String>,
    run_if: Option<String>,
    repeat_limit: Option<u32>,
    #[serde(default)]
    measurements: Vec<RawMeasurement>,
}

#[derive(Deserialize)]
struct RawMeasurement {
    name: String,
    units: Option<String>,
    /// Every other key: the validator (exactly one).
    #[serde(flatten)]
    validator: BTreeMap<String, toml::Value>,
}

/// Validators a measurement may name.
pub const VALIDATORS: [&str; 4] = ["in_range", "equals", "matches_regex", "within_percent"];

impl TestPlan {
    /// Reads a plan from its TOML text.
    pub fn parse(text: &str) -> Result<TestPlan, PlanError> {
        let raw: RawPlan = toml::from_str(text).map_err(|e| error("plan", e.message()))?;
        if raw.phases.is_empty() {
            return Err(error("plan", "has no phases"));
        }
        let mut phases: Vec<Phase> = Vec::with_capacity(raw.phases.len());
        let mut measured: HashMap<String, String> = HashMap::new();
        for (i, raw_phase) in raw.phases.into_iter().enumerate() {
            let at = format!("phases[{i}] {}", raw_phase.name);
            let phase = read_phase(raw_phase, &phases, &at)?;
            for m in &phase.measurements {
                if let Some(other) = measured.insert(m.name.clone(), phase.name.clone()) {
                    return Err(error(
                        format!("{at} measurement {}", m.name),
                        format!("duplicate measurement (also in phase {other})"),
                    ));
                }
            }
            phases.push(phase);
        }
        Ok(TestPlan {
            name: raw.name.unwrap_or_else(|| "end-of-line test".into()),
            phases,
        })
    }

    /// Every measurement of the plan with its phase, in plan order.
    pub fn measurements(&self) -> impl Iterator<Item = (&Phase, &MeasurementSpec)> {
        self.phases
            .iter()
            .flat_map(|p| p.measurements.iter().map(move |m| (p, m)))
    }
}

/// A phase or measurement name: 1 to [`MAX_NAME`] of A-Z a-z 0-9 _ - . (plans and the board's
/// console lines alike).
pub fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn check_name(name: &str, at: &str) -> Result<(), PlanError> {
    if is_name(name) {
        Ok(())
    } else {
        Err(error(
            at,
            format!("name must be 1 to {MAX_NAME} of A-Z a-z 0-9 _ - ."),
        ))
    }
}

fn read_phase(raw: RawPhase, earlier: &[Phase], at: &str) -> Result<Phase, PlanError> {
    check_name(&raw.name, at)?;
    if earlier.iter().any(|p| p.name == raw.name) {
        return Err(error(at, "duplicate phase name"));
    }
    let kind = match (raw.builtin.as_deref(), raw.prompt, raw.command) {
        (Some(_), Some(_), _) | (Some(_), _, true) | (None, Some(_), true) => {
            return Err(error(
                at,
                "a phase is one of: builtin, prompt, or a board phase (command)",
            ));
        }
        (Some("identity"), None, false) => PhaseKind::Identity,
        (Some("heartbeat"), None, false) => PhaseKind::Heartbeat,
        (Some(other), None, false) => {
            return Err(error(
                at,
                format!("unknown builtin {other:?} (identity or heartbeat)"),
            ));
        }
        (None, Some(text), false) => PhaseKind::Prompt {
            text,
            scan_equals: raw.scan_equals.clone(),
        },
        (None, None, command) => PhaseKind::Board { command },
    };
    if raw.scan_equals.is_some() && !matches!(kind, PhaseKind::Prompt { .. }) {
        return Err(error(at, "scan_equals belongs to a prompt phase"));
    }
    let timeout_s = raw.timeout_s.unwrap_or(30.0);
    if !(timeout_s > 0.0 && timeout_s <= MAX_TIMEOUT_S) {
        return Err(error(
            at,
            format!("timeout_s must be over 0 and at most {MAX_TIMEOUT_S}"),
        ));
    }
    let on_fail = match raw.on_fail.as_deref() {
        None | Some("stop") => OnFail::Stop,
        Some("continue") => OnFail::Continue,
        Some(other) => {
            return Err(error(
                at,
                format!("on_fail must be \"stop\" or \"continue\", not {other:?}"),
            ));
        }
    };
    let run_if = raw
        .run_if
        .map(|text| read_run_if(&text, earlier, at))
        .transpose()?;
    let repeat_limit = raw.repeat_limit.unwrap_or(1);
    if !(1..=MAX_REPEAT_LIMIT).contains(&repeat_limit) {
        return Err(error(
            at,
            format!("repeat_limit must be 1 to {MAX_REPEAT_LIMIT}"),
        ));
    }
    if matches!(kind, PhaseKind::Identity | PhaseKind::Prompt { .. })
        && !raw.measurements.is_empty()
    {
        return Err(error(
            at,
            "identity and prompt phases take no measurements of their own",
        ));
    }
    let mut measurements = Vec::with_capacity(raw.measurements.len());
    for m in raw.measurements {
        let m_at = format!("{at} measurement {}", m.name);
        check_name(&m.name, &m_at)?;
        if measurements
            .iter()
            .any(|x: &MeasurementSpec| x.name == m.name)
        {
            return Err(error(m_at, "duplicate measurement"));
        }
        if kind == PhaseKind::Heartbeat && m.name != "rssi" {
            return Err(error(m_at, "a heartbeat phase measures only rssi"));
        }
        let validator = read_validator(&m.validator, &m_at)?;
        measurements.push(MeasurementSpec {
            name: m.name,
            units: m.units,
            validator,
        });
    }
    Ok(Phase {
        name: raw.name,
        kind,
        timeout: Duration::from_secs_f64(timeout_s),
        on_fail,
        run_if,
        repeat_limit,
        measurements,
    })
}

fn read_run_if(text: &str, earlier: &[Phase], at: &str) -> Result<RunIf, PlanError> {
    let (phase, word) = text
        .trim()
        .rsplit_once(' ')
        .ok_or_else(|| error(at, "run_if must be \"PHASE passed\" or \"PHASE failed\""))?;
    let passed = match word {
        "passed" => true,
        "failed" => false,
        _ => {
            return Err(error(
                at,
                "run_if must be \"PHASE passed\" or \"PHASE failed\"",
            ));
        }
    };
    if !earlier.iter().any(|p| p.name == phase.trim()) {
        return Err(error(
            at,
            format!(
                "run_if names {:?}, which is not an earlier phase",
                phase.trim()
            ),
        ));
    }
    Ok(RunIf {
        phase: phase.trim().to_owned(),
        passed,
    })
}

/// A finite number from a TOML integer or float.
fn number(value: &toml::Value, at: &str, what: &str) -> Result<f64, PlanError> {
    let n = match value {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        _ => return Err(error(at, format!("{what} must be a number"))),
    };
    if n.is_finite() {
        Ok(n)
    } else {
        Err(error(
            at,
            format!("{what} must be a finite number, not {n}"),
        ))
    }
}

fn read_validator(keys: &BTreeMap<String, toml::Value>, at: &str) -> Result<Validator, PlanError> {
    if let Some(unknown) = keys.keys().find(|k| !VALIDATORS.contains(&k.as_str())) {
        return Err(error(
            at,
            format!(
                "unknown validator `{unknown}` (one of {})",
                VALIDATORS.join(", ")
            ),
        ));
    }
    let mut named = keys.iter();
    let (Some((name, value)), None) = (named.next(), named.next()) else {
        return Err(error(
            at,
            format!("needs exactly one validator ({})", VALIDATORS.join(", ")),
        ));
    };
    match name.as_str() {
        "in_range" => read_in_range(value, at),
        "equals" => match value {
            toml::Value::String(s) => Ok(Validator::Equals(Expected::Text(s.clone()))),
            other => Ok(Validator::Equals(Expected::Number(number(
                other, at, "equals",
            )?))),
        },
        "matches_regex" => {
            let toml::Value::String(pattern) = value else {
                return Err(error(at, "matches_regex must be a string"));
            };
            regex::Regex::new(pattern)
                .map(Validator::MatchesRegex)
                .map_err(|e| error(at, format!("matches_regex: {e}")))
        }
        _ => read_within_percent(value, at),
    }
}

/// The keys of an inline validator table, each a finite number.
fn table_numbers(
    value: &toml::Value,
    allowed: &[&str],
    at: &str,
    what: &str,
) -> Result<HashMap<String, f64>, PlanError> {
    let toml::Value::Table(table) = value else {
        return Err(error(
            at,
            format!("{what} is a table: {{ {} }}", allowed.join(", ")),
        ));
    };
    let mut out = HashMap::new();
    for (key, v) in table {
        if !allowed.contains(&key.as_str()) {
            return Err(error(
                at,
                format!("{what} has no `{key}` (it takes {})", allowed.join(", ")),
            ));
        }
        out.insert(key.clone(), number(v, at, &format!("{what}.{key}"))?);
    }
    Ok(out)
}

fn read_in_range(value: &toml::Value, at: &str) -> Result<Validator, PlanError> {
    let n = table_numbers(
        value,
        &["min", "max", "marginal_min", "marginal_max"],
        at,
        "in_range",
    )?;
    let (min, max) = (n.get("min").copied(), n.get("max").copied());
    let (mmin, mmax) = (
        n.get("marginal_min").copied(),
        n.get("marginal_max").copied(),
    );
    // OpenHTF's InRange checks, in its words.
    let problem = if min.is_none() && max.is_none() {
        Some("must give min, max, or both")
    } else if min.zip(max).is_some_and(|(lo, hi)| lo > hi) {
        Some("min is greater than max")
    } else if mmin.is_some() && min.is_none() {
        Some("marginal_min without a min")
    } else if mmax.is_some() && max.is_none() {
        Some("marginal_max without a max")
    } else if min.zip(mmin).is_some_and(|(lo, m)| lo > m) {
        Some("marginal_min is below min")
    } else if max.zip(mmax).is_some_and(|(hi, m)| hi < m) {
        Some("marginal_max is above max")
    } else if mmin.zip(mmax).is_some_and(|(a, b)| a > b) {
        Some("marginal_min is greater than marginal_max")
    } else {
        None
    };
    match problem {
        Some(p) => Err(error(at, format!("in_range: {p}"))),
        None => Ok(Validator::InRange {
            min,
            max,
            marginal_min: mmin,
            marginal_max: mmax,
        }),
    }
}

fn read_within_percent(value: &toml::Value, at: &str) -> Result<Validator, PlanError> {
    let n = table_numbers(
        value,
        &["expected", "percent", "marginal_percent"],
        at,
        "within_percent",
    )?;
    let (Some(expected), Some(percent)) = (n.get("expected").copied(), n.get("percent").copied())
    else {
        return Err(error(at, "within_percent needs expected and percent"));
    };
    let marginal_percent = n.get("marginal_percent").copied();
    if percent < 0.0 {
        return Err(error(at, "within_percent: percent must not be negative"));
    }
    if marginal_percent.is_some_and(|m| m < 0.0 || m >= percent) {
        return Err(error(
            at,
            "within_percent: marginal_percent must be at least 0 and under percent",
        ));
    }
    Ok(Validator::WithinPercent {
        expected,
        percent,
        marginal_percent,
    })
}

impl fmt::Display for RunIf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.passed { "passed" } else { "failed" };
        write!(f, "{} {word}", self.phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
name = "bellcore-v2 end-of-line"

[[phases]]
name = "identity"
builtin = "identity"

[[phases]]
name = "heartbeat"
builtin = "heartbeat"
timeout_s = 30
measurements = [{ name = "rssi", units = "dBm", in_range = { min = -80, max = -20, marginal_min = -75 } }]

[[phases]]
name = "power"
command = true
timeout_s = 10
repeat_limit = 2
[[phases.measurements]]
name = "vbus"
units = "V"
in_range = { min = 4.75, max = 5.25 }
[[phases.measurements]]
name = "fw_build"
matches_regex = "^v1\\."

[[phases]]
name = "leds"
prompt = "Are all three LEDs lit green?"
run_if = "power passed"
on_fail = "continue"

[[phases]]
name = "label"
prompt = "Scan the label"
scan_equals = "{sn}"
"#;

    fn refused(text: &str) -> PlanError {
        TestPlan::parse(text).expect_err("refused")
    }

    #[test]
    fn a_plan_reads_into_its_phases_in_order() {
        let plan = TestPlan::parse(PLAN).unwrap();
        let names: Vec<&str> = plan.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["identity", "heartbeat", "power", "leds", "label"]);
        let power = &plan.phases[2];
        assert_eq!(power.kind, PhaseKind::Board { command: true });
        assert_eq!(
            (power.timeout, power.repeat_limit),
            (Duration::from_secs(10), 2)
        );
        assert_eq!(power.on_fail, OnFail::Stop);
        assert_eq!(
            power.measurements[0].validator.to_string(),
            "4.75 <= x <= 5.25"
        );
        let leds = &plan.phases[3];
        assert_eq!(leds.on_fail, OnFail::Continue);
        assert_eq!(leds.run_if.as_ref().unwrap().to_string(), "power passed");
        assert_eq!(plan.measurements().count(), 3);
    }

    fn with_measurement(m: &str) -> String {
        format!("[[phases]]\nname = \"p\"\n[[phases.measurements]]\nname = \"m\"\n{m}\n")
    }

    #[test]
    fn every_bad_input_is_named() {
        let cases = [
            (with_measurement("in_rnge = { min = 1 }"), "unknown validator `in_rnge`"),
            (with_measurement("units = \"V\""), "needs exactly one validator"),
            (
                with_measurement("equals = 1\nmatches_regex = \"x\""),
                "needs exactly one validator",
            ),
            (
                with_measurement("in_range = { min = 5, max = 4 }"),
                "min is greater than max",
            ),
            (with_measurement("in_range = { min = nan }"), "finite number"),
            (with_measurement("in_range = {}"), "must give min, max, or both"),
            (
                with_measurement("in_range = { min = 1, max = 5, marginal_min = 0 }"),
                "marginal_min is below min",
            ),
            (
                with_measurement("in_range = { max = 5, marginal_min = 1 }"),
                "marginal_min without a min",
            ),
            (with_measurement("in_range = { low = 1 }"), "in_range has no `low`"),
            (with_measurement("matches_regex = \"(\""), "matches_regex:"),
            (
                with_measurement("within_percent = { expected = 5, percent = 2, marginal_percent = 3 }"),
                "marginal_percent must be",
            ),
            (
                "[[phases]]\nname = \"p\"\nmeasurements = [{ name = \"m\", equals = 1 }, { name = \"m\", equals = 2 }]\n".into(),
                "duplicate measurement",
            ),
            (
                "[[phases]]\nname = \"a\"\nmeasurements = [{ name = \"m\", equals = 1 }]\n[[phases]]\nname = \"b\"\nmeasurements = [{ name = \"m\", equals = 2 }]\n".into(),
                "duplicate measurement (also in phase a)",
            ),
            ("[[phases]]\nname = \"a\"\n[[phases]]\nname = \"a\"\n".into(), "duplicate phase name"),
            ("[[phases]]\nname = \"a\"\nrun_if = \"b passed\"\n".into(), "not an earlier phase"),
            ("[[phases]]\nname = \"a\"\non_fail = \"retry\"\n".into(), "on_fail must be"),
            ("[[phases]]\nname = \"a\"\ntimeout_s = 0\n".into(), "timeout_s must be"),
            ("[[phases]]\nname = \"a\"\nrepeat_limit = 0\n".into(), "repeat_limit must be"),
            ("[[phases]]\nname = \"a\"\nbuiltin = \"radio\"\n".into(), "unknown builtin"),
            ("[[phases]]\nname = \"a b\"\n".into(), "name must be"),
            ("[[phases]]\nname = \"a\"\ncolour = 1\n".into(), "unknown field `colour`"),
            ("name = \"empty\"\n".into(), "has no phases"),
        ];
        for (text, expected) in cases {
            let e = refused(&text);
            assert!(
                e.to_string().contains(expected),
                "{text}\n-> {e}\n(wanted {expected})"
            );
        }
        // Where: the phase and the measurement.
        let e = refused(&with_measurement("in_range = { min = 5, max = 4 }"));
        assert_eq!(e.at, "phases[0] p measurement m");
    }
}
