//! The device list: filtered, sorted and paged by the backend, so it stays quick with 100,000
//! devices; a detail pane with every field and the history; status changes and assignment.

use crossterm::event::{Event, KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Row, Table, TableState, Wrap};
use tui_input::Input;
use tui_input::backend::crossterm::to_input_request;

use super::action::{Action, Task};
use super::theme::{Mark, Theme};
use super::{Component, Cx, View};
use vesper_core::model::{
    Device, DeviceFilter, DevicePage, DeviceSort, InviteState, MailStatus, Status,
};

/// Rows fetched per request.
pub const PAGE: u32 = 200;

/// A question over the detail pane.
#[derive(Debug, Clone)]
pub enum Dialog {
    /// Pick the next status.
    Status { choices: Vec<Status>, index: usize },
    /// The customer's e-mail.
    Assign(Input),
    /// Revoking is final: ask first.
    ConfirmRevoke,
}

#[derive(Debug, Clone)]
pub struct Devices {
    pub filter: DeviceFilter,
    pub input: Input,
    pub editing: bool,
    pub page: Option<DevicePage>,
    /// Newest request; answers to older ones are dropped.
    request: u64,
    /// Index of the selected device in the whole filtered list.
    pub selected: usize,
    pub loading: bool,
    pub detail: Option<Device>,
    pub dialog: Option<Dialog>,
}

impl Default for Devices {
    fn default() -> Self {
        Self::new()
    }
}

impl Devices {
    pub fn new() -> Devices {
        Devices {
            filter: DeviceFilter {
                limit: Some(PAGE),
                ..Default::default()
            },
            input: Input::default(),
            editing: false,
            page: None,
            request: 0,
            selected: 0,
            loading: false,
            detail: None,
            dialog: None,
        }
    }

    /// Asks for the page that holds the selected row.
    pub fn load(&mut self, cx: &mut Cx) {
        self.request += 1;
        self.loading = true;
        let offset = (self.selected as u32 / PAGE) * PAGE;
        self.filter.offset = Some(offset);
        apply_query(&mut self.filter, self.input.value());
        cx.tasks.push(Task::Devices {
            request: self.request,
            filter: self.filter.clone(),
        });
    }

    fn total(&self) -> usize {
        self.page.as_ref().map_or(0, |p| p.total.max(0) as usize)
    }

    /// The selected device, if its page is loaded.
    pub fn current(&self) -> Option<&Device> {
        let page = self.page.as_ref()?;
        let index = self.selected.checked_sub(page.offset as usize)?;
        page.devices.get(index)
    }

    fn move_to(&mut self, index: usize, cx: &mut Cx) {
        let total = self.total();
        self.selected = index.min(total.saturating_sub(1));
        let loaded = self.page.as_ref().is_some_and(|p| {
            let start = p.offset as usize;
            (start..start + p.devices.len()).contains(&self.selected)
        });
        if !loaded {
            self.load(cx);
        }
    }

    fn restart(&mut self, cx: &mut Cx) {
        self.selected = 0;
        self.load(cx);
    }

    fn cycle_status(&mut self, cx: &mut Cx) {
        let all = Status::ALL;
        self.filter.status = match self.filter.status {
            None => Some(all[0]),
            Some(s) => all
                .iter()
                .position(|x| *x == s)
                .and_then(|i| all.get(i + 1))
                .copied(),
        };
        self.restart(cx);
    }

    fn cycle_sort(&mut self, cx: &mut Cx) {
        let all = DeviceSort::ALL;
        let now = self.filter.sort.unwrap_or_default();
        let i = all.iter().position(|x| *x == now).unwrap_or(0);
        self.filter.sort = Some(all[(i + 1) % all.len()]);
        self.filter.desc = None;
        self.restart(cx);
    }

