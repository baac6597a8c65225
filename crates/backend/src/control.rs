//! Revocation at once: when a login loses its rights (a device revoked, a user removed from a
//! device), the broker plugin must drop its cached answers for that username and, for a revoked
//! device, disconnect it. Without this the broker would keep a cached grant until its cache time
//! runs out. Two paths carry the commands:
//!
//! - **The control feed** (`GET /mqtt/control?after=SEQ` on the auth listener), the durable one:
//!   the commands are read from the registry's audit rows, which are written in the same
//!   transaction as the change, so none is lost on a crash or under load, it needs no
//!   `[serve.broker]`, and every `vesper serve` sharing one PostgreSQL serves the same feed. The
//!   plugin reads it twice a second.
//! - **`$CONTROL/vesper/v1`**, the immediate one: the heartbeat listener publishes the commands
//!   queued here as the service account. The queue never drops a command: it waits for the
//!   broker (`vesper_broker_commands_waiting` in `/metrics`, and `vesper doctor`, say how many
//!   wait). Without `[serve.broker]` there is no connection, and commands are counted as unsent;
//!   the feed still carries them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use vesper_store::{AccessChanges, AuditEntry, Status};

use crate::SharedState;

/// What the plugin is told to do about one username.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerCommand {
    pub command: CommandKind,
    pub username: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandKind {
    /// Drop cached answers and disconnect every client of the username.
    Kick,
    /// Drop cached answers only (the next check asks the backend again).
    Forget,
}

impl BrokerCommand {
    pub fn kick(username: &str) -> Self {
        Self {
            command: CommandKind::Kick,
            username: username.to_owned(),
        }
    }

    pub fn forget(username: &str) -> Self {
        Self {
            command: CommandKind::Forget,
            username: username.to_owned(),
        }
    }

    /// The JSON payload: `{"command":"kick","username":"SN"}`.
    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a command serializes")
    }
}

/// How many commands wait, and how many could not be sent at all.
#[derive(Debug, Default)]
pub struct ControlCounts {
    waiting: AtomicU64,
    unsent: AtomicU64,
}

impl ControlCounts {
    /// Commands queued and not yet handed to the broker connection.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }
    /// Commands with no broker connection to go to (no `[serve.broker]`).
    pub fn unsent(&self) -> u64 {
        self.unsent.load(Ordering::Relaxed)
    }
}

/// The sending side, kept in the app state.
#[derive(Debug, Clone)]
pub struct BrokerControl {
    tx: mpsc::UnboundedSender<BrokerCommand>,
    counts: Arc<ControlCounts>,
}

/// The receiving side, drained by the heartbeat listener.
#[derive(Debug)]
pub struct BrokerCommands {
    rx: mpsc::UnboundedReceiver<BrokerCommand>,
    counts: Arc<ControlCounts>,
}

impl BrokerControl {
    pub fn channel() -> (Self, BrokerCommands) {
        let (tx, rx) = mpsc::unbounded_channel();
        let counts = Arc::new(ControlCounts::default());
        (
            Self {
                tx,
                counts: counts.clone(),
            },
            BrokerCommands { rx, counts },
        )
    }

    /// Queues a command; never blocks a request and never drops one while a broker
    /// connection exists to take it.
    pub fn send(&self, command: BrokerCommand) {
        if self.tx.send(command).is_ok() {
            self.counts.waiting.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counts.unsent.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> &ControlCounts {
        &self.counts
    }
}

impl BrokerCommands {
    /// The next command, when one is queued.
    pub async fn recv(&mut self) -> Option<BrokerCommand> {
        self.rx.recv().await
    }

    /// A command was handed to the broker connection (it publishes it with QoS 1, again after a
    /// reconnect).
    pub fn handed_over(&self) {
        self.counts.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Most commands in one answer of the feed.
const FEED_PAGE: u32 = 10_000;

/// How far back every answer of the feed reads again: a PostgreSQL transaction may take an
/// audit id before another and commit after it, so the cursor only moves past rows this old
/// (the plugin skips commands it has already carried out, by `seq`).
const FEED_SETTLE: Duration = Duration::from_secs(10);

/// Where the plugin reads from; without `after`, the feed's head (nothing to carry out).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FeedQuery {
    /// The `next` of the previous answer.
    after: Option<i64>,
}

/// One answer of the control feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedPage {
    /// The cursor to read after next time.
    pub next: i64,
    /// The cursor asked for is not one this registry has written (a restored or replaced
    /// registry): the plugin drops every cached answer and confirms each device again.
    pub reset: bool,
    /// More commands wait: read again at once.
    pub more: bool,
    pub commands: Vec<FeedCommand>,
}

/// A command in the feed: its audit id, what to do, and to whom.
#[derive(Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FeedCommand {
    pub seq: i64,
    pub command: CommandKind,
    pub username: String,
}

/// The broker plugin's durable control channel: kicks and forgets read from the audit rows
/// that took rights away, in order, after a cursor.
#[utoipa::path(get, path = "/mqtt/control", tag = "mqtt-auth", security(()), params(FeedQuery),
    responses((status = 200, description = "Commands after the cursor", body = FeedPage),
        (status = 500, description = "Registry unavailable")))]
