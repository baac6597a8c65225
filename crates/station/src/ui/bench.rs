//! Bench mode: N port slots side by side. A board plugged into a slot takes the batch's next
//! serial number (the backend decides, so no two slots or stations share one), is flashed,
//! verified by its first heartbeat and marked done, without a key press unless the operator
//! asked to confirm each board. A failure stays on its slot with the reason and a one-key retry.

use std::collections::VecDeque;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::action::{Action, Job, Owner, Screen, Task};
use super::progress::FlashProgress;
use super::theme::Mark;
use super::{Component, Cx, View};
use vesper_core::model::{BatchSummary, Device};
use vesper_flash::FlashEvent;

/// Lines of console output kept per slot.
const CONSOLE_LINES: usize = 6;
/// Entries of the recent-activity list.
const RECENT: usize = 50;

/// The step a slot failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Claim,
    Flash,
    Verify,
}

/// What a slot is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotState {
    /// No board.
    Empty,
    /// A board is in, waiting for Enter (the operator confirms each board).
    Ready,
    /// A board is in but cannot start (no batch chosen, the batch is done, set aside).
    Blocked(String),
    /// The operator set this board aside (its serial number went back): it is not started
    /// again until another board is plugged in.
    SetAside,
    Claiming,
    Flashing(FlashProgress),
    Verifying {
        since: Instant,
        flash_seconds: f64,
        console: VecDeque<String>,
        /// The board was pulled out while waiting (its heartbeat may already be on its way).
        unplugged: bool,
    },
    Done {
        seconds: f64,
    },
    Failed {
        stage: Stage,
        reason: String,
    },
}

/// One port slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// The configured port (or "auto").
    pub label: String,
    /// The board's port while one is plugged in.
    pub port: Option<String>,
    pub job: Job,
    pub state: SlotState,
    /// The claimed device, kept across retries until it is done or given back.
    pub device: Option<Device>,
    pub chip: Option<String>,
    pub mac: Option<String>,
    pub firmware: Option<String>,
    pub attempts: u32,
    /// When work on the current board began.
    pub started: Option<Instant>,
    /// A new board was plugged in while the previous one was still verifying.
    pub queued: bool,
}

impl Slot {
    pub fn new(label: impl Into<String>) -> Slot {
        Slot {
            label: label.into(),
            port: None,
            job: 0,
            state: SlotState::Empty,
            device: None,
            chip: None,
            mac: None,
            firmware: None,
            attempts: 0,
            started: None,
            queued: false,
        }
    }

    fn sn(&self) -> Option<&str> {
        self.device.as_ref().map(|d| d.serial_number.as_str())
    }

    /// Flashing or verifying (work a quit would interrupt).
    pub fn busy(&self) -> bool {
        matches!(
            self.state,
            SlotState::Claiming | SlotState::Flashing(_) | SlotState::Verifying { .. }
        )
    }
}

/// One line of the recent-activity list.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    pub at: String,
    pub mark: Mark,
    pub text: String,
}

/// The bench.
#[derive(Debug, Clone)]
pub struct Bench {
    pub slots: Vec<Slot>,
    pub selected: usize,
    pub batch: Option<BatchSummary>,
    pub confirm_each_board: bool,
    pub recent: VecDeque<Recent>,
    pub done: u32,
    pub failed: u32,
    /// Show the console log of the selected slot in full.
    pub show_log: bool,
    /// The port the wizard is working on: a slot leaves it alone.
    pub wizard_port: Option<String>,
    next_job: Job,
}

impl Bench {
    pub fn new(labels: Vec<String>, confirm_each_board: bool) -> Bench {
        Bench {
            slots: labels.into_iter().map(Slot::new).collect(),
            selected: 0,
            batch: None,
            confirm_each_board,
            recent: VecDeque::new(),
            done: 0,
            failed: 0,
            show_log: false,
            wizard_port: None,
            next_job: 1,
        }
    }

