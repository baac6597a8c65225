//! The station's state: the screens, navigation, global keys, the header, footer, status line
//! and help overlay. Pure state: [`App::update`] takes an action and queues tasks; nothing here
//! does I/O, so every behavior is testable without a terminal, a backend or a board.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::action::{Action, Screen, Task};
use super::batches::Batches;
use super::bench::Bench;
use super::dashboard::{self, Dashboard};
use super::devices::{Devices, centered};
use super::theme::{Mark, Theme};
use super::wizard::Wizard;
use super::{Component, Cx, View};

/// How often the dashboard and the health marks refresh.
const REFRESH: Duration = Duration::from_secs(5);
/// A second q or Ctrl-C within this time quits while boards are being flashed.
const QUIT_WINDOW: Duration = Duration::from_secs(3);

/// Screens in Tab order, with their shortcut keys.
const SCREENS: [(Screen, char); 5] = [
    (Screen::Dashboard, 'h'),
    (Screen::Batches, 'b'),
    (Screen::Devices, 'd'),
    (Screen::Wizard, 'w'),
    (Screen::Bench, 'e'),
];

/// What the station starts with.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub station: String,
    /// Board names from the configuration.
    pub boards: Vec<String>,
    /// Bench slot labels (their ports), in slot order.
    pub slots: Vec<String>,
    pub confirm_each_board: bool,
    pub start: Screen,
    pub theme: Theme,
}

pub struct App {
    pub screen: Screen,
    history: Vec<Screen>,
    pub help: bool,
    pub theme: Theme,
    pub station: String,
    pub dashboard: Dashboard,
    pub batches: Batches,
    pub devices: Devices,
    pub wizard: Wizard,
    pub bench: Bench,
    /// The status line: the latest notice or failure.
    pub status: Option<(Mark, String)>,
    tasks: Vec<Task>,
    pub now: Instant,
    pub clock: String,
    pub quit: bool,
    quit_armed: Option<Instant>,
    last_refresh: Option<Instant>,
}

impl App {
    pub fn new(settings: AppSettings) -> App {
        App {
            screen: settings.start,
            history: Vec::new(),
            help: false,
            theme: settings.theme,
            station: settings.station,
            dashboard: Dashboard::default(),
            batches: Batches::new(settings.boards.clone()),
            devices: Devices::new(),
            wizard: Wizard::new(settings.boards),
            bench: Bench::new(settings.slots, settings.confirm_each_board),
            status: None,
            tasks: Vec::new(),
            now: Instant::now(),
            clock: "00:00:00".into(),
            quit: false,
            quit_armed: None,
            last_refresh: None,
        }
    }

    /// Sets the time (the runtime does on every tick; tests pin it).
    pub fn set_time(&mut self, now: Instant, clock: impl Into<String>) {
        self.now = now;
        self.clock = clock.into();
    }

    /// The I/O queued by the updates so far.
    pub fn take_tasks(&mut self) -> Vec<Task> {
        std::mem::take(&mut self.tasks)
    }

    /// Work a quit would interrupt.
    pub fn busy(&self) -> bool {
        self.bench.busy() || self.wizard.busy()
    }

    fn component(&mut self) -> &mut dyn Component {
        match self.screen {
            Screen::Dashboard => &mut self.dashboard,
            Screen::Batches => &mut self.batches,
            Screen::Devices => &mut self.devices,
            Screen::Wizard => &mut self.wizard,
            Screen::Bench => &mut self.bench,
        }
    }

    fn component_ref(&self) -> &dyn Component {
        match self.screen {
            Screen::Dashboard => &self.dashboard,
            Screen::Batches => &self.batches,
            Screen::Devices => &self.devices,
            Screen::Wizard => &self.wizard,
            Screen::Bench => &self.bench,
        }
    }

    /// Runs `f` on one component with a context that queues into `self.tasks`.
    fn with<T>(&mut self, screen: Screen, f: impl FnOnce(&mut dyn Component, &mut Cx) -> T) -> T {
        let mut cx = Cx {
            tasks: &mut self.tasks,
            now: self.now,
            clock: self.clock.clone(),
        };
        let component: &mut dyn Component = match screen {
            Screen::Dashboard => &mut self.dashboard,
            Screen::Batches => &mut self.batches,
            Screen::Devices => &mut self.devices,
            Screen::Wizard => &mut self.wizard,
            Screen::Bench => &mut self.bench,
        };
        f(component, &mut cx)
    }