    fn dialog_keys(&mut self, key: KeyEvent, cx: &mut Cx) {
        let Some(sn) = self.detail.as_ref().map(|d| d.serial_number.clone()) else {
            self.dialog = None;
            return;
        };
        match (&mut self.dialog, key.code) {
            (_, KeyCode::Esc) => self.dialog = None,
            (Some(Dialog::Status { choices, index }), KeyCode::Down) => {
                *index = (*index + 1).min(choices.len().saturating_sub(1))
            }
            (Some(Dialog::Status { index, .. }), KeyCode::Up) => *index = index.saturating_sub(1),
            (Some(Dialog::Status { choices, index }), KeyCode::Enter) => {
                if let Some(status) = choices.get(*index).copied() {
                    if status == Status::Revoked {
                        self.dialog = Some(Dialog::ConfirmRevoke);
                        return;
                    }
                    cx.tasks.push(Task::SetStatus { sn, status });
                }
                self.dialog = None;
            }
            (Some(Dialog::Assign(input)), KeyCode::Enter) => {
                let email = input.value().trim().to_owned();
                if !email.is_empty() {
                    cx.tasks.push(Task::Assign { sn, email });
                }
                self.dialog = None;
            }
            (Some(Dialog::Assign(input)), _) => {
                if let Some(r) = to_input_request(&Event::Key(key)) {
                    input.handle(r);
                }
            }
            (Some(Dialog::ConfirmRevoke), KeyCode::Char('y')) => {
                cx.tasks.push(Task::SetStatus {
                    sn,
                    status: Status::Revoked,
                });
                self.dialog = None;
            }
            (Some(Dialog::ConfirmRevoke), _) => self.dialog = None,
            _ => {}
        }
    }

    fn detail_keys(&mut self, key: KeyEvent) {
        let Some(d) = &self.detail else { return };
        match key.code {
            KeyCode::Char('t') => {
                let choices: Vec<Status> = Status::ALL
                    .into_iter()
                    .filter(|s| d.status.may_move_to(*s) && *s != d.status)
                    .collect();
                if !choices.is_empty() {
                    self.dialog = Some(Dialog::Status { choices, index: 0 });
                }
            }
            KeyCode::Char('a') => {
                let current = d.assigned_email.clone().unwrap_or_default();
                self.dialog = Some(Dialog::Assign(Input::new(current)));
            }
            KeyCode::Char('x') if d.status != Status::Revoked => {
                self.dialog = Some(Dialog::ConfirmRevoke)
            }
            _ => {}
        }
    }
}

