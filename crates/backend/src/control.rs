//! Revocation at once: when a login loses its rights (a device revoked, a user removed from a
//! device), the backend tells the broker plugin on `$CONTROL/vesper/v1`, as its service account,
//! to drop its cached answers for that username and, for a revoked device, disconnect it.
//! Without this the broker would keep a cached grant until its cache time runs out.
//!
//! The heartbeat listener owns the MQTT connection and publishes the commands queued here.

use serde::Serialize;
use tokio::sync::mpsc;

/// Commands waiting for the heartbeat listener; beyond that new ones are dropped with a warning
/// (the broker's cache time still bounds the delay).
const QUEUE: usize = 1024;

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

/// The sending side, kept in the app state.
#[derive(Debug, Clone)]
pub struct BrokerControl(mpsc::Sender<BrokerCommand>);

/// The receiving side, drained by the heartbeat listener.
pub type BrokerCommands = mpsc::Receiver<BrokerCommand>;

impl BrokerControl {
    pub fn channel() -> (Self, BrokerCommands) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self(tx), rx)
    }

    /// Queues a command; never blocks a request.
    pub fn send(&self, command: BrokerCommand) {
        match self.0.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(c)) => tracing::warn!(
                username = %c.username,
                "broker control queue full; this login loses its rights after the broker's cache time"
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
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
