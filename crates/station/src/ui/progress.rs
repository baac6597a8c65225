//! The progress of one flash job, folded from the engine's events, and how it is drawn.

use std::time::{Duration, Instant};

use ratatui::text::{Line, Span};

use super::theme::{Mark, Theme};
use vesper_flash::FlashEvent;

/// Where one part (bootloader, partitions, app, nvs...) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartState {
    Pending,
    Writing,
    Verifying,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartProgress {
    pub name: String,
    pub bytes: usize,
    pub done: usize,
    pub state: PartState,
}

/// A flash job as the screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FlashProgress {
    pub parts: Vec<PartProgress>,
    pub chip: Option<String>,
    pub mac: Option<String>,
    pub firmware: Option<String>,
    /// Connection attempt (1 unless the engine retried).
    pub attempt: u32,
    /// Why the engine retried, if it did.
    pub note: Option<String>,
    /// When the job started and when the first byte went out.
    pub started: Instant,
    pub writing_since: Option<Instant>,
    /// Seconds the flash took, once done.
    pub seconds: Option<f64>,
}

impl FlashProgress {
    pub fn new(now: Instant) -> FlashProgress {
        FlashProgress {
            parts: Vec::new(),
            chip: None,
            mac: None,
            firmware: None,
            attempt: 1,
            note: None,
            started: now,
            writing_since: None,
            seconds: None,
        }
    }

    /// The plan is known: its firmware version and parts.
    pub fn prepared(&mut self, firmware: &str, parts: &[(String, usize)]) {
        self.firmware = Some(firmware.to_owned());
        self.parts = parts
            .iter()
            .map(|(name, bytes)| PartProgress {
                name: name.clone(),
                bytes: *bytes,
                done: 0,
                state: PartState::Pending,
            })
            .collect();
    }

    fn part(&mut self, name: &str) -> Option<&mut PartProgress> {
        self.parts.iter_mut().find(|p| p.name == name)
    }

    /// Folds one engine event in.
    pub fn apply(&mut self, event: &FlashEvent, now: Instant) {
        match event {
            FlashEvent::Connecting { attempt, .. } => self.attempt = *attempt,
            FlashEvent::Connected { chip, mac, .. } => {
                self.chip = Some(chip.clone());
                self.mac = Some(mac.clone());
            }
            FlashEvent::PartStarted { part, bytes, .. } => {
                self.writing_since.get_or_insert(now);
                if self.part(part).is_none() {
                    self.parts.push(PartProgress {
                        name: part.clone(),
                        bytes: *bytes,
                        done: 0,
                        state: PartState::Pending,
                    });
                }
                if let Some(p) = self.part(part) {
                    p.state = PartState::Writing;
                    p.done = 0;
                }
            }
            FlashEvent::PartProgress {
                part, done, total, ..
            } => {
                if let Some(p) = self.part(part) {
                    p.bytes = *total;
                    p.done = (*done).min(*total);
                }
            }
            FlashEvent::PartVerifying { part, .. } => {
                if let Some(p) = self.part(part) {
                    p.state = PartState::Verifying;
                }
            }
            FlashEvent::PartDone { part, .. } => {
                if let Some(p) = self.part(part) {
                    p.state = PartState::Done;
                    p.done = p.bytes;
                }
            }
            FlashEvent::Retrying {
                attempt, reason, ..
            } => {
                self.attempt = *attempt;
                self.note = Some(reason.clone());
                for p in &mut self.parts {
                    p.done = 0;
                    p.state = PartState::Pending;
                }
            }
            FlashEvent::Done {
                chip, mac, seconds, ..
            } => {
                self.chip = Some(chip.clone());
                self.mac = Some(mac.clone());
                self.seconds = Some(*seconds);
            }
            FlashEvent::Failed { .. } => {}
        }
    }

    /// Bytes written and to write, over all parts.
    pub fn totals(&self) -> (usize, usize) {
        self.parts
            .iter()
            .fold((0, 0), |(d, t), p| (d + p.done, t + p.bytes))
    }