    /// Boards provisioned in this batch, and its size.
    pub fn progress(&self) -> Option<(i64, i64)> {
        let b = self.batch.as_ref()?;
        Some((b.done(), b.quantity))
    }

    /// Slots (and their ports) that hold a board the bench is working on or waiting to start.
    pub fn ports_in_use(&self) -> Vec<(usize, String)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.busy() || s.state == SlotState::Ready)
            .filter_map(|(i, s)| Some((i, s.port.clone()?)))
            .collect()
    }

    fn log(&mut self, cx: &Cx, mark: Mark, text: String) {
        self.recent.push_front(Recent {
            at: cx.clock.clone(),
            mark,
            text,
        });
        self.recent.truncate(RECENT);
    }

    fn new_job(&mut self, slot: usize) -> Job {
        self.next_job += 1;
        self.slots[slot].job = self.next_job;
        self.next_job
    }

    /// Starts (or restarts) the board in `slot`: claim a serial number, or reuse the one
    /// already claimed for a retry.
    fn start(&mut self, slot: usize, cx: &mut Cx) {
        let Some(port) = self.slots[slot].port.clone() else {
            return;
        };
        let Some(batch) = self.batch.as_ref().map(|b| b.batch_id.clone()) else {
            self.slots[slot].state =
                SlotState::Blocked("no batch: press b to choose one, n to create one".into());
            return;
        };
        if self.wizard_port.as_deref() == Some(port.as_str()) {
            self.slots[slot].state = SlotState::Failed {
                stage: Stage::Claim,
                reason: "the wizard is working on the board in this slot: press r when it is done"
                    .into(),
            };
            return;
        }
        let job = self.new_job(slot);
        let s = &mut self.slots[slot];
        s.started = Some(cx.now);
        s.queued = false;
        match s.device.clone() {
            Some(device) => {
                s.state = SlotState::Flashing(FlashProgress::new(cx.now));
                cx.tasks.push(Task::Flash {
                    owner: Owner::Slot(slot),
                    job,
                    device: Box::new(device),
                    port,
                });
            }
            None => {
                s.state = SlotState::Claiming;
                cx.tasks.push(Task::ClaimNext {
                    owner: Owner::Slot(slot),
                    job,
                    batch,
                });
            }
        }
    }

    /// A board arrived: start it, or wait for Enter.
    fn arrive(&mut self, slot: usize, cx: &mut Cx) {
        if self.confirm_each_board || self.batch.is_none() {
            self.slots[slot].state = if self.batch.is_none() {
                SlotState::Blocked("no batch: press b to choose one, n to create one".into())
            } else {
                SlotState::Ready
            };
            return;
        }
        self.start(slot, cx);
    }

    fn plugged(&mut self, slot: usize, port: String, cx: &mut Cx) {
        if slot >= self.slots.len() {
            return;
        }
        let previous = self.slots[slot].port.replace(port);
        if previous.is_some() && matches!(self.slots[slot].state, SlotState::Flashing(_)) {
            // The port now leads to another board: the one being flashed is gone.
            self.unplugged_while_flashing(slot, cx);
        }
        let s = &mut self.slots[slot];
        match s.state {
            SlotState::Verifying { .. } | SlotState::Claiming => s.queued = true,
            SlotState::Flashing(_) => {}
            // A board back in a failed slot retries with the serial number it had.
            SlotState::Failed { .. } => self.arrive(slot, cx),
            // Anything else is a new board: it gets a serial number of its own.
            _ => {
                s.device = None;
                s.attempts = 0;
                self.arrive(slot, cx);
            }
        }
    }

    fn unplugged_while_flashing(&mut self, slot: usize, cx: &mut Cx) {
        self.new_job(slot);
        let sn = self.slots[slot].sn().unwrap_or("?").to_owned();
        self.slots[slot].state = SlotState::Failed {
            stage: Stage::Flash,
            reason: "unplugged while flashing: plug it back in to start again".into(),
        };
        self.failed += 1;
        self.log(
            cx,
            Mark::Failed,
            format!("slot {}: {sn} unplugged while flashing", slot + 1),
        );
    }

    fn unplugged(&mut self, slot: usize, cx: &mut Cx) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        s.port = None;
        s.queued = false;
        match s.state {
            SlotState::Claiming => {
                // A claim still in flight lands on a stale job and is ignored; its lease lapses.
                self.new_job(slot);
                self.slots[slot].state = SlotState::Empty;
            }
            SlotState::Flashing(_) => self.unplugged_while_flashing(slot, cx),
            SlotState::Verifying {
                ref mut unplugged, ..
            } => *unplugged = true,
            SlotState::Failed { .. } => {}
            _ => s.state = SlotState::Empty,
        }
    }

    /// A report of `owner`'s job `job`, if it is still the slot's current job.
    fn current(&self, owner: Owner, job: Job) -> Option<usize> {
        match owner {
            Owner::Slot(i) if self.slots.get(i).is_some_and(|s| s.job == job) => Some(i),
            _ => None,
        }
    }

    fn fail(&mut self, slot: usize, stage: Stage, reason: String, cx: &mut Cx) {
        let sn = self.slots[slot]
            .sn()
            .unwrap_or("no serial number")
            .to_owned();
        self.log(
            cx,
            Mark::Failed,
            format!("slot {}: {sn}: {}", slot + 1, first_clause(&reason)),
        );
        self.slots[slot].state = SlotState::Failed { stage, reason };
        self.failed += 1;
    }

    fn flash_event(&mut self, slot: usize, event: &FlashEvent, cx: &mut Cx) {
        match event {
            FlashEvent::Done {
                chip, mac, seconds, ..
            } => {
                // The pipeline goes on to report and verify by itself.
                let s = &mut self.slots[slot];
                s.chip = Some(chip.clone());
                s.mac = Some(mac.clone());
                s.state = SlotState::Verifying {
                    since: cx.now,
                    flash_seconds: *seconds,
                    console: VecDeque::new(),
                    unplugged: false,
                };
            }
            FlashEvent::Failed { error, .. } => {
                self.fail(slot, Stage::Flash, error.clone(), cx);
            }
            other => {
                let s = &mut self.slots[slot];
                if let SlotState::Flashing(progress) = &mut s.state {
                    progress.apply(other, cx.now);
                    if let FlashEvent::Connected { chip, mac, .. } = other {
                        s.chip = Some(chip.clone());
                        s.mac = Some(mac.clone());
                    }
                }
            }
        }
    }

    /// A notice once the last device of the batch is provisioned.
    fn batch_finished(&self) -> Option<Action> {
        let (done, total) = self.progress()?;
        let batch = self.batch.as_ref()?;
        (total > 0 && done == total).then(|| {
            Action::Notice(format!(
                "batch {} is done: {done}/{total} provisioned",
                batch.batch_id
            ))
        })
    }

    fn verified(&mut self, slot: usize, device: Device, cx: &mut Cx) {
        let seconds = self.slots[slot]
            .started
            .map(|t| cx.now.saturating_duration_since(t).as_secs_f64())
            .unwrap_or_default();
        self.log(
            cx,
            Mark::Done,
            format!(
                "{} provisioned (slot {}, {:.0} s)",
                device.serial_number,
                slot + 1,
                seconds
            ),
        );
        self.done += 1;
        if let Some(batch) = &mut self.batch
            && batch.batch_id == device.batch_id
        {
            batch
                .status_counts
                .add(vesper_core::model::Status::Manufactured, -1);
            batch
                .status_counts
                .add(vesper_core::model::Status::Provisioned, 1);
        }
        let s = &mut self.slots[slot];
        s.state = SlotState::Done { seconds };
        s.device = Some(device);
        s.attempts = 0;
        if s.queued && s.port.is_some() {
            s.device = None;
            self.arrive(slot, cx);
        }
    }

    /// Retry the selected failed slot: same serial number, same board.
    fn retry(&mut self, slot: usize, cx: &mut Cx) {
        let s = &mut self.slots[slot];
        if !matches!(s.state, SlotState::Failed { .. } | SlotState::Ready) {
            return;
        }
        if s.port.is_none() {
            s.state = SlotState::Failed {
                stage: Stage::Flash,
                reason: "no board in this slot: plug one in".into(),
            };
            return;
        }
        s.attempts += 1;
        self.start(slot, cx);
    }

    /// Set the board aside: give its serial number back and wait for the next board.
    fn skip(&mut self, slot: usize, cx: &mut Cx) {
        let s = &mut self.slots[slot];
        if !matches!(s.state, SlotState::Failed { .. } | SlotState::Ready) {
            return;
        }
        if let Some(device) = s.device.take() {
            cx.tasks.push(Task::Release {
                sn: device.serial_number,
                owner: Owner::Slot(slot),
            });
        }
        s.attempts = 0;
        s.state = if s.port.is_some() {
            SlotState::SetAside
        } else {
            SlotState::Empty
        };
    }

    fn use_batch(&mut self, batch: BatchSummary, cx: &mut Cx) {
        let changed = self.batch.as_ref().map(|b| &b.batch_id) != Some(&batch.batch_id);
        self.batch = Some(batch);
        for slot in 0..self.slots.len() {
            let s = &mut self.slots[slot];
            if changed && !s.busy() && s.device.is_some() {
                // Serial numbers of another batch are not carried over.
                if let Some(device) = s.device.take()
                    && matches!(s.state, SlotState::Failed { .. })
                {
                    cx.tasks.push(Task::Release {
                        sn: device.serial_number,
                        owner: Owner::Slot(slot),
                    });
                }
            }
            // Boards waiting for a batch start; a finished or set-aside board is never written
            // again because the batch changed.
            let waiting = matches!(
                self.slots[slot].state,
                SlotState::Blocked(_) | SlotState::Ready
            ) || (changed
                && matches!(self.slots[slot].state, SlotState::Failed { .. }));
            if waiting && self.slots[slot].port.is_some() {
                self.slots[slot].device = None;
                self.arrive(slot, cx);
            }
        }
    }
}

