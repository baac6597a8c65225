//! The firmware's factory mode, for the end-of-line test: a board whose NVS has `factory_test`
//! = 1 answers the station's `vesper test PHASE` on its console with `vesper: phase PHASE
//! begin`, one `vesper: meas NAME=VALUE` line for each measurement it was given, and `vesper:
//! phase PHASE end` (the lines of DESIGN.md section 3 and issue 27, which the firmware core's
//! factory-test module prints). It was given its measurements with `--measure NAME=VALUE[~SPREAD]`
//! and reports every one in every phase (a simulated board has no idea which phase measures
//! what; the station keeps the ones its plan names for the phase). `--fail PHASE` ends that phase
//! with an error line and no measurements, `--hang PHASE` never ends it.
//!
//! Written from those lines, not with the product's reader (`vesper_core::eol::console`): the
//! board is a judge of the station, not its echo.

use std::str::FromStr;

/// A measurement the board reports: `NAME=VALUE`, or `NAME=VALUE~SPREAD` for a number drawn
/// (per board, from its MAC) uniformly within `VALUE ± SPREAD`.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    pub name: String,
    pub value: String,
    pub spread: Option<f64>,
}

/// What the board does in factory mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FactoryScript {
    pub measures: Vec<Measure>,
    /// Phases that end with an error and no measurements.
    pub fail: Vec<String>,
    /// Phases that begin and never end.
    pub hang: Vec<String>,
}

/// A phase or measurement name as the firmware accepts it.
pub fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl FromStr for Measure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not NAME=VALUE or NAME=NUMBER~SPREAD");
        let (name, rest) = s.split_once('=').ok_or_else(bad)?;
        if !is_name(name) || rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (value, spread) = match rest.split_once('~') {
            None => (rest.to_owned(), None),
            Some((value, spread)) => {
                let number = value.parse::<f64>().ok().filter(|v| v.is_finite());
                let spread = spread
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0);
                match (number, spread) {
                    (Some(_), Some(spread)) => (value.to_owned(), Some(spread)),
                    _ => return Err(bad()),
                }
            }
        };
        Ok(Measure {
            name: name.to_owned(),
            value,
            spread,
        })
    }
}

impl Measure {
    /// The value this board reports: the value itself, or one drawn from `seed` within the
    /// spread (rounded to 3 decimals, as a board's ADC reading would be printed).
    fn reading(&self, seed: u64) -> String {
        let Some(spread) = self.spread else {
            return self.value.clone();
        };
        let centre: f64 = self.value.parse().unwrap_or_default();
        let mut x = seed ^ fnv(self.name.as_bytes());
        // xorshift64*: a fixed, portable draw per board and measurement.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let unit = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        let value = centre + spread * (2.0 * unit - 1.0);
        format!("{:.3}", value)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The phase named by a console command `vesper test PHASE`, if the line is one.
pub fn command(line: &str) -> Option<&str> {
    let phase = line
        .trim_end_matches(['\r', '\n'])
        .strip_prefix("vesper test ")?;
    is_name(phase).then_some(phase)
}

impl FactoryScript {
    /// The console lines the board prints for `vesper test PHASE` (a hanging phase: only its
    /// begin line). `seed` makes each board's drawn values its own.
    pub fn answer(&self, phase: &str, seed: u64) -> Vec<String> {
        let mut lines = vec![format!("vesper: phase {phase} begin")];
        if self.hang.iter().any(|p| p == phase) {
            return lines;
        }
        if self.fail.iter().any(|p| p == phase) {
            lines.push(format!("vesper: error what=phase {phase} failed"));
        } else {
            for m in &self.measures {
                lines.push(format!("vesper: meas {}={}", m.name, m.reading(seed)));
            }
        }
        lines.push(format!("vesper: phase {phase} end"));
        lines
    }
}

/// Splits what the host sends on the console into lines, bounded: a line longer than a command
/// can be is dropped whole.
#[derive(Debug, Default)]
pub struct CommandLines {
    line: Vec<u8>,
    overlong: bool,
}

impl CommandLines {
    const MAX: usize = 128;

    /// Feeds bytes; returns the phases of the complete `vesper test PHASE` lines among them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut phases = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                if !self.overlong
                    && let Some(phase) = command(&String::from_utf8_lossy(&self.line))
                {
                    phases.push(phase.to_owned());
                }
                self.line.clear();
                self.overlong = false;
            } else if self.line.len() < Self::MAX {
                self.line.push(b);
            } else {
                self.overlong = true;
            }
        }
        phases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/vectors/device/factory.tsv, shared with the firmware core and the station.
    #[test]
    fn the_board_prints_and_reads_the_shared_vectors() {
        let vectors = include_str!("../../../tests/vectors/device/factory.tsv");
        for row in vectors.lines().filter(|l| !l.starts_with('#')) {
            let r: Vec<&str> = row.split('\t').collect();
            let text = *r.last().unwrap();
            match r[0] {
                "phase_begin" | "phase_end" => {
                    let script = FactoryScript::default();
                    let lines = script.answer(r[1], 0);
                    let at = if r[0] == "phase_begin" { 0 } else { 1 };
                    assert_eq!(lines[at], text, "{row}");
                }
                // The board prints no unit: the rows without one.
                "meas" if r[3].is_empty() => {
                    let script = FactoryScript {
                        measures: vec![format!("{}={}", r[1], r[2]).parse().unwrap()],
                        ..FactoryScript::default()
                    };
                    assert_eq!(script.answer("p", 0)[1], text, "{row}");
                }
                "meas" => {}
                "command" => assert_eq!(command(r[1]).unwrap_or_default(), r[2], "{row}"),
                other => panic!("unknown kind {other}"),
            }
        }
    }

