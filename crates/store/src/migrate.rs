//! `vesper migrate`: copies a SQLite registry into an empty PostgreSQL database in one
//! transaction (COPY, the fastest way in), then proves the copy: every table's row count and a
//! SHA-256 over its rows, read back from both engines.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use rusqlite::types::ValueRef;
use sha2::{Digest as _, Sha256};

use super::{PgStore, Registry, RegistryError, Result};

/// One table to copy: its columns (the same names on both engines) and the order its checksum
/// reads the rows in. SQLite's `rowid` becomes PostgreSQL's `seq` for devices.
struct Table {
    name: &'static str,
    /// Columns as SQLite selects them.
    source: &'static str,
    /// The same columns as PostgreSQL names them.
    target: &'static str,
    order: &'static str,
    /// The sequence to move past the copied ids.
    sequence: Option<(&'static str, &'static str)>,
}

const TABLES: &[Table] = &[
    Table {
        name: "batches",
        source: "id, name, board, hw_type, hw_version, quantity, subscription_plan, available_outputs, created_at, created_by",
        target: "id, name, board, hw_type, hw_version, quantity, subscription_plan, available_outputs, created_at, created_by",
        order: "id",
        sequence: Some(("batches", "id")),
    },
    Table {
        name: "devices",
        source: "rowid, serial_number, hw_type, hw_version, board, batch_id, status, subscription_plan, available_outputs, created_at, assigned_email, assigned_name, chip, mac, firmware_version, flashed_at, provisioned_at, last_seen, station, claimed_by, claimed_until",
        target: "seq, serial_number, hw_type, hw_version, board, batch_id, status, subscription_plan, available_outputs, created_at, assigned_email, assigned_name, chip, mac, firmware_version, flashed_at, provisioned_at, last_seen, station, claimed_by, claimed_until",
        order: "serial_number",
        sequence: Some(("devices", "seq")),
    },
    Table {
        name: "device_users",
        source: "serial_number, user_id, is_owner",
        target: "serial_number, user_id, is_owner",
        order: "serial_number, user_id",
        sequence: None,
    },
    Table {
        name: "tokens",
        source: "id, name, role, hash, created_at, revoked_at",
        target: "id, name, role, hash, created_at, revoked_at",
        order: "id",
        sequence: Some(("tokens", "id")),
    },
    Table {
        name: "audit",
        source: "id, at, actor, action, subject, before, after",
        target: "id, at, actor, action, subject, before, after",
        order: "id",
        sequence: Some(("audit", "id")),
    },
    Table {
        name: "outbox",
        source: "id, created_at, kind, recipient, payload, attempts, sent_at, last_error, status, next_attempt_at, message_key, provider_answer, subject, leased_until",
        target: "id, created_at, kind, recipient, payload, attempts, sent_at, last_error, status, next_attempt_at, message_key, provider_answer, subject, leased_until",
        order: "id",
        sequence: Some(("outbox", "id")),
    },
    Table {
        name: "deploy_runs",
        source: "id, delivery, git_ref, commit_id, repository, pusher, state, received_at, started_at, finished_at, exit_code, detail, log, body_sha256",
        target: "id, delivery, git_ref, commit_id, repository, pusher, state, received_at, started_at, finished_at, exit_code, detail, log, body_sha256",
        order: "id",
        sequence: Some(("deploy_runs", "id")),
    },
    Table {
        name: "test_records",
        source: "id, serial_number, station, start_time_millis, outcome, marginal, received_at, record",
        target: "id, serial_number, station, start_time_millis, outcome, marginal, received_at, record",
        order: "id",
        sequence: Some(("test_records", "id")),
    },
];

/// What one table's copy proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    pub table: &'static str,
    pub source_rows: u64,
    pub target_rows: u64,
    pub source_sha256: String,
    pub target_sha256: String,
}

impl TableCheck {
    pub fn matches(&self) -> bool {
        self.source_rows == self.target_rows && self.source_sha256 == self.target_sha256
    }
}

/// Rows read from SQLite, as PostgreSQL's text form reads them back (NULL is `None`).
type Row = Vec<Option<String>>;

/// Rows per COPY chunk sent to the server.
const CHUNK: usize = 2000;

/// A running checksum of rows: fields joined by tabs, NULL as `\N`, rows ended by newlines.
#[derive(Default)]
struct RowHash {
    hash: Sha256,
    rows: u64,
}

impl RowHash {
    fn add(&mut self, row: &[Option<String>]) {
        for (i, field) in row.iter().enumerate() {
            if i > 0 {
                self.hash.update(b"\t");
            }
            match field {
                Some(text) => {
                    self.hash.update(text.len().to_le_bytes());
                    self.hash.update(text.as_bytes());
                }
                None => self.hash.update(b"\\N"),
            }
        }
        self.hash.update(b"\n");
        self.rows += 1;
    }

    fn finish(self) -> (u64, String) {
        (
            self.rows,
            vesper_core::firmware::sha256_hex(&self.hash.finalize()),
        )
    }
}

