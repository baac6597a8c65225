//! Claims: a station slot takes a device before flashing it, so one serial number is never
//! written to two boards. The registry decides, in one transaction; a claim is a lease that
//! lapses when a station dies mid-board, and ends when the flash is reported.

use std::time::Duration;

use rusqlite::{OptionalExtension as _, Transaction, params};

use super::devices::{audit_change, load};
use super::{Device, Registry, RegistryError, Result, now};

/// Longest claim a station may ask for.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

pub(crate) fn lease_end(lease: Duration) -> String {
    let lease = chrono::Duration::from_std(lease.min(MAX_LEASE)).unwrap_or_default();
    (chrono::Utc::now() + lease)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

pub(crate) fn check_claimant(claimant: &str) -> Result<()> {
    if claimant.is_empty() || claimant.len() > 128 || claimant.chars().any(char::is_control) {
        return Err(RegistryError::Invalid(
            "station must be 1..128 characters without control characters".into(),
        ));
    }
    Ok(())
}

/// Writes the claim of `sn` and its audit row.
fn take(
    tx: &Transaction,
    sn: &str,
    claimant: &str,
    lease: Duration,
    actor: &str,
) -> Result<Device> {
    let before = load(tx, sn)?;
    tx.execute(
        "UPDATE devices SET claimed_by = ?2, claimed_until = ?3 WHERE serial_number = ?1",
        params![sn, claimant, lease_end(lease)],
    )?;
    audit_change(tx, actor, "device.claimed", &before)
}

impl Registry {
    /// Claims the batch's next device that is still to be flashed and not claimed by anyone.
    pub fn claim_next(
        &self,
        batch: &str,
        claimant: &str,
        lease: Duration,
        actor: &str,
    ) -> Result<Device> {
        check_claimant(claimant)?;
        self.write(|conn| {
            let tx = conn.transaction()?;
            let batch_id: i64 = tx
                .query_row("SELECT id FROM batches WHERE name = ?1", [batch], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| RegistryError::NoBatch(batch.to_owned()))?;
            let stamp = now();
            let next: Option<String> = tx
                .query_row(
                    "SELECT serial_number FROM devices WHERE batch_id = ?1 AND status = 'manufactured'
                       AND (claimed_until IS NULL OR claimed_until < ?2)
                     ORDER BY rowid LIMIT 1",
                    params![batch_id, stamp],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(sn) = next else {
                let in_progress: i64 = tx.query_row(
                    "SELECT count(*) FROM devices WHERE batch_id = ?1 AND status = 'manufactured'",
                    [batch_id],
                    |r| r.get(0),
                )?;
                return Err(RegistryError::BatchDone {
                    batch: batch.to_owned(),
                    in_progress,
                });
            };
            let device = take(&tx, &sn, claimant, lease, actor)?;
            tx.commit()?;
            Ok(device)
        })
    }

    /// Claims one device (the wizard's pick). Refused while another claimant's lease runs;
    /// the same claimant renews its lease.
    pub fn claim(&self, sn: &str, claimant: &str, lease: Duration, actor: &str) -> Result<Device> {
        check_claimant(claimant)?;
        self.write(|conn| {
            let tx = conn.transaction()?;
            let device = load(&tx, sn)?;
            if device.status == super::Status::Revoked {
                return Err(RegistryError::Revoked(sn.to_owned()));
            }
            if let (Some(by), Some(until)) = (&device.claimed_by, &device.claimed_until)
                && by != claimant
                && *until >= now()
            {
                return Err(RegistryError::ClaimedElsewhere {
                    sn: sn.to_owned(),
                    by: by.clone(),
                    until: until.clone(),
                });
            }
            let device = take(&tx, sn, claimant, lease, actor)?;
            tx.commit()?;
            Ok(device)
        })
    }

    /// Gives a claimed device back (a board set aside); only its claimant may.
    pub fn release(&self, sn: &str, claimant: &str, actor: &str) -> Result<Device> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            let before = load(&tx, sn)?;
            if before.claimed_until.is_none() || before.claimed_by.as_deref() != Some(claimant) {
                return Ok(before);
            }
            tx.execute(
                "UPDATE devices SET claimed_until = NULL WHERE serial_number = ?1",
                [sn],
            )?;
            let after = audit_change(&tx, actor, "device.released", &before)?;
            tx.commit()?;
            Ok(after)
        })
    }
}