/// The first sentence or clause of a reason, for one-line lists.
fn first_clause(reason: &str) -> &str {
    reason.split([':', ';']).next().unwrap_or(reason).trim()
}

impl Component for Bench {
    fn handle_key(&mut self, key: KeyEvent, cx: &mut Cx) -> Option<Action> {
        let n = self.slots.len();
        match key.code {
            KeyCode::Left if n > 0 => self.selected = (self.selected + n - 1) % n,
            KeyCode::Right if n > 0 => self.selected = (self.selected + 1) % n,
            KeyCode::Char(c @ '1'..='9') => {
                let i = c as usize - '1' as usize;
                if i < n {
                    self.selected = i;
                }
            }
            KeyCode::Enter if n > 0 && self.slots[self.selected].state == SlotState::Ready => {
                self.start(self.selected, cx);
            }
            KeyCode::Char('r') if n > 0 => self.retry(self.selected, cx),
            KeyCode::Char('s') if n > 0 => self.skip(self.selected, cx),
            KeyCode::Char('c') => {
                self.confirm_each_board = !self.confirm_each_board;
                let text = if self.confirm_each_board {
                    "each board now waits for Enter"
                } else {
                    "boards now start as soon as they are plugged in"
                };
                return Some(Action::Notice(text.into()));
            }
            KeyCode::Char('o') => self.show_log = !self.show_log,
            KeyCode::Char('p') => {
                let batch = self.batch.as_ref()?.batch_id.clone();
                cx.tasks.push(Task::Labels { batch, print: true });
            }
            KeyCode::Char('b') => return Some(Action::Go(Screen::Batches)),
            _ => {}
        }
        None
    }