    #[test]
    fn measures_are_read_from_the_command_line_form() {
        assert_eq!(
            "vbus=5.02".parse::<Measure>(),
            Ok(Measure {
                name: "vbus".into(),
                value: "5.02".into(),
                spread: None
            })
        );
        assert_eq!("rssi=-55~5".parse::<Measure>().unwrap().spread, Some(5.0));
        assert_eq!("build=v1.4".parse::<Measure>().unwrap().value, "v1.4");
        for bad in [
            "vbus",
            "=5",
            "vbus=",
            "v bus=5",
            "build=v1~2",
            "vbus=5~-1",
            "vbus=5~x",
        ] {
            assert!(bad.parse::<Measure>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_phase_is_answered_as_the_firmware_prints_it() {
        let script = FactoryScript {
            measures: vec!["vbus=5.02".parse().unwrap(), "rssi=-55~5".parse().unwrap()],
            fail: vec!["leds".into()],
            hang: vec!["radio".into()],
        };
        let power = script.answer("power", 7);
        assert_eq!(power[0], "vesper: phase power begin");
        assert_eq!(power[1], "vesper: meas vbus=5.02");
        let rssi: f64 = power[2]
            .strip_prefix("vesper: meas rssi=")
            .unwrap()
            .parse()
            .unwrap();
        assert!((-60.0..=-50.0).contains(&rssi), "{rssi}");
        assert_eq!(power[3], "vesper: phase power end");
        // The same board draws the same value; another board its own.
        assert_eq!(script.answer("power", 7), power);
        assert_ne!(script.answer("power", 8)[2], power[2]);
        assert_eq!(
            script.answer("leds", 7),
            [
                "vesper: phase leds begin",
                "vesper: error what=phase leds failed",
                "vesper: phase leds end"
            ]
        );
        assert_eq!(script.answer("radio", 7), ["vesper: phase radio begin"]);
    }

    #[test]
    fn commands_are_whole_lines_and_bounded() {
        let mut lines = CommandLines::default();
        assert!(lines.feed(b"vesper test po").is_empty());
        assert_eq!(lines.feed(b"wer\r\nnoise\nvesper test x y\n"), ["power"]);
        let long = format!("vesper test {}\n", "a".repeat(200));
        assert!(lines.feed(long.as_bytes()).is_empty());
        assert_eq!(lines.feed(b"vesper test leds\n"), ["leds"]);
    }
}