impl Component for Devices {
    fn handle_key(&mut self, key: KeyEvent, cx: &mut Cx) -> Option<Action> {
        if self.dialog.is_some() {
            self.dialog_keys(key, cx);
            return None;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter | KeyCode::Esc => self.editing = false,
                _ => {
                    if let Some(r) = to_input_request(&Event::Key(key))
                        && self.input.handle(r).is_some()
                    {
                        self.restart(cx);
                    }
                }
            }
            return None;
        }
        if self.detail.is_some() {
            self.detail_keys(key);
            return None;
        }
        let page_rows = 20;
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => self.move_to(self.selected + 1, cx),
            KeyCode::Up | KeyCode::Char('k') => self.move_to(self.selected.saturating_sub(1), cx),
            KeyCode::PageDown => self.move_to(self.selected + page_rows, cx),
            KeyCode::PageUp => self.move_to(self.selected.saturating_sub(page_rows), cx),
            KeyCode::Home | KeyCode::Char('g') => self.move_to(0, cx),
            KeyCode::End | KeyCode::Char('G') => self.move_to(self.total(), cx),
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Char('f') => self.cycle_status(cx),
            KeyCode::Char('o') => self.cycle_sort(cx),
            KeyCode::Char('O') => {
                let sort = self.filter.sort.unwrap_or_default();
                let desc = self
                    .filter
                    .desc
                    .unwrap_or(matches!(sort, DeviceSort::Created | DeviceSort::Flashed));
                self.filter.desc = Some(!desc);
                self.restart(cx);
            }
            KeyCode::Char('r') => self.load(cx),
            KeyCode::Enter => {
                if let Some(d) = self.current().cloned() {
                    cx.tasks.push(Task::Device(d.serial_number.clone()));
                    self.detail = Some(d);
                }
            }
            _ => {}
        }
        None
    }

    /// The first visit loads the first page; later visits keep the place.
    /// Fresh rows (and the open device) every time the screen is shown: boards may have been
    /// provisioned, sold or revoked meanwhile.
    fn enter(&mut self, cx: &mut Cx) {
        self.load(cx);
        if let Some(d) = &self.detail {
            cx.tasks.push(Task::Device(d.serial_number.clone()));
        }
    }

    /// Esc and q close the dialog, then the detail pane, before leaving the screen.
    fn back(&mut self) -> bool {
        if self.dialog.take().is_some() || self.detail.take().is_some() {
            return true;
        }
        false
    }

    fn update(&mut self, action: &Action, _cx: &mut Cx) -> Option<Action> {
        match action {
            Action::DevicePageFailed { request } if *request == self.request => {
                self.loading = false;
            }
            Action::DevicePage { request, page } if *request == self.request => {
                self.loading = false;
                self.page = Some(page.clone());
                let total = self.total();
                self.selected = self.selected.min(total.saturating_sub(1));
            }
            Action::DeviceLoaded(d)
            | Action::DeviceChanged(d)
            | Action::Verified { device: d, .. } => {
                if self
                    .detail
                    .as_ref()
                    .is_some_and(|x| x.serial_number == d.serial_number)
                {
                    self.detail = Some(d.clone());
                }
                if let Some(page) = &mut self.page
                    && let Some(row) = page
                        .devices
                        .iter_mut()
                        .find(|x| x.serial_number == d.serial_number)
                {
                    *row = Device {
                        history: None,
                        invite: None,
                        ..d.clone()
                    };
                }
            }
            _ => {}
        }
        None
    }

    fn draw(&self, frame: &mut Frame, area: Rect, view: &View) {
        let theme = view.theme;
        let [bar, body] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
        frame.render_widget(Paragraph::new(self.filter_line(theme)), bar);
        if self.editing {
            let x = bar.x + 3 + self.input.visual_cursor() as u16;
            frame.set_cursor_position((x.min(bar.right().saturating_sub(1)), bar.y));
        }
        let (table_area, detail_area) = if self.detail.is_some() {
            if body.width >= 110 {
                let [t, d] =
                    Layout::horizontal([Constraint::Fill(1), Constraint::Length(52)]).areas(body);
                (Some(t), d)
            } else {
                (None, body)
            }
        } else {
            (Some(body), Rect::default())
        };
        if let Some(t) = table_area {
            self.draw_table(frame, t, view);
        }
        if let Some(d) = &self.detail {
            draw_detail(d, frame, detail_area, theme);
        }
        if let Some(dialog) = &self.dialog {
            draw_dialog(dialog, self.detail.as_ref(), frame, area, theme);
        }
    }

    fn keys(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("↑/↓ PgUp/PgDn", "move; Home/End: first/last"),
            ("/", "filter by serial number, MAC, e-mail, owner, station"),
            ("", "and by board:NAME batch:B-0042 from:DATE to:DATE"),
            ("f", "cycle the status filter"),
            ("o / O", "cycle the sort column / reverse it"),
            ("Enter", "details and history"),
            ("t", "(details) change the status"),
            ("a", "(details) assign to a customer e-mail"),
            ("x", "(details) revoke, after a confirmation"),
            ("r", "reload"),
        ]
    }

    fn footer(&self) -> Vec<(&'static str, &'static str)> {
        if self.detail.is_some() {
            vec![("t", "status"), ("a", "assign"), ("x", "revoke")]
        } else {
            vec![
                ("/", "filter"),
                ("f", "status"),
                ("o", "sort"),
                ("Enter", "details"),
            ]
        }
    }

    /// A dialog or the filter line owns the keyboard: no key reaches anything else.
    fn captures_text(&self) -> bool {
        self.editing || self.dialog.is_some()
    }
}

