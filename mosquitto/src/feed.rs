//! The backend's control feed, read by the plugin: the durable path for kicks and forgets. The
//! backend writes each command into its registry in the same transaction as the change that
//! causes it (a device revoked, a user removed from a device) and serves them in order at
//! `GET /mqtt/control?after=SEQ` on the auth listener, the one the plugin already asks. So the
//! channel exists whenever the broker can reach the backend at all (no `[serve.broker]` needed),
//! no command is dropped under load, and several `vesper serve` sharing one PostgreSQL serve one
//! feed.
//!
//! The reader runs on a thread of its own, never on mosquitto's. Each answer also confirms that
//! every device not kicked was still allowed when it was asked for: while the feed is fresh
//! (read within `status_cache_seconds`), a device's topic checks need no question at all. When
//! it is not (backend down, an older backend without the route), the checker asks about each
//! device as before.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::{Duration, Instant};

use crate::checker::{Shared, WireCommand};
use crate::options::ControlOptions;

/// The largest feed answer read, in bytes (the backend sends at most 1,000 commands per page).
pub const MAX_PAGE: u64 = 1024 * 1024;

/// One answer of the feed.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    /// The cursor to ask after next time.
    next: u64,
    /// The cursor asked for is not one the backend's registry wrote (restored or replaced):
    /// commands may have been missed.
    #[serde(default)]
    reset: bool,
    /// More commands wait: read again at once.
    #[serde(default)]
    more: bool,
    #[serde(default)]
    commands: Vec<Numbered>,
}

impl Page {
    /// Reads one answer of the feed (the backend's JSON; at most [`MAX_PAGE`] bytes are read).
    pub fn parse(body: &[u8]) -> Result<Page, String> {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }

    /// The commands the plugin knows, in the feed's order (others are left out).
    pub fn commands(&self) -> Vec<crate::checker::Command> {
        self.commands
            .iter()
            .filter_map(|n| n.command.clone().command())
            .collect()
    }
}

/// A command with its place in the feed. The backend sends recent commands again until they
/// are settled (see its `FEED_SETTLE`); the place says which were carried out already.
#[derive(Debug, serde::Deserialize)]
struct Numbered {
    seq: u64,
    #[serde(flatten)]
    command: WireCommand,
}

/// Starts the reader; it ends when the checker is dropped. Its reads are off mosquitto's
/// thread, so they may take the whole `http_timeout` (a backend slow to answer still keeps
/// the feed fresh), not just the budget.
pub(crate) fn start(shared: Weak<Shared>, control: ControlOptions, timeout: Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    std::thread::Builder::new()
        .name("vesper-control-feed".into())
        .spawn(move || read_until_dropped(&shared, &control, &agent))
        .expect("the control feed thread starts");
}

fn read_until_dropped(shared: &Weak<Shared>, control: &ControlOptions, agent: &ureq::Agent) {
    let mut cursor: Option<u64> = None;
    // Commands after the cursor already carried out.
    let mut done = BTreeSet::new();
    loop {
        let Some(checker) = shared.upgrade() else {
            return;
        };
        let asked_at = Instant::now();
        let busy = match read(&checker, agent, &control.uri, cursor) {
            Ok(page) => {
                // The first read only learns where the feed stands: nothing was cached before.
                let started_over = page.reset && cursor.is_some();
                if started_over {
                    done.clear();
                }
                for Numbered { seq, command } in page.commands {
                    if done.insert(seq)
                        && let Some(command) = command.command()
                    {
                        checker.carry_out(&command);
                    }
                }
                checker.confirm(asked_at, started_over);
                cursor = Some(page.next);
                done = done.split_off(&(page.next + 1));
                page.more
            }
            Err(_) => false,
        };
        drop(checker);
        if !busy {
            std::thread::sleep(control.poll);
        }
    }
}

/// One read of the feed after `cursor` (from its head when `None`).
fn read(
    shared: &Shared,
    agent: &ureq::Agent,
    uri: &str,
    cursor: Option<u64>,
) -> Result<Page, String> {
    let options = shared.options();
    let url = match cursor {
        Some(after) => format!(
            "http://{}:{}{uri}?after={after}",
            options.host, options.port
        ),
        None => format!("http://{}:{}{uri}", options.host, options.port),
    };
    let mut response = agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url}: status {}", response.status()));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_PAGE)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))?;
    Page::parse(&body).map_err(|e| format!("{url}: {e}"))
}
