//! Bearer tokens for the admin API. Only a SHA-256 hash is stored; the token itself is shown once.

use rand::RngCore as _;
use rusqlite::{OptionalExtension as _, params};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use vesper_core::model::{Role, TokenInfo, TokenPrincipal};

use super::{Registry, RegistryError, Result, audit, now};

/// Prefix of every token, so that a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "vst_";

pub(crate) fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "token name `{name}` must be 1..64 letters, digits or - _ . @ :"
        )))
    }
}

/// A fresh token: the prefix and 32 random bytes in hex.
pub(crate) fn new_token() -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_PREFIX}{hex}")
}

impl Registry {
    /// Creates a token and returns it; only its hash is kept.
    pub fn create_token(&self, name: &str, role: Role, actor: &str) -> Result<String> {
        check_name(name)?;
        let token = new_token();
        self.write(|conn| {
            let tx = conn.transaction()?;
            let exists: bool =
                tx.query_row("SELECT count(*) FROM tokens WHERE name = ?1", [name], |r| {
                    r.get(0)
                })?;
            if exists {
                return Err(RegistryError::TokenExists(name.to_owned()));
            }
            tx.execute(
                "INSERT INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, role.as_str(), hash(&token), now()],
            )?;
            audit::append(
                &tx,
                actor,
                "token.create",
                Some(name),
                None,
                Some(&json!({ "name": name, "role": role })),
            )?;
            tx.commit()?;
            Ok(())
        })?;
        Ok(token)
    }

    /// The principal of a valid, unrevoked token. Looked up by hash: the token is never compared.
    pub fn authenticate_token(&self, token: &str) -> Result<Option<TokenPrincipal>> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        let digest = hash(token);
        self.read(|c| {
            let row = c
                .prepare_cached(
                    "SELECT name, role FROM tokens WHERE hash = ?1 AND revoked_at IS NULL",
                )?
                .query_row([digest], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?;
            Ok(row.and_then(|(name, role)| {
                role.parse().ok().map(|role| TokenPrincipal { name, role })
            }))
        })
    }

    /// Whether the token named `name` exists and is not revoked (long-lived answers such as
    /// event streams check this while they run).
    pub fn token_active(&self, name: &str) -> Result<bool> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM tokens WHERE name = ?1 AND revoked_at IS NULL")?
                    .query_row([name], |_| Ok(()))
                    .optional()?
                    .is_some(),
            )
        })
    }

    /// Every token, newest first.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT name, role, created_at, revoked_at FROM tokens ORDER BY id DESC",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(TokenInfo {
                    name: r.get(0)?,
                    role: r.get::<_, String>(1)?.parse().unwrap_or(Role::Viewer),
                    created_at: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Revokes a token; it stops working at once.
    pub fn revoke_token(&self, name: &str, actor: &str) -> Result<()> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            let changed = tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, now()],
            )?;
            if changed == 0 {
                return Err(RegistryError::NoToken(name.to_owned()));
            }
            audit::append(&tx, actor, "token.revoke", Some(name), None, None)?;
            tx.commit()?;
            Ok(())
        })
    }
}
