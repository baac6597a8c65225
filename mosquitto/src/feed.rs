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

use std::sync::Weak;
use std::time::Instant;

use crate::checker::{Shared, WireCommand};
use crate::options::ControlOptions;

/// The largest feed answer read, in bytes (the backend sends at most 1,000 commands per page).
const MAX_PAGE: u64 = 1024 * 1024;

/// One answer of the feed.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Page {
    /// The cursor to ask after next time.
    next: u64,
    /// The backend no longer holds every command after the cursor asked for.
    #[serde(default)]
    reset: bool,
    #[serde(default)]
    commands: Vec<WireCommand>,
}

/// Starts the reader; it ends when the checker is dropped.
pub fn start(shared: Weak<Shared>, control: ControlOptions) {
    std::thread::Builder::new()
        .name("vesper-control-feed".into())
        .spawn(move || read_until_dropped(&shared, &control))
        .expect("the control feed thread starts");
}

fn read_until_dropped(shared: &Weak<Shared>, control: &ControlOptions) {
    let mut cursor: Option<u64> = None;
    loop {
        let Some(checker) = shared.upgrade() else {
            return;
        };
        let asked_at = Instant::now();
        let busy = match read(&checker, &control.uri, cursor) {
            Ok(page) => {
                let busy = !page.commands.is_empty();
                for command in page.commands.into_iter().filter_map(WireCommand::command) {
                    checker.carry_out(&command);
                }
                // The first read only learns where the feed stands: nothing was cached before.
                checker.confirm(asked_at, page.reset && cursor.is_some());
                cursor = Some(page.next);
                busy
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
fn read(shared: &Shared, uri: &str, cursor: Option<u64>) -> Result<Page, String> {
    let options = shared.options();
    let url = match cursor {
        Some(after) => format!(
            "http://{}:{}{uri}?after={after}",
            options.host, options.port
        ),
        None => format!("http://{}:{}{uri}", options.host, options.port),
    };
    let mut response = shared
        .agent()
        .get(&url)
        .call()
        .map_err(|e| format!("{url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url}: status {}", response.status()));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_PAGE)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
}
