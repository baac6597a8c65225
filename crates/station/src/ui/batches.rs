//! Batches: create one (board, quantity, plan, outputs) and see its serial numbers, save or
//! print its labels, or hand it to the bench; the list of recent batches and their progress.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Clear, List, ListItem, ListState, Paragraph, Row, Table, TableState,
};
use tui_input::Input;
use tui_input::backend::crossterm::to_input_request;

use super::action::{Action, Task};
use super::devices::{centered, status_badge};
use super::theme::{Mark, Theme};
use super::{Component, Cx, View};
use vesper_client::BatchOrder;
use vesper_core::model::{
    Batch, BatchSummary, DEFAULT_OUTPUTS, DEFAULT_PLAN, Device, MAX_QUANTITY, StatusCounts,
};

/// The new-batch form.
#[derive(Debug, Clone)]
pub struct BatchForm {
    pub boards: Vec<String>,
    pub board: usize,
    pub quantity: Input,
    pub plan: Input,
    pub outputs: Input,
    /// 0 board, 1 quantity, 2 plan, 3 outputs.
    pub focus: usize,
    pub error: Option<String>,
    pub sending: bool,
}

impl BatchForm {
    pub fn new(boards: Vec<String>) -> BatchForm {
        BatchForm {
            boards,
            board: 0,
            quantity: Input::default(),
            plan: Input::new(DEFAULT_PLAN.into()),
            outputs: Input::new(DEFAULT_OUTPUTS.to_string()),
            focus: 1,
            error: None,
            sending: false,
        }
    }

