//! The station's screens: a keyboard-driven terminal workstation (ratatui + crossterm on tokio).
//!
//! State and rendering are separate: screens ([`Component`]s) change only in `update(Action)`
//! and draw only what they hold. One event loop ([`run`]) merges key presses, ticks and the
//! reports of background [`Task`]s (API calls, flash jobs, port changes) into actions; all I/O
//! runs in those tasks, so a key press is answered at once whatever the backend or a board does.

pub mod action;
pub mod app;
pub mod batches;
pub mod bench;
pub mod dashboard;
pub mod devices;
pub mod ports;
pub mod progress;
pub mod runtime;
pub mod tasks;
pub mod theme;
pub mod wizard;

use std::time::Instant;

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::Rect;

pub use action::{Action, Owner, Screen, Task};
pub use app::{App, AppSettings};
pub use runtime::{Station, StationError, StationOptions, run};
pub use theme::Theme;

/// What a screen may touch while handling a key or an action.
pub struct Cx<'a> {
    /// I/O to start once the update is done.
    pub tasks: &'a mut Vec<Task>,
    pub now: Instant,
    /// Wall-clock time of day, `HH:MM:SS`, for activity lists.
    pub clock: String,
}

/// What a screen may read while drawing.
pub struct View {
    pub theme: Theme,
    pub now: Instant,
}

/// A screen.
pub trait Component {
    /// A key press meant for this screen.
    fn handle_key(&mut self, key: KeyEvent, cx: &mut Cx) -> Option<Action>;
    /// Any action; most screens ignore most actions.
    fn update(&mut self, action: &Action, cx: &mut Cx) -> Option<Action>;
    fn draw(&self, frame: &mut Frame, area: Rect, view: &View);
    /// The keys of this screen, for the help overlay.
    fn keys(&self) -> Vec<(&'static str, &'static str)>;
    /// The few keys shown in the footer.
    fn footer(&self) -> Vec<(&'static str, &'static str)>;
    /// The screen is shown: queue what it needs from the backend.
    fn enter(&mut self, _cx: &mut Cx) {}
    /// Esc or q: close something inside the screen first; `false` leaves the screen.
    fn back(&mut self) -> bool {
        false
    }
    /// A text field or a dialog has the keyboard: letters go there, not to shortcuts.
    fn captures_text(&self) -> bool {
        false
    }
    /// This key means something else here than the global shortcut.
    fn claims(&self, _key: &KeyEvent) -> bool {
        false
    }
    /// Work is running that quitting would interrupt.
    fn busy(&self) -> bool {
        false
    }
}
