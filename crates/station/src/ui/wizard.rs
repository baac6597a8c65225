//! The provision wizard, the customer's four steps for one board:
//! 1 select (type, scan, or quick-create) › 2 flash (port, progress per part) ›
//! 3 verify (boot log, first heartbeat) › 4 done (summary, next device, label).

use std::collections::VecDeque;
use std::time::Instant;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use tui_input::Input;
use tui_input::backend::crossterm::to_input_request;

use super::action::{Action, Job, Owner, Task};
use super::progress::FlashProgress;
use super::theme::{Mark, Theme};
use super::{Component, Cx, View};
use vesper_client::BatchOrder;
use vesper_core::model::Device;
use vesper_core::serial::SerialNumber;
use vesper_flash::FlashEvent;

/// The four steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Select,
    Flash,
    Verify,
    Done,
}

impl Step {
    const ALL: [(Step, &'static str); 4] = [
        (Step::Select, "1 Select"),
        (Step::Flash, "2 Flash"),
        (Step::Verify, "3 Verify"),
        (Step::Done, "4 Done"),
    ];
}

/// Where the flash step is.
#[derive(Debug, Clone, PartialEq)]
pub enum FlashPhase {
    /// Choosing the port.
    Choosing,
    Claiming,
    Flashing(FlashProgress),
    Failed(String),
}

/// Where the verify step is.
#[derive(Debug, Clone, PartialEq)]
pub struct Verify {
    pub since: Instant,
    pub console: VecDeque<String>,
    pub failed: Option<String>,
}

/// The wizard's state.
#[derive(Debug, Clone)]
pub struct Wizard {
    pub step: Step,
    pub input: Input,
    /// Newest search request; older answers are dropped.
    request: u64,
    pub matches: Vec<Device>,
    pub selected: usize,
    /// A full serial number was typed or scanned and is being looked up.
    looking_up: Option<String>,
    /// A one-device batch is being created for the quick-create key.
    creating: bool,
    pub device: Option<Device>,
    pub ports: Vec<String>,
    pub port: usize,
    pub job: Job,
    pub phase: FlashPhase,
    pub verify: Option<Verify>,
    pub chip: Option<String>,
    pub mac: Option<String>,
    pub firmware: Option<String>,
    pub flash_seconds: f64,
    pub started: Option<Instant>,
    pub total_seconds: f64,
    /// Board and plan for quick-created devices ("next device" keeps them).
    pub board: String,
    pub boards: Vec<String>,
    pub error: Option<String>,
    /// Bench slots working on a board, and its port: the wizard leaves those ports alone.
    pub bench_ports: Vec<(usize, String)>,
}

impl Wizard {
    pub fn new(boards: Vec<String>) -> Wizard {
        Wizard {
            step: Step::Select,
            input: Input::default(),
            request: 0,
            matches: Vec::new(),
            selected: 0,
            looking_up: None,
            creating: false,
            device: None,
            ports: Vec::new(),
            port: 0,
            job: 0,
            phase: FlashPhase::Choosing,
            verify: None,
            chip: None,
            mac: None,
            firmware: None,
            flash_seconds: 0.0,
            started: None,
            total_seconds: 0.0,
            board: boards.first().cloned().unwrap_or_default(),
            boards,
            error: None,
            bench_ports: Vec::new(),
        }
    }

    /// The port the wizard has open or is about to open (flashing, or reading the boot log).
    pub fn port_in_use(&self) -> Option<&str> {
        let using = match self.step {
            Step::Flash => matches!(self.phase, FlashPhase::Claiming | FlashPhase::Flashing(_)),
            Step::Verify => true,
            Step::Select | Step::Done => false,
        };
        using
            .then(|| self.ports.get(self.port).map(String::as_str))
            .flatten()
    }

    fn search(&mut self, cx: &mut Cx) {
        self.request += 1;
        let text = self.input.value().trim().to_owned();
        if text.is_empty() {
            self.matches.clear();
            return;
        }
        cx.tasks.push(Task::Search {
            request: self.request,
            text,
        });
    }