    /// The order, or what is wrong with the form.
    pub fn order(&self) -> Result<BatchOrder, String> {
        let board = self
            .boards
            .get(self.board)
            .cloned()
            .ok_or("no boards in the configuration")?;
        let quantity: u32 = self
            .quantity
            .value()
            .trim()
            .parse()
            .map_err(|_| format!("quantity `{}` is not a number", self.quantity.value()))?;
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(format!("quantity must be 1 to {MAX_QUANTITY}"));
        }
        let plan = self.plan.value().trim().to_owned();
        if plan.is_empty() {
            return Err("the subscription plan must not be empty".into());
        }
        let available_outputs: i64 = self
            .outputs
            .value()
            .trim()
            .parse()
            .ok()
            .filter(|n| (0..=64).contains(n))
            .ok_or_else(|| format!("outputs `{}` must be 0 to 64", self.outputs.value()))?;
        Ok(BatchOrder {
            board,
            quantity,
            subscription_plan: plan,
            available_outputs,
        })
    }

    fn field(&mut self) -> Option<&mut Input> {
        match self.focus {
            1 => Some(&mut self.quantity),
            2 => Some(&mut self.plan),
            3 => Some(&mut self.outputs),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Batches {
    pub list: Vec<BatchSummary>,
    pub selected: usize,
    pub detail: Option<Batch>,
    pub form: Option<BatchForm>,
    pub boards: Vec<String>,
    /// The detail's row.
    pub row: usize,
}

impl Batches {
    pub fn new(boards: Vec<String>) -> Batches {
        Batches {
            list: Vec::new(),
            selected: 0,
            detail: None,
            form: None,
            boards,
            row: 0,
        }
    }

    /// Opens the new-batch form.
    pub fn open_form(&mut self) {
        self.form = Some(BatchForm::new(self.boards.clone()));
    }

    fn chosen(&self) -> Option<BatchSummary> {
        match &self.detail {
            Some(b) => Some(b.summary.clone()),
            None => self.list.get(self.selected).cloned(),
        }
    }

    fn form_keys(&mut self, key: KeyEvent, cx: &mut Cx) {
        let Some(form) = &mut self.form else { return };
        match key.code {
            KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % 4,
            KeyCode::BackTab | KeyCode::Up => form.focus = (form.focus + 3) % 4,
            KeyCode::Left if form.focus == 0 && !form.boards.is_empty() => {
                form.board = (form.board + form.boards.len() - 1) % form.boards.len()
            }
            KeyCode::Right if form.focus == 0 && !form.boards.is_empty() => {
                form.board = (form.board + 1) % form.boards.len()
            }
            KeyCode::Enter => match form.order() {
                Ok(order) if !form.sending => {
                    form.sending = true;
                    form.error = None;
                    cx.tasks.push(Task::CreateBatch(order));
                }
                Ok(_) => {}
                Err(e) => form.error = Some(e),
            },
            _ => {
                let numeric = matches!(form.focus, 1 | 3);
                if let KeyCode::Char(c) = key.code
                    && numeric
                    && !c.is_ascii_digit()
                    && !key.modifiers.contains(KeyModifiers::CONTROL)
                {
                    return;
                }
                if let (Some(input), Some(r)) = (form.field(), to_input_request(&Event::Key(key))) {
                    input.handle(r);
                }
            }
        }
    }

    fn bench(&self) -> Option<Action> {
        self.chosen().map(Action::UseBatch)
    }
}

impl Component for Batches {
    fn enter(&mut self, cx: &mut Cx) {
        cx.tasks.push(Task::Batches);
        if let Some(detail) = &self.detail {
            cx.tasks.push(Task::Batch(detail.summary.batch_id.clone()));
        }
    }

    fn handle_key(&mut self, key: KeyEvent, cx: &mut Cx) -> Option<Action> {
        if self.form.is_some() {
            self.form_keys(key, cx);
            return None;
        }
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                if let Some(b) = &self.detail {
                    self.row = (self.row + 1).min(b.devices.len().saturating_sub(1));
                } else {
                    self.selected = (self.selected + 1).min(self.list.len().saturating_sub(1));
                }
            }
            KeyCode::Up | KeyCode::Char('k') => {
                if self.detail.is_some() {
                    self.row = self.row.saturating_sub(1);
                } else {
                    self.selected = self.selected.saturating_sub(1);
                }
            }
            KeyCode::Enter if self.detail.is_none() => {
                if let Some(b) = self.list.get(self.selected) {
                    cx.tasks.push(Task::Batch(b.batch_id.clone()));
                }
            }
            KeyCode::Char('n') => self.open_form(),
            KeyCode::Char('e') => return self.bench(),
            KeyCode::Char('l') | KeyCode::Char('p') => {
                if let Some(b) = self.chosen() {
                    cx.tasks.push(Task::Labels {
                        batch: b.batch_id,
                        print: key.code == KeyCode::Char('p'),
                    });
                }
            }
            KeyCode::Char('r') => {
                cx.tasks.push(Task::Batches);
                if let Some(b) = &self.detail {
                    cx.tasks.push(Task::Batch(b.summary.batch_id.clone()));
                }
            }
            _ => {}
        }
        None
    }

    fn back(&mut self) -> bool {
        self.form.take().is_some() || self.detail.take().is_some()
    }

    fn claims(&self, key: &KeyEvent) -> bool {
        key.code == KeyCode::Char('e')
    }

    fn update(&mut self, action: &Action, cx: &mut Cx) -> Option<Action> {
        match action {
            Action::Batches(list) => {
                self.list = list.clone();
                self.selected = self.selected.min(self.list.len().saturating_sub(1));
            }
            Action::BatchLoaded(batch) => {
                self.detail = Some(batch.clone());
                self.row = 0;
            }
            Action::BatchCreated(batch) if self.form.as_ref().is_some_and(|f| f.sending) => {
                self.form = None;
                self.detail = Some(batch.clone());
                self.row = 0;
                cx.tasks.push(Task::Batches);
                return Some(Action::Notice(format!(
                    "batch {} created: {} serial numbers; e: bench, l: labels",
                    batch.summary.batch_id,
                    batch.devices.len()
                )));
            }
            Action::Verified { device, .. }
            | Action::DeviceChanged(device)
            | Action::DeviceLoaded(device) => self.device_changed(device),
            Action::Failed(reason) => {
                if let Some(form) = &mut self.form
                    && form.sending
                {
                    form.sending = false;
                    form.error = Some(reason.clone());
                }
            }
            _ => {}
        }
        None
    }

    fn draw(&self, frame: &mut Frame, area: Rect, view: &View) {
        match &self.detail {
            Some(batch) => draw_detail(batch, self.row, frame, area, view.theme),
            None => self.draw_list(frame, area, view.theme),
        }
        if let Some(form) = &self.form {
            draw_form(form, frame, area, view.theme);
        }
    }

    fn keys(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("↑/↓", "choose"),
            (
                "Enter",
                "open the batch: its serial numbers and their status",
            ),
            (
                "n",
                "new batch (Tab moves between fields, ←/→ picks the board)",
            ),
            ("e", "work on this batch in the bench"),
            ("l", "save the batch's labels as a PDF"),
            ("p", "print the labels (configured printer), else save them"),
            ("r", "reload"),
        ]
    }

    fn footer(&self) -> Vec<(&'static str, &'static str)> {
        if self.form.is_some() {
            vec![
                ("Tab", "next field"),
                ("Enter", "create"),
                ("Esc", "cancel"),
            ]
        } else {
            vec![
                ("n", "new batch"),
                ("Enter", "open"),
                ("e", "bench"),
                ("l", "labels"),
            ]
        }
    }

    fn captures_text(&self) -> bool {
        self.form.is_some()
    }
}

