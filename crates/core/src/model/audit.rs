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