impl Devices {
    fn filter_line(&self, theme: Theme) -> Line<'static> {
        let sort = self.filter.sort.unwrap_or_default();
        let text = if self.input.value().is_empty() && !self.editing {
            "(press / to filter)".to_owned()
        } else {
            self.input.value().to_owned()
        };
        Line::from(vec![
            Span::styled(" / ", theme.key()),
            Span::styled(
                format!("{text:<24}"),
                if self.editing {
                    theme.selected()
                } else {
                    theme.dim()
                },
            ),
            Span::raw("  status: "),
            Span::styled(
                self.filter.status.map_or("all", Status::as_str).to_owned(),
                theme.strong(),
            ),
            Span::raw("  sort: "),
            Span::styled(
                format!(
                    "{}{}",
                    sort.label(),
                    match self.filter.desc {
                        Some(true) => " ↓",
                        Some(false) => " ↑",
                        None => "",
                    }
                ),
                theme.strong(),
            ),
            Span::styled(
                if self.loading { "  ◌ loading" } else { "" }.to_owned(),
                theme.mark(Mark::Waiting),
            ),
        ])
    }

    fn draw_table(&self, frame: &mut Frame, area: Rect, view: &View) {
        let theme = view.theme;
        let wide = area.width >= 100;
        let header = if wide {
            Row::new([
                "Serial number",
                "Board",
                "Status",
                "Batch",
                "Flashed",
                "MAC",
                "Owner",
            ])
        } else {
            Row::new(["Serial number", "Status", "Batch", "MAC"])
        }
        .style(theme.strong());
        let (offset, rows): (usize, Vec<Row>) = match &self.page {
            None => (0, Vec::new()),
            Some(p) => (
                p.offset as usize,
                p.devices
                    .iter()
                    .map(|d| device_row(d, wide, theme))
                    .collect(),
            ),
        };
        let widths: Vec<Constraint> = if wide {
            vec![
                Constraint::Length(21),
                Constraint::Length(12),
                Constraint::Length(14),
                Constraint::Length(7),
                Constraint::Length(11),
                Constraint::Length(18),
                Constraint::Fill(1),
            ]
        } else {
            vec![
                Constraint::Length(21),
                Constraint::Length(14),
                Constraint::Length(7),
                Constraint::Fill(1),
            ]
        };
        let total = self.total();
        let title = match &self.page {
            None => " Devices ".to_owned(),
            Some(_) if total == 0 => " Devices: none match ".to_owned(),
            Some(page) if page.total_capped => {
                format!(" Devices {} of {total}+ ", self.selected + 1)
            }
            Some(_) => format!(" Devices {} of {total} ", self.selected + 1),
        };
        let mut state = TableState::default()
            .with_selected(self.selected.checked_sub(offset).filter(|_| total > 0));
        frame.render_stateful_widget(
            Table::new(rows, widths)
                .header(header)
                .block(theme.panel(title))
                .row_highlight_style(theme.selected())
                .highlight_symbol("›"),
            area,
            &mut state,
        );
    }
}

/// `✓ provisioned`: the symbol carries the meaning without color.
/// Reads the filter line: `board:`, `batch:`, `from:` and `to:` words set those filters, the
/// other words are searched for as one text.
pub fn apply_query(filter: &mut DeviceFilter, query: &str) {
    filter.board = None;
    filter.batch = None;
    filter.created_from = None;
    filter.created_to = None;
    let mut words = Vec::new();
    for word in query.split_whitespace() {
        let field = match word.split_once(':') {
            Some(("board", v)) => Some((&mut filter.board, v)),
            Some(("batch", v)) => Some((&mut filter.batch, v)),
            Some(("from", v)) => Some((&mut filter.created_from, v)),
            Some(("to", v)) => Some((&mut filter.created_to, v)),
            _ => None,
        };
        match field {
            Some((field, value)) if !value.is_empty() => *field = Some(value.to_owned()),
            // Anything else (a MAC has colons too) is text.
            _ => words.push(word),
        }
    }
    filter.text = Some(words.join(" ")).filter(|t| !t.is_empty());
}

pub fn status_badge(status: Status, theme: Theme) -> Span<'static> {
    let mark = Mark::of(status);
    Span::styled(
        format!("{} {}", mark.symbol(), status.as_str()),
        theme.mark(mark),
    )
}

fn device_row(d: &Device, wide: bool, theme: Theme) -> Row<'static> {
    let mac = d.mac.clone().unwrap_or_else(|| "-".into());
    let cells: Vec<Line> = if wide {
        vec![
            Line::raw(d.serial_number.clone()),
            Line::raw(d.board.clone()),
            Line::from(status_badge(d.status, theme)),
            Line::raw(d.batch_id.clone()),
            Line::raw(
                d.flashed_at
                    .as_deref()
                    .map(|t| t.chars().take(10).collect::<String>())
                    .unwrap_or_else(|| "-".into()),
            ),
            Line::raw(mac),
            Line::raw(
                d.owner
                    .clone()
                    .or_else(|| d.assigned_email.clone())
                    .unwrap_or_default(),
            ),
        ]
    } else {
        vec![
            Line::raw(d.serial_number.clone()),
            Line::from(status_badge(d.status, theme)),
            Line::raw(d.batch_id.clone()),
            Line::raw(mac),
        ]
    };
    Row::new(cells)
}

