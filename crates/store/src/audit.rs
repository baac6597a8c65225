//! The audit log: append-only (triggers refuse UPDATE and DELETE), one row per manufacturing
//! action, with actor, time, and the state before and after.

use rusqlite::{Connection, params};
use serde_json::Value;

use vesper_core::model::{ACCESS_ACTIONS, AccessChanges, AuditEntry, AuditQuery};

use super::{Registry, Result, now};

/// Appends a row inside the caller's transaction.
pub(super) fn append(
    conn: &Connection,
    actor: &str,
    action: &str,
    subject: Option<&str>,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, subject, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now(),
        actor,
        action,
        subject,
        before.map(Value::to_string),
        after.map(Value::to_string)
    ])?;
    Ok(())
}

fn parse_json(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        subject: r.get(4)?,
        before: parse_json(r.get(5)?),
        after: parse_json(r.get(6)?),
    })
}

pub(super) fn query(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, actor, action, subject, before, after FROM audit
         WHERE (?1 IS NULL OR subject = ?1) AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![q.subject, q.action, q.before_id, q.limit.clamp(1, 1000)],
        entry,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Rows of [`ACCESS_ACTIONS`] after `after` (none when `None`: the caller only learns the head);
/// rows written before `settle` ago are settled.
pub(super) fn access_changes(
    conn: &Connection,
    after: Option<i64>,
    settle: std::time::Duration,
    limit: u32,
) -> Result<AccessChanges> {
    let head: i64 = conn
        .prepare_cached("SELECT COALESCE(max(id), 0) FROM audit")?
        .query_row([], |r| r.get(0))?;
    let Some(after) = after else {
        return Ok(AccessChanges {
            head,
            settled: head,
            entries: Vec::new(),
        });
    };
    let settled: i64 = conn
        .prepare_cached("SELECT COALESCE(max(id), ?1) FROM audit WHERE id > ?1 AND at <= ?2")?
        .query_row(params![after, settled_before(settle)], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, actor, action, subject, before, after FROM audit
         WHERE id > ?1 AND action IN (?2, ?3) ORDER BY id LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![after, ACCESS_ACTIONS[0], ACCESS_ACTIONS[1], limit.max(1)],
        entry,
    )?;
    let entries = rows.collect::<rusqlite::Result<_>>()?;
    Ok(AccessChanges {
        head,
        settled,
        entries,
    })
}

/// The registry time `settle` ago.
pub(crate) fn settled_before(settle: std::time::Duration) -> String {
    let settle = chrono::Duration::from_std(settle).unwrap_or(chrono::Duration::zero());
    super::stamp(chrono::Utc::now() - settle)
}

impl Registry {
    /// Audit rows, newest first.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        self.read(|c| query(c, q))
    }

    /// Changes that take rights away from broker logins, after an audit id (see
    /// [`AccessChanges`]).
    pub fn access_changes(
        &self,
        after: Option<i64>,
        settle: std::time::Duration,
        limit: u32,
    ) -> Result<AccessChanges> {
        self.read(|c| access_changes(c, after, settle, limit))
    }

    /// Records an action that changes nothing in the registry itself (e.g. a firmware publish).
    pub fn record(
        &self,
        actor: &str,
        action: &str,
        subject: Option<&str>,
        after: &Value,
    ) -> Result<()> {
        self.write(|c| append(c, actor, action, subject, None, Some(after)))
    }
}