    /// First tasks: health, figures, batches.
    pub fn start(&mut self) {
        self.last_refresh = Some(self.now);
        self.tasks
            .extend([Task::Health, Task::Stats, Task::Batches]);
        self.enter(self.screen);
    }

    /// Applies an action and every action it leads to.
    pub fn update(&mut self, action: Action) {
        let mut next = Some(action);
        let mut guard = 0;
        while let Some(action) = next.take() {
            next = self.apply(action);
            guard += 1;
            if guard > 32 {
                break;
            }
        }
    }

    fn apply(&mut self, action: Action) -> Option<Action> {
        // The wizard and the bench never work on the same port.
        self.wizard.bench_ports = self.bench.ports_in_use();
        self.bench.wizard_port = self.wizard.port_in_use().map(str::to_owned);
        match action {
            Action::Key(key) => self.key(key),
            Action::Tick => {
                self.tick();
                None
            }
            Action::Quit => {
                self.quit = true;
                None
            }
            Action::Go(screen) => {
                self.go(screen);
                None
            }
            Action::UseBatch(batch) => {
                let text = format!("bench: working on batch {}", batch.batch_id);
                self.with(Screen::Bench, |c, cx| {
                    c.update(&Action::UseBatch(batch), cx)
                });
                self.go(Screen::Bench);
                Some(Action::Notice(text))
            }
            Action::Notice(text) => {
                self.status = Some((Mark::Done, text));
                None
            }
            other => {
                if let Action::Failed(reason) = &other {
                    self.status = Some((Mark::Failed, reason.clone()));
                }
                if let Action::DeviceChanged(d) = &other {
                    self.status = Some((
                        Mark::Done,
                        format!("{} is now {}", d.serial_number, d.status.as_str()),
                    ));
                }
                // Every screen sees every report; each keeps what is addressed to it.
                let mut follow = None;
                for screen in SCREENS.map(|(s, _)| s) {
                    if let Some(a) = self.with(screen, |c, cx| c.update(&other, cx)) {
                        follow = Some(a);
                    }
                }
                follow
            }
        }
    }

    fn tick(&mut self) {
        let due = self
            .last_refresh
            .is_none_or(|t| self.now.saturating_duration_since(t) >= REFRESH);
        if due {
            self.last_refresh = Some(self.now);
            self.tasks.push(Task::Health);
            if self.screen == Screen::Dashboard {
                self.tasks.push(Task::Stats);
            }
        }
    }

    /// Tasks a screen needs when it is shown.
    fn enter(&mut self, screen: Screen) {
        self.with(screen, |c, cx| c.enter(cx));
    }

    fn go(&mut self, screen: Screen) {
        if screen != self.screen {
            self.history.retain(|s| *s != screen);
            self.history.push(self.screen);
            self.screen = screen;
        }
        self.help = false;
        self.enter(screen);
    }

    fn back(&mut self) -> Option<Action> {
        match self.history.pop() {
            Some(screen) => {
                self.screen = screen;
                self.enter(screen);
                None
            }
            None => self.ask_quit(),
        }
    }

    /// Quits at once when idle; while boards are being flashed, only on a second press.
    fn ask_quit(&mut self) -> Option<Action> {
        if !self.busy() {
            return Some(Action::Quit);
        }
        if self
            .quit_armed
            .is_some_and(|t| self.now.saturating_duration_since(t) < QUIT_WINDOW)
        {
            return Some(Action::Quit);
        }
        self.quit_armed = Some(self.now);
        self.status = Some((
            Mark::Waiting,
            "boards are being flashed: press again within 3 s to quit anyway".into(),
        ));
        None
    }

    fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return self.ask_quit();
        }
        if self.help {
            self.help = false;
            return None;
        }
        let screen = self.screen;
        let (captures, claims) = {
            let c = self.component_ref();
            (c.captures_text(), c.claims(&key))
        };
        if captures || claims {
            if key.code == KeyCode::Esc && captures {
                return if self.component().back() {
                    None
                } else {
                    self.back()
                };
            }
            return self.with(screen, |c, cx| c.handle_key(key, cx));
        }
        let plain = !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('q') | KeyCode::Esc => {
                return if self.component().back() {
                    None
                } else {
                    self.back()
                };
            }
            KeyCode::Tab | KeyCode::BackTab => {
                let i = SCREENS.iter().position(|(s, _)| *s == screen).unwrap_or(0);
                let step = if key.code == KeyCode::Tab {
                    1
                } else {
                    SCREENS.len() - 1
                };
                self.go(SCREENS[(i + step) % SCREENS.len()].0);
            }
            KeyCode::F(n @ 1..=5) => self.go(SCREENS[usize::from(n) - 1].0),
            KeyCode::Char('n') if plain => {
                self.go(Screen::Batches);
                self.batches.open_form();
            }
            KeyCode::Char(c) if plain && SCREENS.iter().any(|(_, k)| *k == c) => {
                let target = SCREENS.iter().find(|(_, k)| *k == c).map(|(s, _)| *s);
                if let Some(target) = target {
                    self.go(target);
                }
            }
            _ => return self.with(screen, |c, cx| c.handle_key(key, cx)),
        }
        None
    }

    pub fn draw(&self, frame: &mut Frame) {
        let area = frame.area();
        let [header, body, status, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let view = View {
            theme: self.theme,
            now: self.now,
        };
        frame.render_widget(Paragraph::new(self.header_line(area.width)), header);
        self.component_ref().draw(frame, body, &view);
        if let Some((mark, text)) = &self.status {
            frame.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::styled(mark.symbol(), self.theme.mark(*mark)),
                    Span::raw(format!(" {text}")),
                ])),
                status,
            );
        }
        frame.render_widget(Paragraph::new(self.footer_line(area.width)), footer);
        if self.help {
            self.draw_help(frame, body);
        }
    }

    /// Title, station, screen, the bench's batch and health; shortened to fit `width`.
    fn header_line(&self, width: u16) -> Line<'static> {
        let theme = self.theme;
        let wide = width >= 100;
        let sep = || Span::styled(" ─ ", theme.dim());
        let mut spans = vec![Span::styled(
            if wide { " Vesper Station" } else { " Vesper" },
            theme.strong(),
        )];
        if wide {
            spans.extend([sep(), Span::raw(self.station.clone())]);
        }
        spans.extend([sep(), Span::styled(self.screen.title(), theme.strong())]);
        if self.screen == Screen::Bench
            && let Some(batch) = &self.bench.batch
        {
            let (done, total) = self.bench.progress().unwrap_or((0, 0));
            spans.push(sep());
            spans.push(Span::raw(if wide {
                format!(
                    "batch {} · {} · {done}/{total} done",
                    batch.batch_id, batch.board
                )
            } else {
                format!("{} {done}/{total}", batch.batch_id)
            }));
        }
        spans.push(sep());
        spans.extend(dashboard::health_spans(
            self.dashboard.health.as_ref(),
            theme,
        ));
        Line::from(spans)
    }

    /// The screen's main keys, then help and back, as many as fit `width`.
    fn footer_line(&self, width: u16) -> Line<'static> {
        let theme = self.theme;
        let global = [("?", "help"), ("q", "back")];
        let mut keys = self.component_ref().footer();
        if width >= 100 {
            keys.push(("Tab", "screens"));
        }
        let cost = |(k, w): &(&str, &str)| k.chars().count() + w.chars().count() + 5;
        let mut room =
            usize::from(width).saturating_sub(1 + global.iter().map(cost).sum::<usize>());
        let mut spans = vec![Span::raw(" ")];
        for (key, what) in keys.into_iter().chain(global) {
            let c = cost(&(key, what));
            if !global.contains(&(key, what)) {
                if c > room {
                    continue;
                }
                room -= c;
            }
            spans.push(Span::styled(format!("[{key}]"), theme.key()));
            spans.push(Span::raw(format!(" {what}  ")));
        }
        Line::from(spans)
    }

    fn draw_help(&self, frame: &mut Frame, area: Rect) {
        let theme = self.theme;
        let mut keys = self.component_ref().keys();
        keys.extend([
            (
                "h b d w e",
                "dashboard, batches, devices, wizard, bench (or F1-F5, Tab)",
            ),
            ("n", "new batch"),
            ("q / Esc", "back; on the first screen: quit"),
            ("Ctrl-C", "quit (twice while boards are being flashed)"),
            ("?", "close this help"),
        ]);
        let mut lines = vec![Line::styled(
            format!("{}: keys", self.screen.title()),
            theme.strong(),
        )];
        for (key, what) in keys {
            lines.push(Line::from(vec![
                Span::styled(format!("{key:>14} "), theme.key()),
                Span::raw(what),
            ]));
        }
        lines.push(Line::styled(
            "✓ done  ◌ waiting  ▶ running  ✗ failed  ⊘ revoked",
            theme.dim(),
        ));
        let r = centered(area, 78, lines.len() as u16 + 2);
        frame.render_widget(Clear, r);
        frame.render_widget(
            Paragraph::new(lines).block(theme.focused_panel(" Help ")),
            r,
        );
    }
}
