//! Revocation at once: when a login loses its rights (a device revoked, a user removed from a
//! device), the backend tells the broker plugin on `$CONTROL/vesper/v1`, as its service account,
//! to drop its cached answers for that username and, for a revoked device, disconnect it.
//! Without this the broker would keep a cached grant until its cache time runs out.
//!
//! The heartbeat listener owns the MQTT connection and publishes the commands queued here. The
//! queue never drops a command: it waits for the broker (`vesper_broker_commands_waiting` in
//! `/metrics`, and `vesper doctor`, say how many wait). Without `[serve.broker]` there is no
//! connection to send them on, and the plugin's own re-check of a device's standing (a few
//! seconds) is what cuts a revoked device off; commands are then counted as unsent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::mpsc;

/// What the plugin is told to do about one username.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerCommand {
    pub command: CommandKind,
    pub username: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