fn draw_detail(d: &Device, frame: &mut Frame, area: Rect, theme: Theme) {
    let field = |k: &str, v: Option<&str>| {
        Line::from(vec![
            Span::styled(format!("{k:<12}"), theme.dim()),
            Span::raw(v.unwrap_or("-").to_owned()),
        ])
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(d.serial_number.clone(), theme.strong()),
            Span::raw("  "),
            status_badge(d.status, theme),
        ]),
        field(
            "board",
            Some(&format!("{} ({}{})", d.board, d.hw_type, d.hw_version)),
        ),
        field("batch", Some(&d.batch_id)),
        field(
            "plan",
            Some(&format!(
                "{} · {} outputs",
                d.subscription_plan, d.available_outputs
            )),
        ),
        field("created", Some(&d.created_at)),
        field(
            "chip · MAC",
            Some(&format!(
                "{} · {}",
                d.chip.as_deref().unwrap_or("-"),
                d.mac.as_deref().unwrap_or("-")
            )),
        ),
        field("firmware", d.firmware_version.as_deref()),
        field("flashed", d.flashed_at.as_deref()),
        field("station", d.station.as_deref()),
        field("provisioned", d.provisioned_at.as_deref()),
        field("last seen", d.last_seen.as_deref()),
        field("assigned", assigned(d).as_deref()),
        field("owner", d.owner.as_deref()),
        Line::raw(""),
        Line::styled("History", theme.strong()),
    ];
    match &d.history {
        None => lines.push(Line::styled("◌ loading…", theme.dim())),
        Some(h) if h.is_empty() => lines.push(Line::styled("(none)", theme.dim())),
        Some(h) => {
            for e in h.iter().rev() {
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("{} ", e.at.get(..16).unwrap_or(&e.at).replace('T', " ")),
                        theme.dim(),
                    ),
                    Span::raw(format!(
                        "{} by {}",
                        e.action.trim_start_matches("device."),
                        e.actor
                    )),
                ]));
            }
        }
    }
    lines.push(Line::raw(""));
    lines.push(theme.hints(&[
        ("t", "status"),
        ("a", "assign"),
        ("x", "revoke"),
        ("Esc", "close"),
    ]));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(theme.focused_panel(" Device ")),
        area,
    );
}

/// The customer's address and what became of the invitation sent to it.
fn assigned(d: &Device) -> Option<String> {
    let email = d.assigned_email.as_deref()?;
    Some(match invite_state(d.invite.as_ref()) {
        Some(state) => format!("{email} · invitation {state}"),
        None => email.to_owned(),
    })
}

/// The invitation e-mail's state in words: sent when, waiting after which failure, or dead why.
fn invite_state(invite: Option<&InviteState>) -> Option<String> {
    let invite = invite?;
    let when = |at: &str| at.get(..16).unwrap_or(at).replace('T', " ");
    Some(match invite.status {
        MailStatus::Sent => format!(
            "sent {}",
            invite.sent_at.as_deref().map(when).unwrap_or_default()
        ),
        MailStatus::Pending if invite.attempts == 0 => "queued".into(),
        MailStatus::Pending => format!(
            "retrying after {} attempt(s): {}",
            invite.attempts,
            invite.last_error.as_deref().unwrap_or("-")
        ),
        MailStatus::Dead => format!(
            "not delivered: {} (vesper mail retry {})",
            invite.last_error.as_deref().unwrap_or("-"),
            invite.id
        ),
    })
}

/// A centred box of `width` x `height` inside `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn draw_dialog(
    dialog: &Dialog,
    device: Option<&Device>,
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
) {
    let sn = device.map_or("", |d| d.serial_number.as_str());
    let (title, lines, height) = match dialog {
        Dialog::Status { choices, index } => {
            let mut lines: Vec<Line> = choices
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let badge = status_badge(*s, theme);
                    if i == *index {
                        Line::from(Span::styled(badge.content.into_owned(), theme.selected()))
                    } else {
                        Line::from(badge)
                    }
                })
                .collect();
            lines.push(Line::styled("Enter choose · Esc cancel", theme.dim()));
            (" New status ", lines, choices.len() as u16 + 3)
        }
        Dialog::Assign(input) => (
            " Assign to a customer ",
            vec![
                Line::raw(format!("E-mail for {sn}:")),
                Line::styled(format!("{:<40}", input.value()), theme.selected()),
                Line::styled(
                    "Enter save (queues the invitation) · Esc cancel",
                    theme.dim(),
                ),
            ],
            5,
        ),
        Dialog::ConfirmRevoke => (
            " Revoke ",
            vec![
                Line::styled(format!("Revoke {sn}?"), theme.mark(Mark::Failed)),
                Line::raw("It can no longer log in to MQTT. This cannot be undone."),
                theme.hints(&[("y", "revoke · any other key: cancel")]),
            ],
            5,
        ),
    };
    let r = centered(area, 60, height);
    frame.render_widget(Clear, r);
    frame.render_widget(Paragraph::new(lines).block(theme.focused_panel(title)), r);
}