pub async fn feed(
    State(state): State<SharedState>,
    Query(query): Query<FeedQuery>,
) -> Result<Json<FeedPage>, StatusCode> {
    let changes = state
        .store
        .access_changes(query.after, FEED_SETTLE, FEED_PAGE)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "registry unreadable for the control feed");
            StatusCode::INTERNAL_SERVER_ERROR
        })?;
    Ok(Json(page(query.after, changes)))
}

/// The feed's answer for a cursor.
fn page(after: Option<i64>, changes: AccessChanges) -> FeedPage {
    if after.is_some_and(|a| a > changes.head || a < 0) {
        return FeedPage {
            next: changes.head,
            reset: true,
            more: false,
            commands: Vec::new(),
        };
    }
    let more = changes.entries.len() >= FEED_PAGE as usize;
    // A full page moves the cursor to its end, settled or not, so a long run of changes is
    // read through; otherwise only past settled rows.
    let next = match changes.entries.last() {
        Some(last) if more => last.id,
        _ => changes.settled,
    };
    FeedPage {
        next,
        reset: false,
        more,
        commands: changes.entries.iter().flat_map(commands_for).collect(),
    }
}

/// The commands one audit row calls for: a device revoked is kicked, and its owner and users
/// forget their cached grants on it; users removed from a device forget theirs.
fn commands_for(entry: &AuditEntry) -> Vec<FeedCommand> {
    let Some(subject) = &entry.subject else {
        return Vec::new();
    };
    let users = |side: &Option<serde_json::Value>| -> BTreeSet<String> {
        let Some(device) = side else {
            return BTreeSet::new();
        };
        let owner = device["owner"].as_str().map(str::to_owned);
        let listed = device["users_list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_owned));
        owner.into_iter().chain(listed).collect()
    };
    let status = |side: &Option<serde_json::Value>| {
        side.as_ref()
            .and_then(|d| d["status"].as_str())
            .and_then(|s| s.parse::<Status>().ok())
    };
    let command = |command, username: &str| FeedCommand {
        seq: entry.id,
        command,
        username: username.to_owned(),
    };
    match entry.action.as_str() {
        "device.status" if status(&entry.after) == Some(Status::Revoked) => {
            std::iter::once(command(CommandKind::Kick, subject))
                .chain(
                    users(&entry.after)
                        .iter()
                        .map(|u| command(CommandKind::Forget, u)),
                )
                .collect()
        }
        "device.users" => {
            let now = users(&entry.after);
            users(&entry.before)
                .difference(&now)
                .map(|u| command(CommandKind::Forget, u))
                .collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        id: i64,
        action: &str,
        subject: &str,
        before: serde_json::Value,
        after: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            id,
            at: "2026-12-07T10:00:00.000Z".into(),
            actor: "admin".into(),
            action: action.into(),
            subject: Some(subject.into()),
            before: Some(before),
            after: Some(after),
        }
    }

    fn wire(page: &FeedPage) -> serde_json::Value {
        serde_json::to_value(page).unwrap()
    }

    /// The feed's answers, written from what the plugin reads (mosquitto/src/feed.rs): a
    /// revocation kicks the device and makes its owner and users forget; users removed from a
    /// device forget; anything else is no command.
    #[test]
    fn the_feed_turns_access_changes_into_commands() {
        use serde_json::json;
        let sn = "PV-26A18-BC02R-X7KQA";
        let changes = AccessChanges {
            head: 20,
            settled: 12,
            entries: vec![
                row(
                    11,
                    "device.status",
                    sn,
                    json!({"status": "manufactured"}),
                    json!({"status": "flashed"}),
                ),
                row(
                    12,
                    "device.users",
                    sn,
                    json!({"owner": "ana", "users_list": ["bo", "cy"]}),
                    json!({"owner": "ana", "users_list": ["cy"]}),
                ),
                row(
                    14,
                    "device.status",
                    sn,
                    json!({"status": "active", "owner": "ana", "users_list": ["cy"]}),
                    json!({"status": "revoked", "owner": "ana", "users_list": ["cy"]}),
                ),
            ],
        };
        assert_eq!(
            wire(&page(Some(10), changes.clone())),
            json!({"next": 12, "reset": false, "more": false, "commands": [
                {"seq": 12, "command": "forget", "username": "bo"},
                {"seq": 14, "command": "kick", "username": sn},
                {"seq": 14, "command": "forget", "username": "ana"},
                {"seq": 14, "command": "forget", "username": "cy"},
            ]})
        );
        // A cursor the registry never wrote (a restored registry): start over at its head.
        assert_eq!(
            wire(&page(Some(21), changes.clone())),
            json!({"next": 20, "reset": true, "more": false, "commands": []})
        );
        // No cursor: the head, nothing to carry out.
        let head = AccessChanges {
            head: 20,
            settled: 20,
            entries: vec![],
        };
        assert_eq!(
            wire(&page(None, head)),
            json!({"next": 20, "reset": false, "more": false, "commands": []})
        );
    }

    #[test]
    fn payloads_are_what_the_plugin_reads() {
        assert_eq!(
            BrokerCommand::kick("PV-26A18-BC02R-X7KQA").payload(),
            br#"{"command":"kick","username":"PV-26A18-BC02R-X7KQA"}"#
        );
        assert_eq!(
            BrokerCommand::forget("uid-1").payload(),
            br#"{"command":"forget","username":"uid-1"}"#
        );
    }
}
