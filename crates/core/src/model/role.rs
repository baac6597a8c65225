//! Who may do what with the API: roles and the tokens that carry them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a token may do. Ordered: an admin may do everything a technician may, and so on. A
/// publisher is apart, below every reader: it may only publish firmware releases (a firmware
/// team's CI holds it), which admins may do too.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Publishes firmware releases, and nothing else.
    Publisher,
    /// Reads the registry.
    Viewer,
    /// Creates batches, flashes, provisions and assigns devices.
    Technician,
    /// Everything, including revocation, device users and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Viewer => "viewer",
            Role::Technician => "technician",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "technician" => Ok(Role::Technician),
            "admin" => Ok(Role::Admin),
            "publisher" => Ok(Role::Publisher),
            other => Err(format!(
                "role `{other}` is not admin, technician, viewer or publisher"
            )),
        }
    }
}

/// Who a valid token belongs to: its name is the audit actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPrincipal {
    pub name: String,
    pub role: Role,
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub revoked_at: Option<String>,
}