    /// Enter on the select step: a full serial number (typed or scanned) wins over the list.
    fn choose(&mut self, cx: &mut Cx) {
        let text = self.input.value().trim().to_ascii_uppercase();
        match text.parse::<SerialNumber>() {
            Ok(sn) => {
                if let Some(d) = self.matches.iter().find(|d| d.serial_number == sn.as_str()) {
                    let d = d.clone();
                    self.pick(d, cx);
                } else {
                    self.looking_up = Some(sn.as_str().to_owned());
                    cx.tasks.push(Task::Device(sn.as_str().to_owned()));
                }
            }
            Err(e) => {
                if let Some(d) = self.matches.get(self.selected).cloned() {
                    self.pick(d, cx);
                } else if !text.is_empty() {
                    self.error = Some(format!(
                        "`{text}` matches no device and is not a serial number: {e}"
                    ));
                }
            }
        }
    }

    /// The device is chosen: on to the flash step.
    fn pick(&mut self, device: Device, cx: &mut Cx) {
        self.error = None;
        self.device = Some(device);
        self.step = Step::Flash;
        self.phase = FlashPhase::Choosing;
        self.chip = None;
        self.mac = None;
        self.started = Some(cx.now);
        cx.tasks.push(Task::ListPorts);
    }

    fn quick_create(&mut self, cx: &mut Cx) {
        if self.board.is_empty() {
            self.error = Some("no boards in the configuration".into());
            return;
        }
        self.creating = true;
        cx.tasks
            .push(Task::CreateBatch(BatchOrder::of(&self.board, 1)));
    }

    /// Claims the device for this station and flashes it on the chosen port.
    fn start_flash(&mut self, cx: &mut Cx) {
        let (Some(device), Some(port)) = (&self.device, self.ports.get(self.port)) else {
            self.error = Some("no port: plug the board in (r refreshes the list)".into());
            return;
        };
        if let Some((slot, _)) = self.bench_ports.iter().find(|(_, p)| p == port) {
            self.error = Some(format!(
                "slot {} of the bench is working on the board on this port: choose another",
                slot + 1
            ));
            return;
        }
        self.error = None;
        self.job += 1;
        self.phase = FlashPhase::Claiming;
        cx.tasks.push(Task::Claim {
            owner: Owner::Wizard,
            job: self.job,
            sn: device.serial_number.clone(),
        });
    }

    /// The verify step begins: the pipeline reports the flash and waits for the heartbeat.
    fn verifying(&mut self, cx: &mut Cx) {
        self.step = Step::Verify;
        self.verify = Some(Verify {
            since: cx.now,
            console: VecDeque::new(),
            failed: None,
        });
    }

    /// Verifies again (a board that was slow to reach the broker), without flashing again.
    fn verify_again(&mut self, cx: &mut Cx) {
        let (Some(device), Some(port)) = (self.device.clone(), self.ports.get(self.port).cloned())
        else {
            return;
        };
        self.verifying(cx);
        cx.tasks.push(Task::Verify {
            owner: Owner::Wizard,
            job: self.job,
            sn: device.serial_number,
            port,
            chip: self.chip.clone().unwrap_or_default(),
            mac: self.mac.clone().unwrap_or_default(),
            firmware_version: self.firmware.clone().unwrap_or_default(),
        });
    }

    /// Back to step 1, keeping the board for quick-create.
    fn next_device(&mut self) {
        let boards = std::mem::take(&mut self.boards);
        let board = std::mem::take(&mut self.board);
        let (request, job) = (self.request, self.job);
        *self = Wizard::new(boards);
        self.board = board;
        self.request = request + 1;
        self.job = job + 1;
    }

    /// Leaves the flash step: the claim goes back so another station may take the device.
    fn abandon(&mut self, cx: &mut Cx) {
        if let Some(d) = &self.device {
            cx.tasks.push(Task::Release {
                sn: d.serial_number.clone(),
                owner: Owner::Wizard,
            });
        }
        self.job += 1;
        self.step = Step::Select;
        self.device = None;
        self.phase = FlashPhase::Choosing;
    }

    fn mine(&self, owner: Owner, job: Job) -> bool {
        owner == Owner::Wizard && job == self.job
    }