    fn update(&mut self, action: &Action, cx: &mut Cx) -> Option<Action> {
        match action {
            Action::Plugged { slot, port } => self.plugged(*slot, port.clone(), cx),
            Action::Unplugged { slot } => self.unplugged(*slot, cx),
            Action::UseBatch(batch) => self.use_batch(batch.clone(), cx),
            Action::Claimed { owner, job, device } => {
                let slot = self.current(*owner, *job)?;
                let s = &mut self.slots[slot];
                s.device = Some(device.clone());
                let Some(port) = s.port.clone() else {
                    s.state = SlotState::Empty;
                    return None;
                };
                s.state = SlotState::Flashing(FlashProgress::new(cx.now));
                cx.tasks.push(Task::Flash {
                    owner: *owner,
                    job: *job,
                    device: Box::new(device.clone()),
                    port,
                });
            }
            Action::ClaimRefused {
                owner,
                job,
                reason,
                batch_done,
            } => {
                let slot = self.current(*owner, *job)?;
                if *batch_done {
                    let batch = self.batch.as_ref().map_or("", |b| b.batch_id.as_str());
                    self.slots[slot].state = SlotState::Blocked(format!(
                        "batch {batch} is done: unplug the board, or press b for another batch"
                    ));
                } else {
                    self.fail(slot, Stage::Claim, reason.clone(), cx);
                }
            }
            Action::Prepared {
                owner,
                job,
                firmware,
                parts,
            } => {
                let slot = self.current(*owner, *job)?;
                let s = &mut self.slots[slot];
                s.firmware = Some(firmware.clone());
                if let SlotState::Flashing(p) = &mut s.state {
                    p.prepared(firmware, parts);
                }
            }
            Action::Flash { owner, job, event } => {
                let slot = self.current(*owner, *job)?;
                self.flash_event(slot, event, cx);
            }
            Action::Console { owner, job, line } => {
                let slot = self.current(*owner, *job)?;
                if let SlotState::Verifying { console, .. } = &mut self.slots[slot].state {
                    console.push_back(line.clone());
                    while console.len() > CONSOLE_LINES {
                        console.pop_front();
                    }
                }
            }
            Action::Verified { owner, job, device } => {
                let slot = self.current(*owner, *job)?;
                self.verified(slot, device.clone(), cx);
                return self.batch_finished();
            }
            Action::VerifyFailed { owner, job, reason } => {
                let slot = self.current(*owner, *job)?;
                self.fail(slot, Stage::Verify, reason.clone(), cx);
            }
            _ => {}
        }
        None
    }