    /// Write rate and time left, once writing has begun.
    pub fn rate_and_eta(&self, now: Instant) -> Option<(f64, Duration)> {
        let since = self.writing_since?;
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        let (done, total) = self.totals();
        if elapsed < 0.2 || done == 0 {
            return None;
        }
        let rate = done as f64 / elapsed;
        Some((
            rate,
            Duration::from_secs_f64((total - done) as f64 / rate.max(1.0)),
        ))
    }

    /// One line per part, then the total, fitted to `width` columns.
    pub fn lines(&self, width: u16, now: Instant, theme: Theme) -> Vec<Line<'static>> {
        let mut lines: Vec<Line> = self
            .parts
            .iter()
            .map(|p| {
                let (mark, style) = match p.state {
                    PartState::Done => (Mark::Done.symbol(), theme.mark(Mark::Done)),
                    PartState::Verifying => ("…", theme.mark(Mark::Running)),
                    PartState::Writing => ("", theme.mark(Mark::Running)),
                    PartState::Pending => ("", theme.dim()),
                };
                let percent = p.done * 100 / p.bytes.max(1);
                bar_line(&p.name, percent, mark, width, style)
            })
            .collect();
        let (done, total) = self.totals();
        if let Some(percent) = (done * 100).checked_div(total) {
            let detail = match self.rate_and_eta(now) {
                Some((rate, eta)) => {
                    format!("{} KB/s · ETA {} s", (rate / 1024.0).round(), eta.as_secs())
                }
                None => "connecting…".into(),
            };
            lines.push(bar_line("total", percent, "", width, theme.strong()));
            lines.push(Line::from(Span::styled(detail, theme.dim())));
        }
        lines
    }
}

/// `name ██████░░░░  61% ✓`, with the bar filling what `width` leaves.
pub fn bar_line(
    name: &str,
    percent: usize,
    mark: &str,
    width: u16,
    style: ratatui::style::Style,
) -> Line<'static> {
    let name = name.strip_suffix(".bin").unwrap_or(name);
    let label = format!("{name:<10.10} ");
    let tail = format!(" {percent:>3}% {mark}");
    let room = usize::from(width).saturating_sub(label.chars().count() + tail.chars().count());
    let bar_width = room.clamp(0, 30);
    let filled = bar_width * percent.min(100) / 100;
    Line::from(vec![
        Span::raw(label),
        Span::styled("█".repeat(filled), style),
        Span::styled("░".repeat(bar_width - filled), style),
        Span::styled(tail, style),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_stream() -> Vec<FlashEvent> {
        let port = "p".to_owned();
        vec![
            FlashEvent::Connecting {
                port: port.clone(),
                attempt: 1,
            },
            FlashEvent::Connected {
                port: port.clone(),
                chip: "ESP32".into(),
                mac: "24:0A:C4:00:00:01".into(),
                flash_size: "4MB".into(),
            },
            FlashEvent::PartStarted {
                port: port.clone(),
                part: "app".into(),
                offset: 0x20000,
                bytes: 1000,
            },
            FlashEvent::PartProgress {
                port: port.clone(),
                part: "app".into(),
                done: 500,
                total: 1000,
            },
        ]
    }

    #[test]
    fn events_fold_into_parts_and_a_retry_starts_over() {
        let now = Instant::now();
        let mut p = FlashProgress::new(now);
        p.prepared("1.0.1", &[("app".into(), 1000), ("nvs".into(), 100)]);
        for e in event_stream() {
            p.apply(&e, now);
        }
        assert_eq!(p.totals(), (500, 1100));
        assert_eq!(p.mac.as_deref(), Some("24:0A:C4:00:00:01"));
        p.apply(
            &FlashEvent::Retrying {
                port: "p".into(),
                attempt: 2,
                reason: "no sync".into(),
            },
            now,
        );
        assert_eq!(p.totals(), (0, 1100));
        assert_eq!(p.attempt, 2);
        assert!(p.parts.iter().all(|x| x.state == PartState::Pending));
    }

    #[test]
    fn bars_fit_their_width() {
        let line = bar_line("app", 61, "", 34, ratatui::style::Style::new());
        assert_eq!(line.width(), 34);
        let full = bar_line("bootloader", 100, "✓", 34, ratatui::style::Style::new());
        assert!(full.to_string().contains("100% ✓"));
    }
}
