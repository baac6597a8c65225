//! The outbox's messages: what a queued e-mail is about, where it stands, and the address rule
//! every recipient and sender obeys. The backend's mail worker sends them; the registry keeps them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a queued message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MailStatus {
    /// Waiting for its first or next attempt.
    Pending,
    /// Accepted by the provider.
    Sent,
    /// Refused for good (or given up on); `vesper mail retry ID` revives it.
    Dead,
}

impl MailStatus {
    pub const ALL: [MailStatus; 3] = [MailStatus::Pending, MailStatus::Sent, MailStatus::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            MailStatus::Pending => "pending",
            MailStatus::Sent => "sent",
            MailStatus::Dead => "dead",
        }
    }
}

impl std::fmt::Display for MailStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MailStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MailStatus::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a mail status (pending, sent or dead)"))
    }
}

/// The conditions that send an alert to `[mail.alerts] to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A batch has boards whose flashing failed three times.
    FailedBoards,
    /// The heartbeat listener has been away from the broker for minutes.
    BrokerDisconnected,
    /// The data folder's disk is nearly full.
    DiskFull,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::FailedBoards => "failed_boards",
            AlertKind::BrokerDisconnected => "broker_disconnected",
            AlertKind::DiskFull => "disk_full",
        }
    }
}

/// What a message says, by template: the values the template is rendered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum MailContent {
    /// A device was assigned to a customer: open the app and enter its serial number.
    DeviceInvite {
        serial_number: String,
        name: Option<String>,
    },
    /// A customer's assigned device is set up and active.
    Welcome {
        serial_number: String,
        name: Option<String>,
    },
    /// Something on the backend needs a person.
    Alert {
        alert: AlertKind,
        /// One line saying what happened.
        summary: String,
        /// The particulars, one per line.
        details: Vec<String>,
    },
    /// `vesper mail test`: proof that the provider takes messages.
    Test {
        /// The provider it went through, in words.
        provider: String,
    },
}

impl MailContent {
    /// The template's name (`assets/mail/{name}.*`).
    pub fn template(&self) -> &'static str {
        match self {
            MailContent::DeviceInvite { .. } => "device_invite",
            MailContent::Welcome { .. } => "welcome",
            MailContent::Alert { .. } => "alert",
            MailContent::Test { .. } => "test",
        }
    }

    /// The serial number a message is about, when it is about one device.
    pub fn serial_number(&self) -> Option<&str> {
        match self {
            MailContent::DeviceInvite { serial_number, .. }
            | MailContent::Welcome { serial_number, .. } => Some(serial_number),
            _ => None,
        }
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutboxMessage {
    pub id: i64,
    pub created_at: String,
    pub recipient: String,
    pub content: MailContent,
    pub status: MailStatus,
    pub attempts: i64,
    /// When the next attempt is due (pending messages).
    pub next_attempt_at: Option<String>,
    pub sent_at: Option<String>,
    /// Why the last attempt failed, or why the message is dead.
    pub last_error: Option<String>,
    /// Stable for the row's life: the `Message-ID` (SMTP) and `Idempotency-Key` (Resend) of every
    /// attempt, so a resend after a crash is recognisable as the same message.
    pub message_key: String,
    /// What the provider answered when it accepted the message (a queue id, a Resend id).
    pub provider_answer: Option<String>,
}

impl OutboxMessage {
    /// A message that is sent at once instead of queued (`vesper mail test`), with a fresh key.
    pub fn unsaved(recipient: &str, content: MailContent) -> OutboxMessage {
        OutboxMessage {
            id: 0,
            created_at: String::new(),
            recipient: recipient.to_owned(),
            content,
            status: MailStatus::Pending,
            attempts: 0,
            next_attempt_at: None,
            sent_at: None,
            last_error: None,
            message_key: format!("{:032x}", rand::random::<u128>()),
            provider_answer: None,
        }
    }
}

/// The invitation e-mail of a device, as the station's device detail shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InviteState {
    pub id: i64,
    pub status: MailStatus,
    pub attempts: i64,
    pub sent_at: Option<String>,
    pub last_error: Option<String>,
}

/// Whether `address` is a plain e-mail address (`local@domain.tld`, no display name), bounded to
/// 254 bytes as SMTP bounds it. Recipients, senders and alert lists all obey it.
pub fn is_email_address(address: &str) -> bool {
    address.len() <= 254
        && address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
}

/// Splits `Name <local@domain>` (or a bare address) into its display name and address; `None`
/// when the address is not one.
pub fn parse_mailbox(text: &str) -> Option<(Option<&str>, &str)> {
    let text = text.trim();
    let (name, address) = match text.strip_suffix('>').and_then(|t| t.rsplit_once('<')) {
        Some((name, address)) => {
            let name = name.trim().trim_matches('"').trim();
            ((!name.is_empty()).then_some(name), address)
        }
        None => (None, text),
    };
    let clean_name = name.is_none_or(|n| !n.chars().any(|c| c.is_control() || "<>\"".contains(c)));
    (clean_name && is_email_address(address)).then_some((name, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for good in ["a@b.co", "first.last+tag@mail.example.com"] {
            assert!(is_email_address(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "@b.co",
            "a@b",
            "a@.b.co",
            "a@b.co.",
            "a b@c.de",
            "a@b@c.de",
            "<a@b.co>",
            "a@b.co\r\nBcc: x@y.z",
            "a,b@c.de",
        ] {
            assert!(!is_email_address(bad), "{bad:?}");
        }
        assert!(!is_email_address(&format!("{}@b.co", "a".repeat(260))));
    }

    #[test]
    fn mailboxes() {
        assert_eq!(parse_mailbox("a@b.co"), Some((None, "a@b.co")));
        assert_eq!(
            parse_mailbox("Vesper Devices <noreply@vesper.example>"),
            Some((Some("Vesper Devices"), "noreply@vesper.example"))
        );
        assert_eq!(
            parse_mailbox("\"Vesper\" <n@v.io>"),
            Some((Some("Vesper"), "n@v.io"))
        );
        assert_eq!(parse_mailbox("Vesper <not an address>"), None);
        assert_eq!(parse_mailbox("Ve<sper <n@v.io>"), None);
    }

    #[test]
    fn content_round_trips_with_its_template_tag() {
        let invite = MailContent::DeviceInvite {
            serial_number: "PV-26A18-BC02R-X7KQA".into(),
            name: Some("Ada".into()),
        };
        let text = serde_json::to_string(&invite).unwrap();
        assert_eq!(
            text,
            r#"{"template":"device_invite","serial_number":"PV-26A18-BC02R-X7KQA","name":"Ada"}"#
        );
        assert_eq!(serde_json::from_str::<MailContent>(&text).unwrap(), invite);
        assert_eq!("dead".parse::<MailStatus>(), Ok(MailStatus::Dead));
        assert!("gone".parse::<MailStatus>().is_err());
    }
}

/// What one attempt at a message came to, as the worker records it (a round's outcomes are
/// recorded together, in one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOutcome {
    /// The provider accepted it: `sent`, with the provider's answer, and an audit row.
    Sent { id: i64, answer: String },
    /// A passing failure: tried again after `retry_in` (no audit row).
    Failed {
        id: i64,
        error: String,
        retry_in: std::time::Duration,
    },
    /// A permanent failure: `dead` with the reason, and an audit row.
    Dead { id: i64, reason: String },
}

impl MailOutcome {
    /// The message it is about.
    pub fn id(&self) -> i64 {
        match self {
            MailOutcome::Sent { id, .. }
            | MailOutcome::Failed { id, .. }
            | MailOutcome::Dead { id, .. } => *id,
        }
    }
}
