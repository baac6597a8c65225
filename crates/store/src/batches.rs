//! Batches: N devices of one board created together, in one transaction.

use rusqlite::{OptionalExtension as _, params};
use serde_json::json;

use vesper_core::model::{Batch, BatchSummary, MAX_QUANTITY, NewBatch};
use vesper_core::serial;

use super::devices::{DEVICE_COLUMNS, device_from_row};
use super::{Registry, RegistryError, Result, audit, now};

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

const SUMMARY_SQL: &str = "SELECT b.name, b.board, b.hw_type, b.hw_version, b.quantity, b.subscription_plan,
    b.available_outputs, b.created_at, b.created_by,
    (SELECT json_group_object(status, n) FROM (SELECT status, count(*) AS n FROM devices d WHERE d.batch_id = b.id GROUP BY status))
    FROM batches b";

fn summary_from_row(r: &rusqlite::Row) -> rusqlite::Result<BatchSummary> {
    super::rows::summary(r)
}

/// Refuses a batch the registry would not hold (either engine).
pub(crate) fn check_new_batch(new: &NewBatch) -> Result<()> {
    if new.quantity == 0 || new.quantity > MAX_QUANTITY {
        return Err(RegistryError::Invalid(format!(
            "quantity must be 1..={MAX_QUANTITY}, not {}",
            new.quantity
        )));
    }
    if new.subscription_plan.is_empty()
        || new.subscription_plan.len() > 64
        || new.subscription_plan.chars().any(char::is_control)
    {
        return Err(RegistryError::Invalid(
            "subscription_plan must be 1..64 characters".into(),
        ));
    }
    if !(0..=1024).contains(&new.available_outputs) {
        return Err(RegistryError::Invalid(
            "available_outputs must be 0..=1024".into(),
        ));
    }
    Ok(())
}

impl Registry {
    /// Creates a batch and all its devices in one transaction. Serial numbers are unique by the
    /// primary key; a collision draws a new number, it never fails the batch.
    pub fn create_batch(&self, new: &NewBatch, actor: &str) -> Result<Batch> {
        check_new_batch(new)?;
        let board = new.board;
        let name = self.write(|conn| {
            let tx = conn.transaction()?;
            let created_at = now();
            tx.execute(
                "INSERT INTO batches (name, board, hw_type, hw_version, quantity, subscription_plan, available_outputs, created_at, created_by)
                 VALUES ('pending', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![board.name, board.hw_type.as_str(), board.hw_version.as_str(), new.quantity, new.subscription_plan, new.available_outputs, created_at, actor],
            )?;
            let id = tx.last_insert_rowid();
            let name = format!("B-{id:04}");
            tx.execute("UPDATE batches SET name = ?2 WHERE id = ?1", params![id, name])?;
            let today = chrono::Utc::now().date_naive();
            let mut rng = rand::rng();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO devices (serial_number, hw_type, hw_version, board, batch_id, status, subscription_plan, available_outputs, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'manufactured', ?6, ?7, ?8)",
                )?;
                for _ in 0..new.quantity {
                    loop {
                        let sn = serial::generate(board.hw_type, board.hw_version, today, &mut rng)
                            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
                        match insert.execute(params![sn.as_str(), board.hw_type.as_str(), board.hw_version.as_str(), board.name, id, new.subscription_plan, new.available_outputs, created_at]) {
                            Ok(_) => break,
                            Err(e) if is_unique_violation(&e) => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            let after = json!({
                "board": board.name, "quantity": new.quantity,
                "subscription_plan": new.subscription_plan, "available_outputs": new.available_outputs,
            });
            audit::append(&tx, actor, "batch.create", Some(&name), None, Some(&after))?;
            tx.commit()?;
            Ok(name)
        })?;
        self.batch(&name)
    }

    /// A batch and its devices.
    pub fn batch(&self, name: &str) -> Result<Batch> {
        self.read(|c| {
            let summary = c
                .prepare_cached(&format!("{SUMMARY_SQL} WHERE b.name = ?1"))?
                .query_row([name], summary_from_row)
                .optional()?
                .ok_or_else(|| RegistryError::NoBatch(name.to_owned()))?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices d JOIN batches b ON b.id = d.batch_id WHERE b.name = ?1 ORDER BY d.rowid"
            ))?;
            let devices = stmt.query_map([name], device_from_row)?.collect::<rusqlite::Result<_>>()?;
            Ok(Batch { summary, devices })
        })
    }

    /// Batches, newest first.
    pub fn batches(&self, limit: u32, offset: u32) -> Result<Vec<BatchSummary>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "{SUMMARY_SQL} ORDER BY b.id DESC LIMIT ?1 OFFSET ?2"
            ))?;
            let rows = stmt.query_map(params![limit.clamp(1, 1000), offset], summary_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