/// One field in COPY's text format.
fn copy_field(out: &mut String, field: &Option<String>) {
    let Some(text) = field else {
        out.push_str("\\N");
        return;
    };
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn text_of(value: ValueRef) -> rusqlite::Result<Option<String>> {
    Ok(match value {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(x) => Some(x.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(_) => {
            return Err(rusqlite::Error::InvalidColumnType(
                0,
                "blob".into(),
                rusqlite::types::Type::Blob,
            ));
        }
    })
}

/// Reads a SQLite table in checksum order into chunks sent down `tx`.
fn read_table(
    registry: &Registry,
    table: &Table,
    tx: tokio::sync::mpsc::Sender<Vec<Row>>,
) -> Result<()> {
    registry.read(|c| {
        let mut stmt = c.prepare(&format!(
            "SELECT {} FROM {} ORDER BY {}",
            table.source, table.name, table.order
        ))?;
        let width = stmt.column_count();
        let mut rows = stmt.query([])?;
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(row) = rows.next()? {
            let fields = (0..width)
                .map(|i| text_of(row.get_ref(i)?))
                .collect::<rusqlite::Result<Row>>()?;
            chunk.push(fields);
            if chunk.len() == CHUNK && tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                return Ok(());
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(chunk);
        }
        Ok(())
    })
}

/// The target's rows of a table, read back as text in the same order, hashed.
async fn target_hash(client: &deadpool_postgres::Client, table: &Table) -> Result<(u64, String)> {
    let columns: Vec<String> = table
        .target
        .split(", ")
        .map(|c| format!("t.{c}::text"))
        .collect();
    // The order names the table's columns (`t.id`), not the text columns selected (`id::text`
    // is also called `id`, and would sort 10 before 2).
    let order: Vec<String> = table.order.split(", ").map(|c| format!("t.{c}")).collect();
    let sql = format!(
        "SELECT {} FROM {} t ORDER BY {}",
        columns.join(", "),
        table.name,
        order.join(", ")
    );
    let rows = client
        .query_raw(
            &sql,
            std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
        )
        .await?;
    futures_util::pin_mut!(rows);
    let mut hash = RowHash::default();
    while let Some(row) = rows.next().await {
        let row = row?;
        let fields: Row = (0..row.len())
            .map(|i| row.try_get::<_, Option<String>>(i))
            .collect::<std::result::Result<_, _>>()?;
        hash.add(&fields);
    }
    Ok(hash.finish())
}

/// Copies every table of `source` into `target` (which must hold no row) in one transaction,
/// then checks counts and checksums table by table. `progress` hears (table, rows copied).
pub async fn sqlite_to_postgres(
    source: Arc<Registry>,
    target: &PgStore,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> Result<Vec<TableCheck>> {
    if !target.is_empty().await? {
        return Err(RegistryError::Invalid(
            "the target database already holds a registry (batches, tokens, audit rows, mail or deploy runs); migrate copies only into an empty one".into(),
        ));
    }
    let mut client = target.raw().await?;
    let tx = client.transaction().await?;
    let mut source_hashes = Vec::new();
    for table in TABLES {
        let (chunks, mut incoming) = tokio::sync::mpsc::channel::<Vec<Row>>(4);
        let reader = {
            let source = source.clone();
            let table: &'static Table = table;
            tokio::task::spawn_blocking(move || read_table(&source, table, chunks))
        };
        let sink = tx
            .copy_in(&format!(
                "COPY {} ({}) FROM STDIN",
                table.name, table.target
            ))
            .await?;
        futures_util::pin_mut!(sink);
        let mut hash = RowHash::default();
        while let Some(chunk) = incoming.recv().await {
            let mut text = String::new();
            for row in &chunk {
                hash.add(row);
                for (i, field) in row.iter().enumerate() {
                    if i > 0 {
                        text.push('\t');
                    }
                    copy_field(&mut text, field);
                }
                text.push('\n');
            }
            sink.send(Bytes::from(text)).await?;
            progress(table.name, hash.rows);
        }
        reader
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))??;
        sink.finish().await?;
        if let Some((name, column)) = table.sequence {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{name}', '{column}'), COALESCE((SELECT max({column}) FROM {name}), 0) + 1, false)"
                ),
                &[],
            )
            .await?;
        }
        source_hashes.push(hash.finish());
    }
    tx.commit().await?;
    // Fresh statistics, so the planner knows the tables are no longer empty; and the trigram
    // indexes' pending lists merged (GIN's fast update parks a bulk copy's entries in a list that
    // every search would otherwise read through).
    client.batch_execute("VACUUM ANALYZE").await?;
    let mut checks = Vec::with_capacity(TABLES.len());
    for (table, (source_rows, source_sha256)) in TABLES.iter().zip(source_hashes) {
        let (target_rows, target_sha256) = target_hash(&client, table).await?;
        checks.push(TableCheck {
            table: table.name,
            source_rows,
            target_rows,
            source_sha256,
            target_sha256,
        });
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_would_split_a_row() {
        let mut out = String::new();
        copy_field(&mut out, &Some("a\tb\nc\\d\re".into()));
        out.push('\t');
        copy_field(&mut out, &None);
        assert_eq!(out, "a\\tb\\nc\\\\d\\re\t\\N");
    }

    #[test]
    fn a_null_and_the_text_backslash_n_hash_differently() {
        let mut a = RowHash::default();
        a.add(&[None]);
        let mut b = RowHash::default();
        b.add(&[Some("\\N".into())]);
        assert_ne!(a.finish(), b.finish());
    }
}
