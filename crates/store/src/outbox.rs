//! The outbox: e-mails queued in the same transaction as the change that asks for them, then
//! sent by the backend's mail worker. A row stays `pending` until the provider has accepted it,
//! so a crash anywhere in between sends it again (with the same `message_key`), never loses it.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

use vesper_core::model::{
    AlertKind, InviteState, MailContent, MailOutcome, MailStatus, OutboxMessage,
};

use super::{Registry, RegistryError, Result, audit, now, stamp};

/// The actor of the worker's audit rows.
pub const MAIL_ACTOR: &str = "mail";

/// How long a message handed to a mail worker stays its own: another worker (another
/// instance) takes it only after that, so a worker that died mid-send is covered.
pub const MAIL_LEASE: std::time::Duration = std::time::Duration::from_secs(120);

const COLUMNS: &str =
    "id, created_at, recipient, payload, status, attempts, next_attempt_at, sent_at,
    last_error, message_key, provider_answer";

fn message_from_row(r: &Row) -> rusqlite::Result<OutboxMessage> {
    super::rows::message(r)
}

/// Queues a message inside the caller's transaction; returns its id.
pub(super) fn enqueue(conn: &Connection, recipient: &str, content: &MailContent) -> Result<i64> {
    let payload =
        serde_json::to_string(content).map_err(|e| RegistryError::Invalid(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO outbox (created_at, kind, recipient, payload, subject, message_key)
         VALUES (?1, ?2, ?3, ?4, ?5, lower(hex(randomblob(16))))",
    )?
    .execute(params![
        now(),
        content.template(),
        recipient,
        payload,
        content.serial_number()
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The latest invitation of a device.
pub(super) fn invite_of(conn: &Connection, sn: &str) -> Result<Option<InviteState>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, status, attempts, sent_at, last_error FROM outbox
             WHERE subject = ?1 AND kind = 'device_invite' ORDER BY id DESC LIMIT 1",
        )?
        .query_row([sn], |r| {
            let status: String = r.get(1)?;
            Ok(InviteState {
                id: r.get(0)?,
                status: status.parse().unwrap_or(MailStatus::Dead),
                attempts: r.get(2)?,
                sent_at: r.get(3)?,
                last_error: r.get(4)?,
            })
        })
        .optional()?)
}

fn load(conn: &Connection, id: i64) -> Result<OutboxMessage> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))?
        .query_row([id], message_from_row)
        .optional()?
        .ok_or_else(|| RegistryError::Invalid(format!("no message {id} in the outbox")))
}

/// What an audit row says about a message: never its text, only where it went and why.
pub(crate) fn audit_state(m: &OutboxMessage) -> serde_json::Value {
    json!({
        "id": m.id,
        "template": m.content.template(),
        "status": m.status,
        "attempts": m.attempts,
        "message_key": m.message_key,
        "provider_answer": m.provider_answer,
        "last_error": m.last_error,
    })
}

/// The audit subject of a message: its device when it is about one, else `mail:ID`.
pub(crate) fn subject(m: &OutboxMessage) -> String {
    m.content
        .serial_number()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("mail:{}", m.id))
}

impl Registry {
    /// Queues a message on its own (alerts), with an audit row `mail.queued`.
    pub fn enqueue_mail(
        &self,
        recipient: &str,
        content: &MailContent,
        actor: &str,
    ) -> Result<OutboxMessage> {
        if !vesper_core::model::is_email_address(recipient) {
            return Err(RegistryError::Invalid(format!(
                "`{recipient}` is not an e-mail address"
            )));
        }
        self.write(|conn| {
            let tx = conn.transaction()?;
            let id = enqueue(&tx, recipient, content)?;
            let queued = load(&tx, id)?;
            audit::append(
                &tx,
                actor,
                "mail.queued",
                Some(&subject(&queued)),
                None,
                Some(&audit_state(&queued)),
            )?;
            tx.commit()?;
            Ok(queued)
        })
    }

