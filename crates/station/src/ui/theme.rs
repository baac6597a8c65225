//! Colors and symbols. Every state has a symbol as well as a color, so nothing depends on
//! telling red from green; `NO_COLOR` (https://no-color.org) turns colors off entirely.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Block;

use vesper_core::model::Status;

/// What a mark means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Done,
    Waiting,
    Running,
    Failed,
    Revoked,
}

impl Mark {
    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Done => "✓",
            Mark::Waiting => "◌",
            Mark::Running => "▶",
            Mark::Failed => "✗",
            Mark::Revoked => "⊘",
        }
    }

    /// The mark of a device status.
    pub fn of(status: Status) -> Mark {
        match status {
            Status::Manufactured => Mark::Waiting,
            Status::Flashed => Mark::Running,
            Status::Provisioned | Status::Sold | Status::Claimed | Status::Active => Mark::Done,
            Status::Revoked => Mark::Revoked,
        }
    }
}

/// The station's styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// Colors unless `NO_COLOR` is set to anything non-empty.
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    pub fn colored() -> Theme {
        Theme { color: true }
    }

    pub fn plain() -> Theme {
        Theme { color: false }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    pub fn mark(self, mark: Mark) -> Style {
        match mark {
            Mark::Done => self.fg(Color::Green),
            Mark::Waiting => self.fg(Color::Yellow),
            Mark::Running => self.fg(Color::Cyan),
            Mark::Failed => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Mark::Revoked => self.fg(Color::Magenta),
        }
    }

    /// Secondary text.
    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    /// Titles and the current step.
    pub fn strong(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// The selected row or slot: reversed video reads without color too.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// Keys in the footer and help.
    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// A bordered box with a title.
    pub fn panel<'a>(self, title: impl Into<Line<'a>>) -> Block<'a> {
        Block::bordered().title(title).border_style(self.border())
    }

    /// A bordered box for what has the keyboard (a form, a dialog).
    pub fn focused_panel<'a>(self, title: impl Into<Line<'a>>) -> Block<'a> {
        Block::bordered().title(title).border_style(self.focus())
    }

    /// A line of key hints: `key what  key what`.
    pub fn hints(self, keys: &[(&'static str, &'static str)]) -> Line<'static> {
        let mut spans = Vec::with_capacity(keys.len() * 2);
        for (i, (key, what)) in keys.iter().enumerate() {
            let gap = if i + 1 < keys.len() { "  " } else { "" };
            spans.push(Span::styled(*key, self.key()));
            spans.push(Span::raw(format!(" {what}{gap}")));
        }
        Line::from(spans)
    }

    pub fn border(self) -> Style {
        self.dim()
    }

    /// The border of the focused box.
    pub fn focus(self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn gauge(self) -> Style {
        self.fg(Color::Cyan)
    }
}
