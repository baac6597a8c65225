//! The event loop: key presses (crossterm's event stream), ticks, port changes and task
//! reports become actions; the app updates, its tasks are started, and the screen is redrawn.
//! The terminal is restored on exit and on panic.
//!
//! [`Station`] is the loop's core without a terminal: the app, the task runner, the reports
//! channel and the port watcher. [`run`] puts a terminal around it; benchmarks and tests drive it
//! with a `TestBackend`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt as _;
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;

use super::action::{Action, Screen};
use super::app::{App, AppSettings};
use super::tasks::Runner;
use super::theme::Theme;
use crate::slots::{AUTO_SLOTS, PORT_POLL, SlotChange, SlotWatcher};
use vesper_client::ApiClient;
use vesper_core::config::Config;

/// Time between ticks (elapsed times, periodic refresh).
pub const TICK: Duration = Duration::from_millis(250);

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

/// The station without its terminal: state, background work and the reports it sends back.
pub struct Station {
    pub app: App,
    runner: Runner,
    reports: mpsc::UnboundedReceiver<Action>,
    stop_ports: Arc<AtomicBool>,
    ports: Option<std::thread::JoinHandle<()>>,
}

impl Station {
    /// Builds the app, starts watching the bench's ports and queues the first requests.
    /// Needs a tokio runtime.
    pub fn start(config: Config, client: ApiClient, options: StationOptions) -> Station {
        let config = Arc::new(config);
        let (tx, reports) = mpsc::unbounded_channel();
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
        let stop_ports = Arc::new(AtomicBool::new(false));
        let ports = {
            let stop = stop_ports.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for change in watcher.poll() {
                        let _ = tx.send(match change {
                            SlotChange::Plugged { slot, port } => Action::Plugged { slot, port },
                            SlotChange::Unplugged { slot } => Action::Unplugged { slot },
                        });
                    }
                    std::thread::sleep(PORT_POLL);
                }
            })
        };
        let mut station = Station {
            app,
            runner,
            reports,
            stop_ports,
            ports: Some(ports),
        };
        station.spawn_tasks();
        station
    }

    /// The next report of a background task or port change.
    pub async fn next_report(&mut self) -> Option<Action> {
        self.reports.recv().await
    }

    /// Applies `action` and every report already waiting, then starts the tasks they queued.
    pub fn handle(&mut self, action: Option<Action>) {
        self.app.set_time(Instant::now(), clock());
        if let Some(action) = action {
            self.app.update(action);
        }
        // Take everything already waiting before drawing once.
        while let Ok(action) = self.reports.try_recv() {
            self.app.update(action);
        }
        self.spawn_tasks();
    }

    fn spawn_tasks(&mut self) {
        for task in self.app.take_tasks() {
            self.runner.spawn(task);
        }
    }

    /// Draws the current state.
    pub fn draw<B: Backend>(&self, terminal: &mut Terminal<B>) -> Result<(), B::Error> {
        terminal.draw(|frame| self.app.draw(frame)).map(|_| ())
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        self.stop_ports.store(true, Ordering::Relaxed);
        if let Some(ports) = self.ports.take() {
            let _ = ports.join();
        }
    }
}

/// Runs the station until the operator quits.
pub async fn run(
    config: Config,
    client: ApiClient,
    options: StationOptions,
) -> Result<(), StationError> {
    let mut station = Station::start(config, client, options);
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
            Some(action) = station.next_report() => Some(action),
        };
        station.handle(action);
        if station.app.quit {
            break Ok(());
        }
        if let Err(e) = station.draw(&mut terminal) {
            break Err(StationError::Terminal(e));
        }
    };
    ratatui::restore();
    drop(station);
    result
}

/// The local time of day for activity lists.
fn clock() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}