    /// Pending messages whose attempt is due, oldest first.
    pub fn mail_due(&self, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = 'pending'
                   AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)
                 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now(), limit as i64], message_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Due messages handed to this worker: each is leased for [`MAIL_LEASE`] (its next attempt
    /// moved past the lease), so a second worker does not send it too. Oldest first.
    pub fn mail_lease(&self, limit: usize) -> Result<Vec<OutboxMessage>> {
        let until =
            stamp(chrono::Utc::now() + chrono::Duration::from_std(MAIL_LEASE).unwrap_or_default());
        self.write(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "UPDATE outbox SET leased_until = ?3 WHERE id IN (
                    SELECT id FROM outbox WHERE status = 'pending'
                      AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)
                    AND (leased_until IS NULL OR leased_until <= ?1)
                    ORDER BY id LIMIT ?2)
                 RETURNING {COLUMNS}"
            ))?;
            let rows = stmt.query_map(params![now(), limit as i64, until], message_from_row)?;
            let mut leased = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            leased.sort_by_key(|m| m.id);
            Ok(leased)
        })
    }

    /// Ends every lease (the backend starting on SQLite is the only one: what a previous run
    /// had in hand is due again now, not when its lease would lapse).
    pub fn release_mail_leases(&self) -> Result<usize> {
        self.write(|conn| {
            Ok(conn.execute(
                "UPDATE outbox SET leased_until = NULL WHERE leased_until IS NOT NULL",
                [],
            )?)
        })
    }

    /// When the earliest pending message is due (`None`: nothing is pending).
    pub fn mail_next_due(&self) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT min(COALESCE(next_attempt_at, created_at)) FROM outbox WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )?)
        })
    }

    /// The outbox, newest first, optionally one status only.
    pub fn outbox(&self, status: Option<MailStatus>, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(
                params![status.map(MailStatus::as_str), limit.clamp(1, 10_000) as i64],
                message_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// One message of the outbox.
    pub fn mail(&self, id: i64) -> Result<OutboxMessage> {
        self.read(|c| load(c, id))
    }

    /// Records what attempts came to, all in one transaction (one disk sync for a round of
    /// messages): `sent` and `dead` with an audit row each, a passing failure with its next
    /// attempt. Returns the messages as they are now, in the order given.
    pub fn mail_record(&self, outcomes: &[MailOutcome]) -> Result<Vec<OutboxMessage>> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            let mut after = Vec::with_capacity(outcomes.len());
            for outcome in outcomes {
                after.push(record_one(&tx, outcome)?);
            }
            tx.commit()?;
            Ok(after)
        })
    }

    /// Revives a dead message (`vesper mail retry ID`): pending again, due now.
    pub fn mail_retry(&self, id: i64, actor: &str) -> Result<OutboxMessage> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            let before = load(&tx, id)?;
            if before.status != MailStatus::Dead {
                return Err(RegistryError::Invalid(format!(
                    "message {id} is {}; only a dead message can be retried",
                    before.status
                )));
            }
            tx.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = NULL, leased_until = NULL WHERE id = ?1",
                [id],
            )?;
            let after = load(&tx, id)?;
            audit::append(&tx, actor, "mail.retry", Some(&subject(&after)), Some(&audit_state(&before)), Some(&audit_state(&after)))?;
            tx.commit()?;
            Ok(after)
        })
    }

    /// When the last alert of a kind was queued (alerts go out at most once an hour per kind).
    pub fn last_alert(&self, kind: AlertKind) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT max(created_at) FROM outbox WHERE kind = 'alert' AND json_extract(payload, '$.alert') = ?1",
                [kind.as_str()],
                |r| r.get(0),
            )?)
        })
    }
}

/// One outcome inside the caller's transaction.
fn record_one(tx: &rusqlite::Transaction, outcome: &MailOutcome) -> Result<OutboxMessage> {
    let id = outcome.id();
    let before = load(tx, id)?;
    let action = match outcome {
        MailOutcome::Sent { answer, .. } => {
            tx.prepare_cached(
                "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1,
                   provider_answer = ?3, next_attempt_at = NULL, leased_until = NULL, last_error = NULL WHERE id = ?1",
            )?
            .execute(params![id, now(), truncate(answer)])?;
            "mail.sent"
        }
        MailOutcome::Dead { reason, .. } => {
            tx.prepare_cached(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?2,
                   next_attempt_at = NULL, leased_until = NULL WHERE id = ?1",
            )?
            .execute(params![id, truncate(reason)])?;
            "mail.dead"
        }
        MailOutcome::Failed {
            error, retry_in, ..
        } => {
            let next_attempt_at = retry_stamp(*retry_in);
            tx.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3, leased_until = NULL
                 WHERE id = ?1 AND status = 'pending'",
            )?
            .execute(params![id, truncate(error), next_attempt_at])?;
            return load(tx, id);
        }
    };
    let after = load(tx, id)?;
    audit::append(
        tx,
        MAIL_ACTOR,
        action,
        Some(&subject(&after)),
        Some(&audit_state(&before)),
        Some(&audit_state(&after)),
    )?;
    Ok(after)
}

/// When a failed message is tried again, `retry_in` from now (an hour when the delay does not
/// fit chrono's range), as both engines store it.
pub(crate) fn retry_stamp(retry_in: std::time::Duration) -> String {
    stamp(
        chrono::Utc::now()
            + chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::hours(1)),
    )
}

/// Providers' answers and errors are kept to 1 KiB.
pub(crate) fn truncate(text: &str) -> &str {
    let mut end = text.len().min(1024);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_queued_before_the_mail_worker_existed_is_sent_with_a_key_and_its_template() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        {
            // The schema as it was before the worker: the invite as the old assign wrote it.
            let mut conn = rusqlite::Connection::open(data.join(crate::DB_FILE)).unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &crate::schema::MIGRATIONS[..2] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 2).unwrap();
            tx.execute(
                "INSERT INTO outbox (created_at, kind, recipient, payload) VALUES ('2026-01-01T00:00:00.000Z', 'device_invite', 'a@example.com', ?1)",
                [r#"{"serial_number":"PV-26A18-BC02R-X7KQA","name":null}"#],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let r = Registry::open(&data).unwrap();
        let due = r.mail_due(10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].content,
            MailContent::DeviceInvite {
                serial_number: "PV-26A18-BC02R-X7KQA".into(),
                name: None
            }
        );
        assert_eq!(due[0].message_key.len(), 32);
    }
}
