//! End-of-line test records on PostgreSQL: the statements of `crate::eol` in PostgreSQL's words
//! (`ON CONFLICT DO NOTHING` for `OR IGNORE`), in one transaction with the audit row.

use vesper_core::eol::record::{StoredTest, TestRecord};

use super::super::eol::{BATCH_RECORDS, Checked, check_record, stored};
use super::super::{RegistryError, Result, now};
use super::PgStore;
use super::registry::{append, load};

impl PgStore {
    pub(super) async fn store_test_record(
        &self,
        sn: &str,
        record: &TestRecord,
        actor: &str,
    ) -> Result<(StoredTest, bool)> {
        let Checked { text, summary } = check_record(sn, record)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        load(&tx, sn).await?;
        let inserted = tx
            .execute(
                "INSERT INTO test_records
                     (serial_number, station, start_time_millis, outcome, marginal, received_at, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (serial_number, station, start_time_millis) DO NOTHING",
                &[
                    &sn,
                    &record.station_id,
                    &record.start_time_millis,
                    &record.outcome.as_str(),
                    &i32::from(record.marginal),
                    &now(),
                    &text,
                ],
            )
            .await?
            == 1;
        if inserted {
            append(&tx, actor, "device.tested", Some(sn), None, Some(&summary)).await?;
        }
        let row = tx
            .query_one(
                "SELECT id, received_at, record FROM test_records
                 WHERE serial_number = $1 AND station = $2 AND start_time_millis = $3",
                &[&sn, &record.station_id, &record.start_time_millis],
            )
            .await?;
        tx.commit().await?;
        Ok((stored(row.get(0), row.get(1), row.get(2))?, inserted))
    }

    pub(super) async fn stored_batch_records(&self, batch: &str) -> Result<Vec<StoredTest>> {
        let client = self.client().await?;
        let known = client
            .query_opt("SELECT 1 FROM batches WHERE name = $1", &[&batch])
            .await?
            .is_some();
        if !known {
            return Err(RegistryError::NoBatch(batch.to_owned()));
        }
        let rows = client.query(BATCH_RECORDS, &[&batch]).await?;
        rows.iter()
            .map(|r| stored(r.get(0), r.get(1), r.get::<_, &str>(2)))
            .collect()
    }

    pub(super) async fn stored_test_records(&self, sn: &str) -> Result<Vec<StoredTest>> {
        let client = self.client().await?;
        load(&client, sn).await?;
        let rows = client
            .query(
                "SELECT id, received_at, record FROM test_records WHERE serial_number = $1 ORDER BY id",
                &[&sn],
            )
            .await?;
        rows.iter()
            .map(|r| stored(r.get(0), r.get(1), r.get::<_, &str>(2)))
            .collect()
    }
}