impl Batches {
    /// Keeps the open batch and its line in the list true to a device's new state.
    fn device_changed(&mut self, device: &Device) {
        let Some(detail) = &mut self.detail else {
            return;
        };
        let Some(old) = detail
            .devices
            .iter_mut()
            .find(|d| d.serial_number == device.serial_number)
        else {
            return;
        };
        let before = old.status;
        *old = device.clone();
        detail.summary.status_counts = StatusCounts::of(detail.devices.iter().map(|d| d.status));
        if let Some(line) = self
            .list
            .iter_mut()
            .find(|b| b.batch_id == detail.summary.batch_id)
        {
            line.status_counts.add(before, -1);
            line.status_counts.add(device.status, 1);
        }
    }

    fn draw_list(&self, frame: &mut Frame, area: Rect, theme: Theme) {
        let items: Vec<ListItem> = self
            .list
            .iter()
            .map(|b| {
                let done = b.done();
                let mark = if done >= b.quantity {
                    Mark::Done
                } else {
                    Mark::Waiting
                };
                ListItem::new(Line::from(vec![
                    Span::styled(mark.symbol(), theme.mark(mark)),
                    Span::styled(format!(" {:<8}", b.batch_id), theme.strong()),
                    Span::raw(format!(
                        " {:<13} {:>5}/{:<5} {:<10} {}",
                        b.board,
                        done,
                        b.quantity,
                        b.subscription_plan,
                        b.created_at.get(..10).unwrap_or(&b.created_at)
                    )),
                ]))
            })
            .collect();
        let empty = items.is_empty();
        let block = theme.panel(" Batches (done/quantity) ");
        if empty {
            frame.render_widget(
                Paragraph::new(vec![
                    Line::raw(""),
                    Line::from(vec![
                        Span::raw(" No batches yet. Press "),
                        Span::styled("n", theme.key()),
                        Span::raw(" to create one."),
                    ]),
                ])
                .block(block),
                area,
            );
            return;
        }
        let mut state = ListState::default().with_selected(Some(self.selected));
        frame.render_stateful_widget(
            List::new(items)
                .block(block)
                .highlight_style(theme.selected())
                .highlight_symbol("› "),
            area,
            &mut state,
        );
    }
}