    fn draw(&self, frame: &mut Frame, area: Rect, view: &View) {
        draw_bench(self, frame, area, view);
    }

    fn keys(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("←/→ 1-9", "select a slot"),
            (
                "Enter",
                "flash the board in the selected slot (when boards wait for Enter)",
            ),
            ("r", "retry the selected slot (same serial number)"),
            (
                "s",
                "skip: give the serial number back, set the board aside",
            ),
            ("c", "toggle: start boards on plug-in, or wait for Enter"),
            ("o", "show the selected slot's console output"),
            ("b", "choose the batch"),
            ("n", "new batch"),
            ("p", "print the batch's labels"),
        ]
    }

    fn footer(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("n", "new batch"),
            ("b", "batch"),
            ("r", "retry"),
            ("s", "skip"),
            ("p", "labels"),
        ]
    }

    fn busy(&self) -> bool {
        self.slots.iter().any(Slot::busy)
    }
}

/// Slots per row and rows, for `n` slots in `area`.
fn grid(n: usize, area: Rect) -> (usize, usize) {
    let columns = (usize::from(area.width) / 36).clamp(1, 4).min(n.max(1));
    (columns, n.div_ceil(columns).max(1))
}

fn draw_bench(bench: &Bench, frame: &mut Frame, area: Rect, view: &View) {
    let n = bench.slots.len();
    let (columns, rows) = grid(n, area);
    // The recent list takes the free cells of the last row, or a band below when there is room.
    let free_cells = columns * rows - n;
    let band = if free_cells == 0 && area.height >= 30 {
        (area.height / 4).max(5)
    } else {
        0
    };
    let grid_area = Rect {
        height: area.height - band,
        ..area
    };
    let cell_w = grid_area.width / columns as u16;
    let cell_h = grid_area.height / rows as u16;
    for (i, slot) in bench.slots.iter().enumerate() {
        let cell = Rect {
            x: grid_area.x + (i % columns) as u16 * cell_w,
            y: grid_area.y + (i / columns) as u16 * cell_h,
            width: cell_w,
            height: cell_h,
        };
        draw_slot(bench, i, slot, frame, cell, view);
    }
    let recent_area = if free_cells > 0 {
        let first_free = n;
        Some(Rect {
            x: grid_area.x + (first_free % columns) as u16 * cell_w,
            y: grid_area.y + (first_free / columns) as u16 * cell_h,
            width: cell_w * free_cells as u16,
            height: cell_h,
        })
    } else if band > 0 {
        Some(Rect {
            y: area.y + area.height - band,
            height: band,
            ..area
        })
    } else {
        None
    };
    if let Some(r) = recent_area {
        draw_recent(bench, frame, r, view);
    }
}

