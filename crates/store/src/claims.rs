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

#[cfg(test)]
mod tests {
    use super::*;
    use vesper_core::config::{Config, Machine};
    use vesper_core::model::NewBatch;

    fn registry_with_batch(quantity: u32) -> (tempfile::TempDir, Registry, String) {
        let dir = tempfile::tempdir().unwrap();
        let machine = Machine {
            station_name: "test".into(),
            firmware_cache: dir.path().join("cache"),
        };
        let config = Config::example_at(&dir.path().join("config.toml"), &machine);
        let registry = Registry::open(&dir.path().join("data")).unwrap();
        let board = config.boards[0].clone();
        let batch = registry
            .create_batch(
                &NewBatch {
                    board: &board,
                    quantity,
                    subscription_plan: "standard".into(),
                    available_outputs: 8,
                },
                "test",
            )
            .unwrap();
        let name = batch.summary.batch_id.clone();
        (dir, registry, name)
    }

    const LEASE: Duration = Duration::from_secs(600);

    #[test]
    fn slots_never_share_a_device_and_a_done_batch_says_so() {
        let (_dir, r, batch) = registry_with_batch(3);
        let a = r.claim_next(&batch, "bench-1/1", LEASE, "t").unwrap();
        let b = r.claim_next(&batch, "bench-1/2", LEASE, "t").unwrap();
        let c = r.claim_next(&batch, "bench-2/1", LEASE, "t").unwrap();
        let mut sns = vec![&a.serial_number, &b.serial_number, &c.serial_number];
        sns.dedup();
        assert_eq!(sns.len(), 3);
        assert_eq!(a.claimed_by.as_deref(), Some("bench-1/1"));
        match r.claim_next(&batch, "bench-1/1", LEASE, "t") {
            Err(RegistryError::BatchDone { in_progress: 3, .. }) => {}
            other => panic!("expected BatchDone, got {other:?}"),
        }
        // A released device goes back to the pool.
        r.release(&b.serial_number, "bench-1/2", "t").unwrap();
        let again = r.claim_next(&batch, "bench-1/3", LEASE, "t").unwrap();
        assert_eq!(again.serial_number, b.serial_number);
    }

    #[test]
    fn a_lapsed_lease_frees_the_device() {
        let (_dir, r, batch) = registry_with_batch(1);
        let a = r
            .claim_next(&batch, "dead-station/1", Duration::ZERO, "t")
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let b = r.claim_next(&batch, "bench-1/1", LEASE, "t").unwrap();
        assert_eq!(a.serial_number, b.serial_number);
    }

    #[test]
    fn a_held_device_is_refused_to_others_and_renewed_for_its_holder() {
        let (_dir, r, batch) = registry_with_batch(1);
        let a = r.claim_next(&batch, "bench-1/1", LEASE, "t").unwrap();
        let sn = &a.serial_number;
        assert!(matches!(
            r.claim(sn, "wizard-2", LEASE, "t"),
            Err(RegistryError::ClaimedElsewhere { .. })
        ));
        r.claim(sn, "bench-1/1", LEASE, "t").unwrap();
        // Only the holder can release.
        r.release(sn, "wizard-2", "t").unwrap();
        assert!(r.claim(sn, "wizard-2", LEASE, "t").is_err());
        assert!(matches!(
            r.claim_next("B-9999", "x", LEASE, "t"),
            Err(RegistryError::NoBatch(_))
        ));
        assert!(matches!(
            r.claim_next(&batch, "", LEASE, "t"),
            Err(RegistryError::Invalid(_))
        ));
    }

    #[test]
    fn a_flashed_device_is_no_longer_claimable_from_its_batch() {
        let (_dir, r, batch) = registry_with_batch(2);
        let a = r.claim_next(&batch, "s/1", LEASE, "t").unwrap();
        let report = vesper_core::model::FlashReport {
            chip: "ESP32".into(),
            mac: "24:0A:C4:00:00:01".into(),
            firmware_version: "1.0.1".into(),
            station: "s".into(),
            force: false,
        };
        let flashed = r.flashed(&a.serial_number, &report, "t").unwrap();
        assert_eq!(flashed.claimed_until, None);
        assert_eq!(flashed.claimed_by.as_deref(), Some("s/1"));
        let b = r.claim_next(&batch, "s/1", LEASE, "t").unwrap();
        assert_ne!(a.serial_number, b.serial_number);
        assert!(r.claim_next(&batch, "s/2", LEASE, "t").is_err());
    }
}