fn draw_detail(batch: &Batch, row: usize, frame: &mut Frame, area: Rect, theme: Theme) {
    let b = &batch.summary;
    let [head, table] = Layout::vertical([Constraint::Length(3), Constraint::Fill(1)]).areas(area);
    let head_lines = vec![
        Line::from(vec![
            Span::styled(format!("Batch {}", b.batch_id), theme.strong()),
            Span::raw(format!(
                "  {} ({}{}) · {} · {} outputs · {}/{} done",
                b.board,
                b.hw_type,
                b.hw_version,
                b.subscription_plan,
                b.available_outputs,
                b.done(),
                b.quantity
            )),
        ]),
        theme.hints(&[
            ("e", "bench with this batch"),
            ("l", "save labels"),
            ("p", "print labels"),
            ("Esc", "all batches"),
        ]),
    ];
    frame.render_widget(Paragraph::new(head_lines), head);
    let rows: Vec<Row> = batch
        .devices
        .iter()
        .map(|d| {
            Row::new(vec![
                Line::raw(d.serial_number.clone()),
                Line::from(status_badge(d.status, theme)),
                Line::raw(d.mac.clone().unwrap_or_else(|| "-".into())),
            ])
        })
        .collect();
    let mut state = TableState::default().with_selected(Some(row));
    frame.render_stateful_widget(
        Table::new(
            rows,
            [
                Constraint::Length(21),
                Constraint::Length(14),
                Constraint::Fill(1),
            ],
        )
        .header(Row::new(["Serial number", "Status", "MAC"]).style(theme.strong()))
        .block(
            Block::bordered()
                .title(format!(" {} serial numbers ", batch.devices.len()))
                .border_style(theme.border()),
        )
        .row_highlight_style(theme.selected()),
        table,
        &mut state,
    );
}

fn draw_form(form: &BatchForm, frame: &mut Frame, area: Rect, theme: Theme) {
    let r = centered(area, 56, 12);
    frame.render_widget(Clear, r);
    let field = |i: usize, label: &str, value: String| {
        let style = if form.focus == i {
            theme.selected()
        } else {
            Default::default()
        };
        Line::from(vec![
            Span::styled(format!("{label:<14}"), theme.dim()),
            Span::styled(format!("{value:<30}"), style),
        ])
    };
    let board = form
        .boards
        .get(form.board)
        .map(|b| format!("‹ {b} ›"))
        .unwrap_or_else(|| "(no boards configured)".into());
    let mut lines = vec![
        field(0, "board", board),
        field(1, "quantity", form.quantity.value().to_owned()),
        field(2, "plan", form.plan.value().to_owned()),
        field(3, "outputs", form.outputs.value().to_owned()),
        Line::raw(""),
    ];
    match (&form.error, form.sending) {
        (Some(e), _) => lines.push(Line::styled(format!("✗ {e}"), theme.mark(Mark::Failed))),
        (None, true) => lines.push(Line::styled("◌ creating…", theme.mark(Mark::Waiting))),
        (None, false) => lines.push(Line::styled(
            "serial numbers are made by the backend",
            theme.dim(),
        )),
    }
    lines.push(theme.hints(&[
        ("Tab", "next"),
        ("←/→", "board"),
        ("Enter", "create"),
        ("Esc", "cancel"),
    ]));
    frame.render_widget(
        Paragraph::new(lines).block(theme.focused_panel(" New batch ")),
        r,
    );
    if let Some(input) = match form.focus {
        1 => Some(&form.quantity),
        2 => Some(&form.plan),
        3 => Some(&form.outputs),
        _ => None,
    } {
        frame.set_cursor_position((
            r.x + 1 + 14 + input.visual_cursor() as u16,
            r.y + 1 + form.focus as u16,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_names_what_is_wrong() {
        let mut form = BatchForm::new(vec!["bellcore-v2".into()]);
        assert!(form.order().unwrap_err().contains("quantity"));
        form.quantity = Input::new("0".into());
        assert!(form.order().unwrap_err().contains("1 to"));
        form.quantity = Input::new("4".into());
        form.outputs = Input::new("99".into());
        assert!(form.order().unwrap_err().contains("outputs"));
        form.outputs = Input::new("8".into());
        let order = form.order().unwrap();
        assert_eq!(order.quantity, 4);
        assert_eq!(order.board, "bellcore-v2");
    }
}
