//! The four validators a measurement may have, with OpenHTF's semantics
//! (`openhtf/util/validators.py`): `in_range` (`InRange`: bounds inclusive, an optional marginal
//! band inside them, NaN never passes), `equals` (a number is a one-point range, a string must
//! match whole), `matches_regex` (`RegexMatcher`: matched at the start, as Python's `re.match`)
//! and `within_percent` (`WithinPercent`). Each describes itself as OpenHTF's `__str__` does, the
//! text a record's `validators` list holds.

use std::fmt;

/// What a board reported for a measurement.
#[derive(Debug, Clone, PartialEq)]
pub enum MeasuredValue {
    Number(f64),
    Text(String),
}

impl MeasuredValue {
    /// A console value: a number when it reads as one (finite or not), else text.
    pub fn parse(text: &str) -> MeasuredValue {
        match text.trim().parse::<f64>() {
            Ok(n) => MeasuredValue::Number(n),
            Err(_) => MeasuredValue::Text(text.to_owned()),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            MeasuredValue::Number(n) => Some(*n),
            MeasuredValue::Text(_) => None,
        }
    }
}

impl fmt::Display for MeasuredValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasuredValue::Number(n) => write!(f, "{n}"),
            MeasuredValue::Text(t) => f.write_str(t),
        }
    }
}

/// The value `equals` expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Number(f64),
    Text(String),
}

/// One validator, checked when the plan is read (see [`crate::eol::plan`]).
#[derive(Debug, Clone)]
pub enum Validator {
    InRange {
        min: Option<f64>,
        max: Option<f64>,
        marginal_min: Option<f64>,
        marginal_max: Option<f64>,
    },
    Equals(Expected),
    MatchesRegex(regex::Regex),
    WithinPercent {
        expected: f64,
        percent: f64,
        marginal_percent: Option<f64>,
    },
}

/// A measured value against its validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    pub pass: bool,
    /// Passed, but inside the marginal band (only a passing value is marginal).
    pub marginal: bool,
}

impl Validator {
    /// Judges `value`: a number against a numeric validator, anything against `equals` or
    /// `matches_regex`; a number that is NaN never passes, text never passes a range.
    pub fn judge(&self, value: &MeasuredValue) -> Judgement {
        let pass = self.passes(value);
        let marginal = pass && self.is_marginal(value);
        Judgement { pass, marginal }
    }

    fn passes(&self, value: &MeasuredValue) -> bool {
        match self {
            Validator::InRange { min, max, .. } => value.number().is_some_and(|v| {
                !v.is_nan() && min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
            }),
            Validator::Equals(Expected::Number(e)) => value.number() == Some(*e),
            Validator::Equals(Expected::Text(e)) => *value == MeasuredValue::Text(e.clone()),
            Validator::MatchesRegex(re) => {
                re.find(&value.to_string()).is_some_and(|m| m.start() == 0)
            }
            Validator::WithinPercent { .. } => {
                let (lo, hi) = self.percent_bounds();
                value.number().is_some_and(|v| lo <= v && v <= hi)
            }
        }
    }

    fn is_marginal(&self, value: &MeasuredValue) -> bool {
        let Some(v) = value.number().filter(|v| !v.is_nan()) else {
            return false;
        };
        match self {
            Validator::InRange {
                min,
                max,
                marginal_min,
                marginal_max,
            } => {
                let low = min
                    .zip(*marginal_min)
                    .is_some_and(|(lo, m)| lo <= v && v <= m);
                let high = max
                    .zip(*marginal_max)
                    .is_some_and(|(hi, m)| m <= v && v <= hi);
                low || high
            }
            Validator::WithinPercent {
                expected,
                marginal_percent: Some(mp),
                ..
            } => {
                let (lo, hi) = self.percent_bounds();
                let band = (expected * mp / 100.0).abs();
                (lo < v && v <= expected - band) || (expected + band <= v && v < hi)
            }
            _ => false,
        }
    }

    /// `within_percent`'s inclusive bounds.
    fn percent_bounds(&self) -> (f64, f64) {
        match self {
            Validator::WithinPercent {
                expected, percent, ..
            } => {
                let spread = (expected * percent / 100.0).abs();
                (expected - spread, expected + spread)
            }
            _ => (f64::NAN, f64::NAN),
        }
    }

    /// The limits a report draws a numeric measurement against: (min, max), either open.
    pub fn limits(&self) -> (Option<f64>, Option<f64>) {
        match self {
            Validator::InRange { min, max, .. } => (*min, *max),
            Validator::Equals(Expected::Number(e)) => (Some(*e), Some(*e)),
            Validator::WithinPercent { .. } => {
                let (lo, hi) = self.percent_bounds();
                (Some(lo), Some(hi))
            }
            _ => (None, None),
        }
    }
}

