//! The dashboard: devices by status and board, today's throughput, recent activity (the audit
//! feed), and whether the backend and the broker are reachable.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Paragraph, Sparkline, Wrap};

use super::action::{Action, Task};
use super::theme::{Mark, Theme};
use super::{Component, Cx, View};
use vesper_client::Health;
use vesper_core::model::{Stats, Status};

#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    pub stats: Option<Stats>,
    pub health: Option<Result<Health, String>>,
}

impl Dashboard {
    pub fn refresh(cx: &mut Cx) {
        cx.tasks.push(Task::Stats);
        cx.tasks.push(Task::Health);
    }
}

/// `backend ● broker ●` for the header, with symbols that read without color.
pub fn health_spans(health: Option<&Result<Health, String>>, theme: Theme) -> Vec<Span<'static>> {
    let (backend, broker) = match health {
        None => (Mark::Waiting, Mark::Waiting),
        Some(Err(_)) => (Mark::Failed, Mark::Waiting),
        Some(Ok(h)) => (
            if h.status == "ok" {
                Mark::Done
            } else {
                Mark::Failed
            },
            match h.broker.as_str() {
                "connected" => Mark::Done,
                "not configured" => Mark::Waiting,
                _ => Mark::Failed,
            },
        ),
    };
    vec![
        Span::raw("backend "),
        Span::styled(backend.symbol(), theme.mark(backend)),
        Span::raw(" broker "),
        Span::styled(broker.symbol(), theme.mark(broker)),
    ]
}

impl Component for Dashboard {
    fn enter(&mut self, cx: &mut Cx) {
        Self::refresh(cx);
    }

    fn handle_key(&mut self, key: KeyEvent, cx: &mut Cx) -> Option<Action> {
        if key.code == crossterm::event::KeyCode::Char('r') {
            Self::refresh(cx);
        }
        None
    }

    fn update(&mut self, action: &Action, _cx: &mut Cx) -> Option<Action> {
        match action {
            Action::Stats(s) => self.stats = Some(s.clone()),
            Action::Health(h) => self.health = Some(h.clone()),
            _ => {}
        }
        None
    }

    fn draw(&self, frame: &mut Frame, area: Rect, view: &View) {
        let theme = view.theme;
        let Some(stats) = &self.stats else {
            let text = match &self.health {
                Some(Err(reason)) => vec![
                    Line::styled(format!("✗ {reason}"), theme.mark(Mark::Failed)),
                    Line::raw(""),
                    Line::raw(
                        "Check backend.url in the configuration and that `vesper serve` is running there.",
                    ),
                    Line::raw("The station tries again every 5 seconds; r tries now."),
                ],
                _ => vec![Line::raw("◌ loading figures from the backend…")],
            };
            frame.render_widget(
                Paragraph::new(text)
                    .wrap(Wrap { trim: false })
                    .block(Block::bordered()),
                area,
            );
            return;
        };
        let recent_height = if area.height >= 30 {
            area.height / 2
        } else {
            area.height.saturating_sub(12).max(3)
        };
        let [top, recent] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(recent_height)]).areas(area);
        let [counts, side] =
            Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(top);
        draw_counts(stats, frame, counts, theme);
        let [today, health] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(4)]).areas(side);
        draw_today(stats, frame, today, theme);
        draw_health(self.health.as_ref(), stats, frame, health, theme);
        draw_recent(stats, frame, recent, theme);
    }

    fn keys(&self) -> Vec<(&'static str, &'static str)> {
        vec![("r", "refresh now (it refreshes every 5 s)")]
    }

    fn footer(&self) -> Vec<(&'static str, &'static str)> {
        vec![("n", "new batch"), ("e", "bench"), ("w", "wizard")]
    }
}

fn short(status: Status) -> &'static str {
    match status {
        Status::Manufactured => "made",
        Status::Flashed => "flash",
        Status::Provisioned => "prov",
        Status::Sold => "sold",
        Status::Claimed => "claim",
        Status::Active => "active",
        Status::Revoked => "revok",
    }
}

fn draw_counts(stats: &Stats, frame: &mut Frame, area: Rect, theme: Theme) {
    let bars: Vec<Bar> = Status::ALL
        .iter()
        .map(|s| {
            let n = stats.by_status.get(*s).max(0) as u64;
            let mark = Mark::of(*s);
            Bar::default()
                .value(n)
                .label(Line::from(format!("{}{}", mark.symbol(), short(*s))))
                .style(theme.mark(mark))
        })
        .collect();
    let width = (area.width.saturating_sub(2) / Status::ALL.len() as u16)
        .saturating_sub(1)
        .clamp(3, 9);
    frame.render_widget(
        BarChart::default()
            .block(
                Block::bordered()
                    .title(format!(" Devices by status ({} in all) ", stats.total))
                    .border_style(theme.border()),
            )
            .data(BarGroup::default().bars(&bars))
            .bar_width(width)
            .bar_gap(1),
        area,
    );
}

fn draw_today(stats: &Stats, frame: &mut Frame, area: Rect, theme: Theme) {
    let [spark, boards] =
        Layout::vertical([Constraint::Length(5), Constraint::Fill(1)]).areas(area);
    let data: Vec<u64> = stats
        .provisioned_by_hour
        .iter()
        .map(|n| (*n).max(0) as u64)
        .collect();
    let today = stats.provisioned_today;
    let title = if area.width >= 44 {
        format!(" Today: {today} provisioned (per hour, UTC) ")
    } else {
        format!(" Today: {today} provisioned ")
    };
    frame.render_widget(
        Sparkline::default()
            .block(theme.panel(title))
            .data(&data)
            .style(theme.mark(Mark::Done)),
        spark,
    );
    let lines: Vec<Line> = stats
        .by_board
        .iter()
        .map(|(board, n)| Line::raw(format!("{board:<16} {n:>7}")))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(theme.panel(" By board ")),
        boards,
    );
}

fn draw_health(
    health: Option<&Result<Health, String>>,
    _stats: &Stats,
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
) {
    let detail = match health {
        None => "checking…".to_owned(),
        Some(Err(e)) => e.clone(),
        Some(Ok(h)) => format!("registry {} · broker {}", h.registry, h.broker),
    };
    let lines = vec![
        Line::from(health_spans(health, theme)),
        Line::styled(detail, theme.dim()),
    ];
    frame.render_widget(Paragraph::new(lines).block(theme.panel(" Health ")), area);
}

fn draw_recent(stats: &Stats, frame: &mut Frame, area: Rect, theme: Theme) {
    let lines: Vec<Line> = stats
        .recent
        .iter()
        .take(usize::from(area.height.saturating_sub(2)))
        .map(|e| {
            let mark = if e.action.contains("revoke") {
                Mark::Revoked
            } else if e.action.contains("flashed") || e.action.contains("provision") {
                Mark::Done
            } else {
                Mark::Running
            };
            Line::from(vec![
                Span::styled(
                    format!("{} ", e.at.get(11..19).unwrap_or(&e.at)),
                    theme.dim(),
                ),
                Span::styled(mark.symbol(), theme.mark(mark)),
                Span::raw(format!(
                    " {} {} by {}",
                    e.action,
                    e.subject.as_deref().unwrap_or(""),
                    e.actor
                )),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(theme.panel(" Recent activity ")),
        area,
    );
}