    fn on_flash(&mut self, event: &FlashEvent, cx: &mut Cx) {
        match event {
            FlashEvent::Done {
                chip, mac, seconds, ..
            } => {
                self.chip = Some(chip.clone());
                self.mac = Some(mac.clone());
                self.flash_seconds = *seconds;
                self.verifying(cx);
            }
            FlashEvent::Failed { error, .. } => self.phase = FlashPhase::Failed(error.clone()),
            other => {
                if let FlashEvent::Connected { chip, mac, .. } = other {
                    self.chip = Some(chip.clone());
                    self.mac = Some(mac.clone());
                }
                if let FlashPhase::Flashing(p) = &mut self.phase {
                    p.apply(other, cx.now);
                }
            }
        }
    }

    fn select_keys(&mut self, key: KeyEvent, cx: &mut Cx) -> Option<Action> {
        match key.code {
            KeyCode::Enter => self.choose(cx),
            KeyCode::Down => {
                self.selected = (self.selected + 1).min(self.matches.len().saturating_sub(1))
            }
            KeyCode::Up => self.selected = self.selected.saturating_sub(1),
            KeyCode::Char('n') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.quick_create(cx)
            }
            KeyCode::Char('b') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                if let Some(i) = self.boards.iter().position(|b| *b == self.board) {
                    self.board = self.boards[(i + 1) % self.boards.len()].clone();
                }
            }
            _ => {
                if let Some(request) = to_input_request(&Event::Key(key))
                    && self.input.handle(request).is_some()
                {
                    self.selected = 0;
                    self.error = None;
                    self.search(cx);
                }
            }
        }
        None
    }
}

impl Component for Wizard {
    fn handle_key(&mut self, key: KeyEvent, cx: &mut Cx) -> Option<Action> {
        match self.step {
            Step::Select => return self.select_keys(key, cx),
            Step::Flash => match (&self.phase, key.code) {
                (FlashPhase::Choosing, KeyCode::Down) => {
                    self.port = (self.port + 1).min(self.ports.len().saturating_sub(1))
                }
                (FlashPhase::Choosing, KeyCode::Up) => self.port = self.port.saturating_sub(1),
                (FlashPhase::Choosing, KeyCode::Char('r')) => cx.tasks.push(Task::ListPorts),
                (FlashPhase::Choosing | FlashPhase::Failed(_), KeyCode::Enter) => {
                    self.start_flash(cx)
                }
                (FlashPhase::Failed(_), KeyCode::Char('r')) => self.start_flash(cx),
                (FlashPhase::Choosing | FlashPhase::Failed(_), KeyCode::Backspace) => {
                    self.abandon(cx)
                }
                _ => {}
            },
            Step::Verify => {
                let failed = self.verify.as_ref().is_some_and(|v| v.failed.is_some());
                match key.code {
                    KeyCode::Char('r') if failed => self.verify_again(cx),
                    KeyCode::Char('f') if failed => {
                        self.step = Step::Flash;
                        self.phase = FlashPhase::Choosing;
                    }
                    _ => {}
                }
            }
            Step::Done => match key.code {
                KeyCode::Char('n') | KeyCode::Enter => {
                    self.next_device();
                }
                KeyCode::Char('p') => {
                    if let Some(d) = &self.device {
                        cx.tasks.push(Task::DeviceLabel(Box::new(d.clone())));
                    }
                }
                _ => {}
            },
        }
        None
    }