/// A number as Python prints it in OpenHTF's descriptions (`-65`, `3.3`).
struct Num(f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.fract() == 0.0 && self.0.abs() < 1e15 {
            write!(f, "{}", self.0 as i64)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for Validator {
    /// OpenHTF's `__str__` of the same validator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validator::InRange {
                min: Some(lo),
                max: Some(hi),
                ..
            } if lo == hi => write!(f, "x == {}", Num(*lo)),
            Validator::InRange {
                min,
                max,
                marginal_min,
                marginal_max,
            } => {
                if let Some(lo) = min {
                    write!(f, "{} <= ", Num(*lo))?;
                }
                if let Some(m) = marginal_min {
                    write!(f, "Marginal:{} <= ", Num(*m))?;
                }
                f.write_str("x")?;
                if let Some(m) = marginal_max {
                    write!(f, " <= Marginal:{}", Num(*m))?;
                }
                if let Some(hi) = max {
                    write!(f, " <= {}", Num(*hi))?;
                }
                Ok(())
            }
            Validator::Equals(Expected::Number(e)) => write!(f, "x == {}", Num(*e)),
            Validator::Equals(Expected::Text(e)) => {
                write!(f, "'x' matches /^{}$/", regex::escape(e))
            }
            Validator::MatchesRegex(re) => write!(f, "'x' matches /{}/", re.as_str()),
            Validator::WithinPercent {
                expected,
                percent,
                marginal_percent,
            } => {
                write!(f, "'x' is within {}% of {}.", Num(*percent), Num(*expected))?;
                if let Some(mp) = marginal_percent {
                    write!(f, " Marginal: {}% of {}", Num(*mp), Num(*expected))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(min: f64, max: f64, mmin: Option<f64>, mmax: Option<f64>) -> Validator {
        Validator::InRange {
            min: Some(min),
            max: Some(max),
            marginal_min: mmin,
            marginal_max: mmax,
        }
    }

    fn judge(v: &Validator, x: f64) -> (bool, bool) {
        let j = v.judge(&MeasuredValue::Number(x));
        (j.pass, j.marginal)
    }

    #[test]
    fn a_range_includes_both_bounds_and_never_nan() {
        let v = range(-70.0, -20.0, None, None);
        assert_eq!(judge(&v, -70.0), (true, false));
        assert_eq!(judge(&v, -20.0), (true, false));
        assert_eq!(judge(&v, -70.000001), (false, false));
        assert_eq!(judge(&v, -19.999999), (false, false));
        assert_eq!(judge(&v, f64::NAN), (false, false));
        assert!(!v.judge(&MeasuredValue::Text("-30".into())).pass);
    }

    #[test]
    fn the_marginal_band_is_inclusive_and_only_for_a_pass() {
        let v = range(3.0, 3.6, Some(3.1), Some(3.5));
        assert_eq!(judge(&v, 3.0), (true, true));
        assert_eq!(judge(&v, 3.1), (true, true));
        assert_eq!(judge(&v, 3.1000001), (true, false));
        assert_eq!(judge(&v, 3.3), (true, false));
        assert_eq!(judge(&v, 3.5), (true, true));
        assert_eq!(judge(&v, 3.6), (true, true));
        assert_eq!(judge(&v, 3.61), (false, false));
    }

    #[test]
    fn equals_and_regex_follow_openhtf() {
        let n = Validator::Equals(Expected::Number(1.0));
        assert!(n.judge(&MeasuredValue::parse("1.0")).pass);
        assert!(!n.judge(&MeasuredValue::parse("1.01")).pass);
        let t = Validator::Equals(Expected::Text("PV-1".into()));
        assert!(t.judge(&MeasuredValue::parse("PV-1")).pass);
        assert!(!t.judge(&MeasuredValue::parse("PV-12")).pass);
        // Python's re.match: anchored at the start only.
        let r = Validator::MatchesRegex(regex::Regex::new("ab+").unwrap());
        assert!(r.judge(&MeasuredValue::parse("abbbc")).pass);
        assert!(!r.judge(&MeasuredValue::parse("cab")).pass);
    }

    #[test]
    fn within_percent_has_inclusive_bounds_and_an_exclusive_marginal_edge() {
        let v = Validator::WithinPercent {
            expected: 100.0,
            percent: 10.0,
            marginal_percent: Some(5.0),
        };
        assert_eq!(judge(&v, 90.0), (true, false)); // OpenHTF: minimum < value
        assert_eq!(judge(&v, 92.0), (true, true));
        assert_eq!(judge(&v, 95.0), (true, true));
        assert_eq!(judge(&v, 100.0), (true, false));
        assert_eq!(judge(&v, 110.0), (true, false));
        assert_eq!(judge(&v, 110.5), (false, false));
        assert_eq!(v.limits(), (Some(90.0), Some(110.0)));
    }

    #[test]
    fn descriptions_are_openhtfs() {
        assert_eq!(
            range(-70.0, -20.0, Some(-65.0), None).to_string(),
            "-70 <= Marginal:-65 <= x <= -20"
        );
        assert_eq!(range(3.3, 3.3, None, None).to_string(), "x == 3.3");
        assert_eq!(
            Validator::MatchesRegex(regex::Regex::new("^v1").unwrap()).to_string(),
            "'x' matches /^v1/"
        );
        assert_eq!(
            Validator::WithinPercent {
                expected: 5.0,
                percent: 2.0,
                marginal_percent: None
            }
            .to_string(),
            "'x' is within 2% of 5."
        );
    }
}
