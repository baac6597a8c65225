//! Reading the registry's rows into the model, once for both engines: a row of either driver
//! answers by column index ([`Columns`]), and each record has one reader over it.

use vesper_core::model::{
    BatchSummary, DeployRun, DeployState, Device, MailStatus, OutboxMessage, Push, Status,
};

use super::RegistryError;

/// A result row of either engine, read by column index.
pub(crate) trait Columns {
    type Error;
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    fn maybe_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    fn maybe_i32(&self, i: usize) -> Result<Option<i32>, Self::Error>;
    /// The error for column `i` holding JSON that does not read as its type.
    fn bad_json(i: usize, e: serde_json::Error) -> Self::Error;
}

impl Columns for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn maybe_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn maybe_i32(&self, i: usize) -> rusqlite::Result<Option<i32>> {
        self.get(i)
    }
    fn bad_json(i: usize, e: serde_json::Error) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    }
}

impl Columns for tokio_postgres::Row {
    type Error = RegistryError;
    fn text(&self, i: usize) -> Result<String, RegistryError> {
        Ok(self.try_get(i)?)
    }
    fn maybe_text(&self, i: usize) -> Result<Option<String>, RegistryError> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, RegistryError> {
        Ok(self.try_get(i)?)
    }
    fn maybe_i32(&self, i: usize) -> Result<Option<i32>, RegistryError> {
        Ok(self.try_get(i)?)
    }
    fn bad_json(i: usize, e: serde_json::Error) -> RegistryError {
        RegistryError::Invalid(format!("column {i} is not the JSON it should be: {e}"))
    }
}

/// A device, from the device columns of either engine (`DEVICE_COLUMNS`).
pub(crate) fn device<R: Columns>(r: &R) -> Result<Device, R::Error> {
    let users = r.text(19)?;
    Ok(Device {
        serial_number: r.text(0)?,
        hw_type: r.text(1)?,
        hw_version: r.text(2)?,
        board: r.text(3)?,
        batch_id: r.text(4)?,
        status: r.text(5)?.parse().unwrap_or(Status::Revoked),
        subscription_plan: r.text(6)?,
        available_outputs: r.int(7)?,
        created_at: r.text(8)?,
        assigned_email: r.maybe_text(9)?,
        assigned_name: r.maybe_text(10)?,
        chip: r.maybe_text(11)?,
        mac: r.maybe_text(12)?,
        firmware_version: r.maybe_text(13)?,
        flashed_at: r.maybe_text(14)?,
        provisioned_at: r.maybe_text(15)?,
        last_seen: r.maybe_text(16)?,
        station: r.maybe_text(17)?,
        owner: r.maybe_text(18)?,
        users_list: serde_json::from_str(&users).unwrap_or_default(),
        claimed_by: r.maybe_text(20)?,
        claimed_until: r.maybe_text(21)?,
        history: None,
        invite: None,
    })
}

/// A batch's summary: its columns, then its status counts as a JSON object.
pub(crate) fn summary<R: Columns>(r: &R) -> Result<BatchSummary, R::Error> {
    Ok(BatchSummary {
        batch_id: r.text(0)?,
        board: r.text(1)?,
        hw_type: r.text(2)?,
        hw_version: r.text(3)?,
        quantity: r.int(4)?,
        subscription_plan: r.text(5)?,
        available_outputs: r.int(6)?,
        created_at: r.text(7)?,
        created_by: r.text(8)?,
        status_counts: serde_json::from_str(&r.text(9)?).unwrap_or_default(),
    })
}

/// An outbox row (the outbox's `COLUMNS`).
pub(crate) fn message<R: Columns>(r: &R) -> Result<OutboxMessage, R::Error> {
    let content = serde_json::from_str(&r.text(3)?).map_err(|e| R::bad_json(3, e))?;
    Ok(OutboxMessage {
        id: r.int(0)?,
        created_at: r.text(1)?,
        recipient: r.text(2)?,
        content,
        status: r.text(4)?.parse().unwrap_or(MailStatus::Dead),
        attempts: r.int(5)?,
        next_attempt_at: r.maybe_text(6)?,
        sent_at: r.maybe_text(7)?,
        last_error: r.maybe_text(8)?,
        message_key: r.text(9)?,
        provider_answer: r.maybe_text(10)?,
    })
}

/// A deploy run (the deploy runs' `COLUMNS`).
pub(crate) fn run<R: Columns>(r: &R) -> Result<DeployRun, R::Error> {
    Ok(DeployRun {
        id: r.int(0)?,
        push: Push {
            delivery: r.text(1)?,
            git_ref: r.text(2)?,
            commit: r.text(3)?,
            repository: r.maybe_text(4)?,
            pusher: r.maybe_text(5)?,
            body_sha256: r.maybe_text(13)?.unwrap_or_default(),
        },
        state: r.text(6)?.parse().unwrap_or(DeployState::Failed),
        received_at: r.text(7)?,
        started_at: r.maybe_text(8)?,
        finished_at: r.maybe_text(9)?,
        exit_code: r.maybe_i32(10)?,
        detail: r.maybe_text(11)?,
        log: r.maybe_text(12)?,
    })
}
