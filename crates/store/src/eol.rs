//! End-of-line test records: one row per unit and attempt, the station's record kept whole
//! (OpenHTF's JSON) beside the columns the registry asks about. A record sent twice (the same
//! unit, station and start time: a station that retried after a lost answer) is stored once;
//! each new one writes an audit row `device.tested`.

use rusqlite::{OptionalExtension as _, params};
use serde_json::json;

use vesper_core::eol::record::{StoredTest, TestRecord};

use super::devices::{check_text, load};
use super::{Registry, RegistryError, Result, audit, now};

/// A batch's records, oldest first (`?1`/`$1`: the batch's name; both engines).
pub(crate) const BATCH_RECORDS: &str = "SELECT t.id, t.received_at, t.record FROM test_records t
    JOIN devices d ON d.serial_number = t.serial_number JOIN batches b ON b.id = d.batch_id
    WHERE b.name = $1 ORDER BY t.id";

/// A record checked for storing: its text, and the audit row's summary of it.
pub(crate) struct Checked {
    pub text: String,
    pub summary: serde_json::Value,
}

/// Checks what the registry indexes a record by; its text and summary.
pub(crate) fn check_record(sn: &str, record: &TestRecord) -> Result<Checked> {
    if record.dut_id != sn {
        return Err(RegistryError::Invalid(format!(
            "the record's dut_id {:?} is not {sn}",
            record.dut_id
        )));
    }
    check_text("station_id", &record.station_id, 128)?;
    if record.start_time_millis < 0 || record.end_time_millis < record.start_time_millis {
        return Err(RegistryError::Invalid(
            "the record's times must not be negative or end before they start".into(),
        ));
    }
    let text = serde_json::to_string(record)
        .map_err(|e| RegistryError::Invalid(format!("test record: {e}")))?;
    let summary = json!({
        "outcome": record.outcome.as_str(),
        "station": record.station_id,
        "attempt": record.metadata.attempt,
        "start_time_millis": record.start_time_millis,
    });
    Ok(Checked { text, summary })
}

/// A stored row back into its record.
pub(crate) fn stored(id: i64, received_at: String, record: &str) -> Result<StoredTest> {
    let record = serde_json::from_str(record)
        .map_err(|e| RegistryError::Invalid(format!("stored test record {id}: {e}")))?;
    Ok(StoredTest {
        id,
        received_at,
        record,
    })
}

impl Registry {
    /// Stores a unit's record; `true` when it is new, `false` when the same record (unit,
    /// station, start time) was stored before (the stored one is returned).
    pub fn record_test(
        &self,
        sn: &str,
        record: &TestRecord,
        actor: &str,
    ) -> Result<(StoredTest, bool)> {
        let Checked { text, summary } = check_record(sn, record)?;
        self.write(|conn| {
            let tx = conn.transaction()?;
            load(&tx, sn)?;
            let received_at = now();
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO test_records
                     (serial_number, station, start_time_millis, outcome, marginal, received_at, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    sn,
                    record.station_id,
                    record.start_time_millis,
                    record.outcome.as_str(),
                    record.marginal,
                    received_at,
                    text
                ],
            )? == 1;
            if inserted {
                audit::append(&tx, actor, "device.tested", Some(sn), None, Some(&summary))?;
            }
            let (id, at, kept): (i64, String, String) = tx
                .query_row(
                    "SELECT id, received_at, record FROM test_records
                     WHERE serial_number = ?1 AND station = ?2 AND start_time_millis = ?3",
                    params![sn, record.station_id, record.start_time_millis],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?
                .ok_or_else(|| RegistryError::Invalid("test record vanished".into()))?;
            tx.commit()?;
            Ok((stored(id, at, &kept)?, inserted))
        })
    }

    /// Every record of a batch's units, oldest first.
    pub fn batch_test_records(&self, batch: &str) -> Result<Vec<StoredTest>> {
        self.read(|conn| {
            let known: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM batches WHERE name = ?1)",
                [batch],
                |r| r.get(0),
            )?;
            if !known {
                return Err(RegistryError::NoBatch(batch.to_owned()));
            }
            let mut statement = conn.prepare_cached(BATCH_RECORDS)?;
            let rows = statement
                .query_map([batch], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?))
                })?
                .collect::<rusqlite::Result<Vec<(i64, String, String)>>>()?;
            rows.into_iter()
                .map(|(id, at, record)| stored(id, at, &record))
                .collect()
        })
    }

    /// A unit's records, oldest first.
    pub fn test_records(&self, sn: &str) -> Result<Vec<StoredTest>> {
        self.read(|conn| {
            load(conn, sn)?;
            let mut statement = conn.prepare_cached(
                "SELECT id, received_at, record FROM test_records WHERE serial_number = ?1 ORDER BY id",
            )?;
            let rows = statement
                .query_map([sn], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))?
                .collect::<rusqlite::Result<Vec<(i64, String, String)>>>()?;
            rows.into_iter()
                .map(|(id, at, record)| stored(id, at, &record))
                .collect()
        })
    }
}