    fn update(&mut self, action: &Action, cx: &mut Cx) -> Option<Action> {
        match action {
            Action::Matches { request, devices } if *request == self.request => {
                self.matches = devices.clone();
                self.selected = self.selected.min(self.matches.len().saturating_sub(1));
            }
            Action::DeviceLoaded(device)
                if self.looking_up.as_deref() == Some(device.serial_number.as_str()) =>
            {
                self.looking_up = None;
                self.pick(device.clone(), cx);
            }
            Action::Failed(reason) if self.looking_up.is_some() || self.creating => {
                self.looking_up = None;
                self.creating = false;
                self.error = Some(reason.clone());
            }
            Action::BatchCreated(batch) if self.creating => {
                self.creating = false;
                if let Some(d) = batch.devices.first() {
                    self.pick(d.clone(), cx);
                }
            }
            Action::Ports(ports) => {
                let previous = self.ports.get(self.port).cloned();
                self.ports = ports.clone();
                self.port = previous
                    .and_then(|p| self.ports.iter().position(|x| *x == p))
                    .unwrap_or(0);
            }
            Action::Claimed { owner, job, device } if self.mine(*owner, *job) => {
                let port = self.ports.get(self.port).cloned()?;
                self.device = Some(device.clone());
                self.phase = FlashPhase::Flashing(FlashProgress::new(cx.now));
                cx.tasks.push(Task::Flash {
                    owner: Owner::Wizard,
                    job: *job,
                    device: Box::new(device.clone()),
                    port,
                });
            }
            Action::ClaimRefused {
                owner, job, reason, ..
            } if self.mine(*owner, *job) => self.phase = FlashPhase::Failed(reason.clone()),
            Action::Prepared {
                owner,
                job,
                firmware,
                parts,
            } if self.mine(*owner, *job) => {
                self.firmware = Some(firmware.clone());
                if let FlashPhase::Flashing(p) = &mut self.phase {
                    p.prepared(firmware, parts);
                }
            }
            Action::Flash { owner, job, event } if self.mine(*owner, *job) => {
                self.on_flash(event, cx)
            }
            Action::Console { owner, job, line } if self.mine(*owner, *job) => {
                if let Some(v) = &mut self.verify {
                    v.console.push_back(line.clone());
                    while v.console.len() > 200 {
                        v.console.pop_front();
                    }
                }
            }
            Action::Verified { owner, job, device } if self.mine(*owner, *job) => {
                self.total_seconds = self
                    .started
                    .map(|t| cx.now.saturating_duration_since(t).as_secs_f64())
                    .unwrap_or_default();
                self.device = Some(device.clone());
                self.step = Step::Done;
            }
            Action::VerifyFailed { owner, job, reason } if self.mine(*owner, *job) => {
                if let Some(v) = &mut self.verify {
                    v.failed = Some(reason.clone());
                }
            }
            _ => {}
        }
        None
    }

    fn draw(&self, frame: &mut Frame, area: Rect, view: &View) {
        let [steps, body] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
        frame.render_widget(Paragraph::new(step_header(self.step, view.theme)), steps);
        match self.step {
            Step::Select => self.draw_select(frame, body, view),
            Step::Flash => self.draw_flash(frame, body, view),
            Step::Verify => self.draw_verify(frame, body, view),
            Step::Done => self.draw_done(frame, body, view),
        }
    }

    fn keys(&self) -> Vec<(&'static str, &'static str)> {
        match self.step {
            Step::Select => vec![
                (
                    "type / scan",
                    "search by serial number, MAC or e-mail; a scanner types SN + Enter",
                ),
                ("↑/↓", "choose a match"),
                ("Enter", "take the device"),
                ("Ctrl-N", "quick-create one new device of the board shown"),
                ("Ctrl-B", "switch the board for quick-create"),
            ],
            Step::Flash => vec![
                ("↑/↓", "choose the port"),
                ("Enter", "flash the board on that port"),
                ("r", "refresh the ports, or retry after a failure"),
                ("Backspace", "back to step 1 (gives the serial number back)"),
            ],
            Step::Verify => vec![
                ("r", "wait for the heartbeat again (after a timeout)"),
                ("f", "flash again (after a timeout)"),
            ],
            Step::Done => vec![
                ("n / Enter", "next device (keeps the board)"),
                ("p", "print this device's label"),
            ],
        }
    }

    fn footer(&self) -> Vec<(&'static str, &'static str)> {
        match self.step {
            Step::Select => vec![("Enter", "take"), ("Ctrl-N", "new device")],
            Step::Flash => vec![("Enter", "flash"), ("r", "retry")],
            Step::Verify => vec![("r", "wait again")],
            Step::Done => vec![("n", "next device"), ("p", "label")],
        }
    }

    fn captures_text(&self) -> bool {
        self.step == Step::Select
    }

    fn claims(&self, key: &KeyEvent) -> bool {
        self.step == Step::Done && key.code == KeyCode::Char('n')
    }

    fn busy(&self) -> bool {
        matches!(self.phase, FlashPhase::Claiming | FlashPhase::Flashing(_))
            || (self.step == Step::Verify
                && self.verify.as_ref().is_some_and(|v| v.failed.is_none()))
    }
}