fn draw_recent(bench: &Bench, frame: &mut Frame, area: Rect, view: &View) {
    let theme = view.theme;
    let lines: Vec<Line> = if bench.recent.is_empty() {
        vec![Line::styled(
            "nothing yet: boards appear here as they finish",
            theme.dim(),
        )]
    } else {
        bench
            .recent
            .iter()
            .take(usize::from(area.height.saturating_sub(2)))
            .map(|r| {
                Line::from(vec![
                    Span::styled(format!("{} ", r.at), theme.dim()),
                    Span::styled(r.mark.symbol(), theme.mark(r.mark)),
                    Span::raw(format!(" {}", r.text)),
                ])
            })
            .collect()
    };
    let block = theme.panel(" Recent ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The last `n` console lines to show while verifying: the firmware's own `vesper: ...` lines
/// (boot, Wi-Fi, MQTT, heartbeat) when it prints them, since they say where the board is;
/// everything when the full log is asked for.
fn console_tail(console: &VecDeque<String>, n: usize, everything: bool) -> Vec<&str> {
    let ours: Vec<&str> = console
        .iter()
        .filter_map(|l| l.find("vesper: ").map(|at| &l[at..]))
        .collect();
    let chosen: Vec<&str> = if everything || ours.is_empty() {
        console.iter().map(String::as_str).collect()
    } else {
        ours
    };
    chosen[chosen.len().saturating_sub(n)..].to_vec()
}

fn draw_slot(bench: &Bench, index: usize, slot: &Slot, frame: &mut Frame, area: Rect, view: &View) {
    let theme = view.theme;
    let selected = index == bench.selected;
    let title = format!(" {} {} ", index + 1, short_port(&slot.label));
    let mut block = Block::bordered().title(Span::styled(
        title,
        if selected {
            theme.selected()
        } else {
            theme.strong()
        },
    ));
    block = block.border_style(if selected {
        theme.focus()
    } else {
        theme.border()
    });
    let inner_width = area.width.saturating_sub(2);
    let mut lines: Vec<Line> = Vec::new();
    let sn_line = |mark: Mark| {
        Line::from(vec![
            Span::styled(mark.symbol(), theme.mark(mark)),
            Span::styled(format!(" {}", slot.sn().unwrap_or("…")), theme.strong()),
        ])
    };
    let chip_line = || {
        Line::styled(
            format!(
                "{} · {}",
                slot.chip.as_deref().unwrap_or("chip ?"),
                slot.mac.as_deref().unwrap_or("MAC ?")
            ),
            theme.dim(),
        )
    };
    match &slot.state {
        SlotState::Empty => lines.push(Line::styled("(empty: plug a board)", theme.dim())),
        SlotState::Ready => {
            lines.push(Line::from(vec![
                Span::styled(Mark::Waiting.symbol(), theme.mark(Mark::Waiting)),
                Span::raw(" board ready"),
            ]));
            lines.push(Line::from(vec![
                Span::raw("press "),
                Span::styled("Enter", theme.key()),
                Span::raw(" to flash"),
            ]));
        }
        SlotState::Blocked(reason) => {
            lines.push(Line::from(vec![
                Span::styled(Mark::Waiting.symbol(), theme.mark(Mark::Waiting)),
                Span::raw(format!(" {reason}")),
            ]));
        }
        SlotState::SetAside => {
            lines.push(Line::from(vec![
                Span::styled(Mark::Waiting.symbol(), theme.mark(Mark::Waiting)),
                Span::raw(" set aside: unplug this board, plug in the next"),
            ]));
        }
        SlotState::Claiming => lines.push(Line::from(vec![
            Span::styled(Mark::Waiting.symbol(), theme.mark(Mark::Waiting)),
            Span::raw(" taking the next serial number…"),
        ])),
        SlotState::Flashing(progress) => {
            lines.push(sn_line(Mark::Running));
            lines.push(chip_line());
            lines.extend(progress.lines(inner_width, view.now, theme));
            if let Some(note) = &progress.note {
                lines.push(Line::styled(
                    format!("retry {}: {}", progress.attempt, first_clause(note)),
                    theme.mark(Mark::Waiting),
                ));
            }
        }
        SlotState::Verifying {
            since,
            flash_seconds,
            console,
            unplugged,
        } => {
            lines.push(sn_line(Mark::Waiting));
            lines.push(chip_line());
            lines.push(Line::from(vec![
                Span::styled(Mark::Done.symbol(), theme.mark(Mark::Done)),
                Span::raw(format!(" flashed {flash_seconds:.1} s")),
            ]));
            let waited = view.now.saturating_duration_since(*since).as_secs();
            lines.push(Line::from(vec![
                Span::styled(Mark::Waiting.symbol(), theme.mark(Mark::Waiting)),
                Span::raw(format!(" verify: waiting for heartbeat {waited} s")),
            ]));
            if *unplugged {
                lines.push(Line::styled("  (board unplugged)", theme.dim()));
            }
            let full = bench.show_log && selected;
            for line in console_tail(console, if full { CONSOLE_LINES } else { 2 }, full) {
                lines.push(Line::styled(format!("  {line}"), theme.dim()));
            }
        }
        SlotState::Done { seconds } => {
            lines.push(sn_line(Mark::Done));
            lines.push(chip_line());
            lines.push(Line::styled(
                format!("provisioned in {seconds:.0} s"),
                theme.mark(Mark::Done),
            ));
            lines.push(Line::styled(
                if slot.port.is_some() {
                    "unplug it, plug in the next board"
                } else {
                    "plug in the next board"
                },
                theme.dim(),
            ));
        }
        SlotState::Failed { stage, reason } => {
            lines.push(sn_line(Mark::Failed));
            let stage = match stage {
                Stage::Claim => "taking a serial number",
                Stage::Flash => "flashing",
                Stage::Verify => "verifying",
            };
            lines.push(Line::styled(
                format!("failed while {stage}:"),
                theme.mark(Mark::Failed),
            ));
            lines.push(Line::raw(reason.clone()));
            lines.push(Line::from(vec![
                Span::styled("[r]", theme.key()),
                Span::raw(" retry  "),
                Span::styled("[s]", theme.key()),
                Span::raw(" skip"),
                Span::styled(
                    if slot.attempts > 0 {
                        format!("  (retried {})", slot.attempts)
                    } else {
                        String::new()
                    },
                    theme.dim(),
                ),
            ]));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// `/dev/serial/by-path/...-port0` is long; the last component says enough.
fn short_port(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_stacks_two_by_two_on_a_small_terminal() {
        assert_eq!(grid(4, Rect::new(0, 0, 80, 20)), (2, 2));
        assert_eq!(grid(4, Rect::new(0, 0, 120, 36)), (3, 2));
        assert_eq!(grid(1, Rect::new(0, 0, 120, 36)), (1, 1));
    }

    #[test]
    fn first_clause_keeps_the_gist() {
        assert_eq!(first_clause("no sync: hold BOOT and press EN"), "no sync");
    }
}
