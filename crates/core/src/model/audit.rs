//! Audit rows: who did what to which record, with the state before and after.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// One audit row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Which audit rows to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub subject: Option<String>,
    pub action: Option<String>,
    /// Rows with an id below this one (paging backwards from the newest).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// The audit actions that can take rights away from a broker login: a device's status (revoked)
/// and its owner and users. The broker plugin's control feed is read from these rows.
pub const ACCESS_ACTIONS: [&str; 2] = ["device.status", "device.users"];

/// Audit rows of [`ACCESS_ACTIONS`] after a cursor, oldest first, the newest audit id, and how
/// far a reader may safely move its cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessChanges {
    /// The newest audit row's id (0 when there is none).
    pub head: i64,
    /// The newest id written before the settle time asked for (at least the cursor): on
    /// PostgreSQL a transaction may take an id before another and commit after it, so a reader
    /// that moved past ids still being written could miss one; rows older than a few seconds
    /// are settled.
    pub settled: i64,
    pub entries: Vec<AuditEntry>,
}