fn step_header(current: Step, theme: Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, (step, name)) in Step::ALL.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" › ", theme.dim()));
        }
        let style = if *step == current {
            theme.selected()
        } else if *step < current {
            theme.mark(Mark::Done)
        } else {
            theme.dim()
        };
        spans.push(Span::styled(format!(" {name} "), style));
    }
    Line::from(spans)
}

fn device_summary(device: &Device, theme: Theme) -> Line<'static> {
    let mark = Mark::of(device.status);
    Line::from(vec![
        Span::styled(mark.symbol(), theme.mark(mark)),
        Span::styled(format!(" {}", device.serial_number), theme.strong()),
        Span::styled(
            format!(
                "  {} · {} · batch {}",
                device.board,
                device.status.as_str(),
                device.batch_id
            ),
            theme.dim(),
        ),
    ])
}

impl Wizard {
    fn draw_select(&self, frame: &mut Frame, area: Rect, view: &View) {
        let theme = view.theme;
        let [input, hint, list] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Length(2),
            Constraint::Fill(1),
        ])
        .areas(area);
        let width = input.width.saturating_sub(3) as usize;
        let scroll = self.input.visual_scroll(width);
        frame.render_widget(
            Paragraph::new(self.input.value())
                .scroll((0, scroll as u16))
                .block(theme.focused_panel(" Serial number (type or scan) ")),
            input,
        );
        frame.set_cursor_position((
            input.x + 1 + (self.input.visual_cursor().saturating_sub(scroll)) as u16,
            input.y + 1,
        ));
        let hint_line = match (&self.error, self.looking_up.is_some() || self.creating) {
            (Some(e), _) => Line::styled(format!("✗ {e}"), theme.mark(Mark::Failed)),
            (None, true) => Line::styled("◌ looking it up…", theme.mark(Mark::Waiting)),
            (None, false) => Line::from(vec![
                Span::styled("Ctrl-N", theme.key()),
                Span::raw(format!(" quick-create one {} device  ", self.board)),
                Span::styled("Ctrl-B", theme.key()),
                Span::raw(" other board"),
            ]),
        };
        frame.render_widget(Paragraph::new(hint_line).wrap(Wrap { trim: true }), hint);
        let items: Vec<ListItem> = self
            .matches
            .iter()
            .map(|d| ListItem::new(device_summary(d, theme)))
            .collect();
        let empty = items.is_empty();
        let mut state = ListState::default().with_selected((!empty).then_some(self.selected));
        let title = if self.input.value().trim().is_empty() {
            " Matches (start typing) ".to_owned()
        } else {
            format!(" Matches ({}) ", self.matches.len())
        };
        frame.render_stateful_widget(
            List::new(items)
                .block(theme.panel(title))
                .highlight_style(theme.selected())
                .highlight_symbol("› "),
            list,
            &mut state,
        );
    }

    fn draw_flash(&self, frame: &mut Frame, area: Rect, view: &View) {
        let theme = view.theme;
        let mut lines = Vec::new();
        if let Some(d) = &self.device {
            lines.push(device_summary(d, theme));
        }
        lines.push(Line::styled(
            format!(
                "{} · {}",
                self.chip.as_deref().unwrap_or("chip: after connecting"),
                self.mac.as_deref().unwrap_or("MAC: after connecting")
            ),
            theme.dim(),
        ));
        lines.push(Line::raw(""));
        match &self.phase {
            FlashPhase::Choosing => {
                lines.push(Line::styled("Port:", theme.strong()));
                if self.ports.is_empty() {
                    lines.push(Line::styled(
                        "  no serial ports: plug the board in, then press r",
                        theme.mark(Mark::Waiting),
                    ));
                }
                for (i, p) in self.ports.iter().enumerate() {
                    let style = if i == self.port {
                        theme.selected()
                    } else {
                        Default::default()
                    };
                    lines.push(Line::styled(format!("  {p}"), style));
                }
                lines.push(Line::raw(""));
                lines.push(
                    theme.hints(&[("Enter", "flash"), ("Backspace", "choose another device")]),
                );
            }
            FlashPhase::Claiming => lines.push(Line::styled(
                "◌ reserving the serial number for this station…",
                theme.mark(Mark::Waiting),
            )),
            FlashPhase::Flashing(p) => {
                lines.extend(p.lines(area.width.saturating_sub(2).min(70), view.now, theme));
                if let Some(note) = &p.note {
                    lines.push(Line::styled(
                        format!("retry {}: {note}", p.attempt),
                        theme.mark(Mark::Waiting),
                    ));
                }
            }
            FlashPhase::Failed(reason) => {
                lines.push(Line::styled("✗ flashing failed", theme.mark(Mark::Failed)));
                lines.push(Line::raw(reason.clone()));
                lines.push(Line::raw(""));
                lines.push(theme.hints(&[("r", "retry"), ("Backspace", "choose another device")]));
            }
        }
        if let Some(e) = &self.error {
            lines.push(Line::styled(format!("✗ {e}"), theme.mark(Mark::Failed)));
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(theme.panel(" Flash ")),
            area,
        );
    }

    fn draw_verify(&self, frame: &mut Frame, area: Rect, view: &View) {
        let theme = view.theme;
        let Some(v) = &self.verify else { return };
        let [status, console] =
            Layout::vertical([Constraint::Length(7), Constraint::Fill(1)]).areas(area);
        let mut lines = Vec::new();
        if let Some(d) = &self.device {
            lines.push(device_summary(d, theme));
        }
        lines.push(Line::from(vec![
            Span::styled(Mark::Done.symbol(), theme.mark(Mark::Done)),
            Span::raw(format!(
                " flashed in {:.1} s · {} · {}",
                self.flash_seconds,
                self.chip.as_deref().unwrap_or("?"),
                self.mac.as_deref().unwrap_or("?")
            )),
        ]));
        match &v.failed {
            None => {
                let waited = view.now.saturating_duration_since(v.since);
                lines.push(Line::from(vec![
                    Span::styled(Mark::Waiting.symbol(), theme.mark(Mark::Waiting)),
                    Span::raw(format!(
                        " waiting for the first heartbeat: {} s",
                        waited.as_secs()
                    )),
                ]));
                lines.push(Line::styled(
                    "The board boots, joins Wi-Fi, logs in to MQTT with its own password and reports.",
                    theme.dim(),
                ));
            }
            Some(reason) => {
                lines.push(Line::styled(
                    format!("✗ {reason}"),
                    theme.mark(Mark::Failed),
                ));
                lines.push(theme.hints(&[("r", "wait again"), ("f", "flash again")]));
            }
        }
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), status);
        let rows = usize::from(console.height.saturating_sub(2));
        let log: Vec<Line> = v
            .console
            .iter()
            .skip(v.console.len().saturating_sub(rows))
            .map(|l| Line::raw(l.clone()))
            .collect();
        frame.render_widget(
            Paragraph::new(log).block(theme.panel(" Boot log (serial console) ")),
            console,
        );
    }

    fn draw_done(&self, frame: &mut Frame, area: Rect, view: &View) {
        let theme = view.theme;
        let Some(d) = &self.device else { return };
        let field = |k: &str, v: String| {
            Line::from(vec![
                Span::styled(format!("{k:<13}"), theme.dim()),
                Span::raw(v),
            ])
        };
        let lines = vec![
            Line::from(vec![
                Span::styled(Mark::Done.symbol(), theme.mark(Mark::Done)),
                Span::styled(
                    format!(" {} is {}", d.serial_number, d.status.as_str()),
                    theme.strong(),
                ),
            ]),
            Line::raw(""),
            field(
                "board",
                format!("{} ({}{})", d.board, d.hw_type, d.hw_version),
            ),
            field("batch", d.batch_id.clone()),
            field(
                "chip · MAC",
                format!(
                    "{} · {}",
                    d.chip.as_deref().unwrap_or("?"),
                    d.mac.as_deref().unwrap_or("?")
                ),
            ),
            field("firmware", d.firmware_version.clone().unwrap_or_default()),
            field(
                "time",
                format!(
                    "{:.0} s (flash {:.1} s)",
                    self.total_seconds, self.flash_seconds
                ),
            ),
            Line::raw(""),
            theme.hints(&[("n", "next device"), ("p", "print label"), ("q", "back")]),
        ];
        frame.render_widget(Paragraph::new(lines).block(theme.panel(" Done ")), area);
    }
}
