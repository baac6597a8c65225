//! The event loop: key presses (crossterm's event stream), ticks, port changes and task
//! reports become actions; the app updates, its tasks are started, and the screen is redrawn.
//! The terminal is restored on exit and on panic.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::action::{Action, Screen};
use super::app::{App, AppSettings};
use super::ports::SlotWatcher;
use super::tasks::Runner;
use super::theme::Theme;
use crate::client::ApiClient;
use crate::config::Config;

/// Time between ticks (elapsed times, periodic refresh).
const TICK: Duration = Duration::from_millis(250);
/// Time between looks at the bench slots' ports.
const PORT_POLL: Duration = Duration::from_millis(200);
/// Slots filled by USB adapters when none are configured.
const AUTO_SLOTS: usize = 4;

/// How to start the station.
#[derive(Debug, Clone)]
pub struct StationOptions {
    pub start: Screen,
    /// Where saved labels go.
    pub labels_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error("the station needs a terminal: {0}")]
    Terminal(std::io::Error),
}

/// Runs the station until the operator quits.
pub async fn run(
    config: Config,
    client: ApiClient,
    options: StationOptions,
) -> Result<(), StationError> {
    let config = Arc::new(config);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = SlotWatcher::new(&config.station_settings.slots, AUTO_SLOTS);
    let settings = AppSettings {
        station: config.station.clone(),
        boards: config.boards.iter().map(|b| b.name.clone()).collect(),
        slots: watcher.labels(),
        confirm_each_board: config.station_settings.confirm_each_board,
        start: options.start,
        theme: Theme::from_env(),
    };
    let runner = Runner::new(client, config.clone(), tx.clone(), options.labels_dir);
    let mut app = App::new(settings);
    app.set_time(Instant::now(), clock());
    app.start();

    // Port changes come from a thread of their own: listing ports reads sysfs.
    let stop_ports = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ports = {
        let (tx, stop) = (tx.clone(), stop_ports.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for action in watcher.poll() {
                    let _ = tx.send(action);
                }
                std::thread::sleep(PORT_POLL);
            }
        })
    };

    let mut terminal = ratatui::try_init().map_err(StationError::Terminal)?;
    let mut keys = EventStream::new();
    let mut ticks = tokio::time::interval(TICK);
    let result = loop {
        let action = tokio::select! {
            event = keys.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => Some(Action::Key(key)),
                Some(Ok(_)) => None,
                Some(Err(e)) => break Err(StationError::Terminal(e)),
                None => break Ok(()),
            },
            _ = ticks.tick() => Some(Action::Tick),
            Some(action) = rx.recv() => Some(action),
        };
        app.set_time(Instant::now(), clock());
        if let Some(action) = action {
            app.update(action);
        }
        // Take everything already waiting before drawing once.
        while let Ok(action) = rx.try_recv() {
            app.update(action);
        }
        for task in app.take_tasks() {
            runner.spawn(task);
        }
        if app.quit {
            break Ok(());
        }
        if let Err(e) = terminal.draw(|frame| app.draw(frame)) {
            break Err(StationError::Terminal(e));
        }
    };
    ratatui::restore();
    stop_ports.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = ports.join();
    result
}

/// The local time of day for activity lists.
fn clock() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}
