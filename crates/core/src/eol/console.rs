//! What a board in factory mode prints for the end-of-line test, and the command the station
//! sends it: `vesper: phase NAME begin|end` around a phase, `vesper: meas NAME=VALUE [UNIT]`
//! for each measurement, and `vesper test PHASE\n` on the console to start a phase that asks for
//! it. The same lines as the firmware core's factory-test module (firmware/lib/vesper_core),
//! read here from lines [`crate::device::ConsoleLines`] has already split and bounded.

use super::plan::is_name;
use super::validators::MeasuredValue;

/// A factory-mode console line.
#[derive(Debug, Clone, PartialEq)]
pub enum FactoryLine {
    PhaseBegin(String),
    PhaseEnd(String),
    Measurement {
        name: String,
        value: MeasuredValue,
        unit: Option<String>,
    },
}

const PREFIX: &str = "vesper: ";

/// A factory-mode line, or `None` for any other line (the boot line, a log message, noise).
pub fn read(line: &str) -> Option<FactoryLine> {
    let rest = line.trim_end_matches(['\r', '\n']).strip_prefix(PREFIX)?;
    if let Some(phase) = rest.strip_prefix("phase ") {
        let (name, word) = phase.split_once(' ')?;
        if !is_name(name) {
            return None;
        }
        return match word {
            "begin" => Some(FactoryLine::PhaseBegin(name.to_owned())),
            "end" => Some(FactoryLine::PhaseEnd(name.to_owned())),
            _ => None,
        };
    }
    let measurement = rest.strip_prefix("meas ")?;
    let (name, value_and_unit) = measurement.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let (value, unit) = match value_and_unit.split_once(' ') {
        Some((value, unit)) if !unit.trim().is_empty() => (value, Some(unit.trim().to_owned())),
        _ => (value_and_unit.trim(), None),
    };
    if value.is_empty() {
        return None;
    }
    Some(FactoryLine::Measurement {
        name: name.to_owned(),
        value: MeasuredValue::parse(value),
        unit,
    })
}

/// The console command that starts `phase` on a board in factory mode.
pub fn command(phase: &str) -> String {
    format!("vesper test {phase}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/vectors/device/factory.tsv, shared with the firmware core and `vesper sim`.
    #[test]
    fn the_shared_vectors_read_as_the_firmware_prints_them() {
        let vectors = include_str!("../../../../tests/vectors/device/factory.tsv");
        let mut count = 0;
        for row in vectors.lines().filter(|l| !l.starts_with('#')) {
            let r: Vec<&str> = row.split('\t').collect();
            let text = *r.last().unwrap();
            let expected = match r[0] {
                "phase_begin" => Some(FactoryLine::PhaseBegin(r[1].into())),
                "phase_end" => Some(FactoryLine::PhaseEnd(r[1].into())),
                "meas" => Some(FactoryLine::Measurement {
                    name: r[1].into(),
                    value: MeasuredValue::parse(r[2]),
                    unit: (!r[3].is_empty()).then(|| r[3].to_owned()),
                }),
                "command" => {
                    // The station's side: the command it writes for a phase.
                    if !text.is_empty() {
                        assert_eq!(command(text), format!("{}\n", r[1]), "{row}");
                    }
                    count += 1;
                    continue;
                }
                other => panic!("unknown kind {other}"),
            };
            assert_eq!(read(text), expected, "{row}");
            count += 1;
        }
        assert!(count >= 10);
    }

    #[test]
    fn factory_lines_are_read_and_others_ignored() {
        assert_eq!(
            read("vesper: phase power begin\r\n"),
            Some(FactoryLine::PhaseBegin("power".into()))
        );
        assert_eq!(
            read("vesper: phase power end"),
            Some(FactoryLine::PhaseEnd("power".into()))
        );
        assert_eq!(
            read("vesper: meas vbus=5.02 V"),
            Some(FactoryLine::Measurement {
                name: "vbus".into(),
                value: MeasuredValue::Number(5.02),
                unit: Some("V".into())
            })
        );
        assert_eq!(
            read("vesper: meas fw_build=v1.4.2"),
            Some(FactoryLine::Measurement {
                name: "fw_build".into(),
                value: MeasuredValue::Text("v1.4.2".into()),
                unit: None
            })
        );
        for other in [
            "vesper: boot sn=PV-1 hw=A1 fw=1.0.0 mac=24:0A:C4:00:00:01 chip=esp32",
            "vesper: phase power started",
            "vesper: meas =5",
            "vesper: meas vbus=",
            "vesper: meas bad name=5",
            "I (312) wifi: connected",
            "",
        ] {
            assert_eq!(read(other), None, "{other}");
        }
        assert_eq!(command("power"), "vesper test power\n");
    }
}
