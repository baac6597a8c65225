//! The PostgreSQL schema, versioned: each migration runs once, in its own transaction, under an
//! advisory lock so that instances starting together apply it once. The tables hold the same
//! columns as SQLite's (text times that compare as text, the same JSON text), so
//! `vesper migrate` copies rows as they are and checks them by checksum.

use tokio_postgres::Client;

use super::super::{RegistryError, Result};

/// Migrations in order; `MIGRATIONS[i]` brings the schema from version i to i + 1.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE batches (
    id                BIGSERIAL PRIMARY KEY,
    name              TEXT COLLATE "C" NOT NULL UNIQUE,
    board             TEXT COLLATE "C" NOT NULL,
    hw_type           TEXT COLLATE "C" NOT NULL,
    hw_version        TEXT COLLATE "C" NOT NULL,
    quantity          BIGINT NOT NULL CHECK (quantity > 0),
    subscription_plan TEXT COLLATE "C" NOT NULL,
    available_outputs BIGINT NOT NULL,
    created_at        TEXT COLLATE "C" NOT NULL,
    created_by        TEXT COLLATE "C" NOT NULL
);

CREATE TABLE devices (
    seq               BIGSERIAL NOT NULL UNIQUE,
    serial_number     TEXT COLLATE "C" PRIMARY KEY,
    hw_type           TEXT COLLATE "C" NOT NULL,
    hw_version        TEXT COLLATE "C" NOT NULL,
    board             TEXT COLLATE "C" NOT NULL,
    batch_id          BIGINT NOT NULL REFERENCES batches (id),
    status            TEXT COLLATE "C" NOT NULL CHECK (status IN
                      ('manufactured', 'flashed', 'provisioned', 'sold', 'claimed', 'active', 'revoked')),
    subscription_plan TEXT COLLATE "C" NOT NULL,
    available_outputs BIGINT NOT NULL,
    created_at        TEXT COLLATE "C" NOT NULL,
    assigned_email    TEXT COLLATE "C",
    assigned_name     TEXT COLLATE "C",
    chip              TEXT COLLATE "C",
    mac               TEXT COLLATE "C",
    firmware_version  TEXT COLLATE "C",
    flashed_at        TEXT COLLATE "C",
    provisioned_at    TEXT COLLATE "C",
    last_seen         TEXT COLLATE "C",
    station           TEXT COLLATE "C",
    claimed_by        TEXT COLLATE "C",
    claimed_until     TEXT COLLATE "C"
);
CREATE UNIQUE INDEX devices_mac ON devices (mac) WHERE mac IS NOT NULL;
CREATE INDEX devices_batch ON devices (batch_id, seq);
CREATE INDEX devices_status ON devices (status);
CREATE INDEX devices_created ON devices (created_at);
CREATE INDEX devices_provisioned ON devices (provisioned_at) WHERE provisioned_at IS NOT NULL;
CREATE INDEX devices_serial_order ON devices (created_at DESC, serial_number);

CREATE TABLE device_users (
    serial_number TEXT COLLATE "C" NOT NULL REFERENCES devices (serial_number),
    user_id       TEXT COLLATE "C" NOT NULL,
    is_owner      INTEGER NOT NULL CHECK (is_owner IN (0, 1)),
    PRIMARY KEY (serial_number, user_id)
);
CREATE UNIQUE INDEX device_users_one_owner ON device_users (serial_number) WHERE is_owner = 1;

CREATE TABLE tokens (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    role       TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'technician', 'viewer', 'publisher')),
    hash       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at TEXT COLLATE "C" NOT NULL,
    revoked_at TEXT COLLATE "C"
);

CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      TEXT COLLATE "C" NOT NULL,
    actor   TEXT COLLATE "C" NOT NULL,
    action  TEXT COLLATE "C" NOT NULL,
    subject TEXT COLLATE "C",
    before  TEXT,
    after   TEXT
);
CREATE INDEX audit_subject ON audit (subject);
CREATE INDEX audit_action ON audit (action, subject);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    created_at      TEXT COLLATE "C" NOT NULL,
    kind            TEXT COLLATE "C" NOT NULL,
    recipient       TEXT COLLATE "C" NOT NULL,
    payload         TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    sent_at         TEXT COLLATE "C",
    last_error      TEXT,
    status          TEXT COLLATE "C" NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    next_attempt_at TEXT COLLATE "C",
    message_key     TEXT COLLATE "C",
    provider_answer TEXT,
    subject         TEXT COLLATE "C",
    leased_until    TEXT COLLATE "C"
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_subject ON outbox (subject, kind);

CREATE TABLE deploy_runs (
    id          BIGSERIAL PRIMARY KEY,
    delivery    TEXT COLLATE "C" NOT NULL UNIQUE,
    git_ref     TEXT COLLATE "C" NOT NULL,
    commit_id   TEXT COLLATE "C" NOT NULL,
    repository  TEXT COLLATE "C",
    pusher      TEXT COLLATE "C",
    state       TEXT COLLATE "C" NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'superseded')),
    received_at TEXT COLLATE "C" NOT NULL,
    started_at  TEXT COLLATE "C",
    finished_at TEXT COLLATE "C",
    exit_code   INTEGER,
    detail      TEXT,
    log         TEXT
);
"#,
    r#"
-- The Devices screen's search: trigram indexes for ILIKE '%...%' on the searched columns
-- (pg_trgm is a trusted extension: the database's owner may create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX devices_search_serial ON devices USING gin (serial_number gin_trgm_ops);
CREATE INDEX devices_search_mac ON devices USING gin (mac gin_trgm_ops);
CREATE INDEX devices_search_station ON devices USING gin (station gin_trgm_ops);
CREATE INDEX devices_search_email ON devices USING gin (assigned_email gin_trgm_ops);
CREATE INDEX device_users_search ON device_users USING gin (user_id gin_trgm_ops);
"#,
    r#"
-- A deploy push is identified by what is signed: the body's SHA-256.
ALTER TABLE deploy_runs ADD COLUMN body_sha256 TEXT COLLATE "C";
CREATE UNIQUE INDEX deploy_runs_body ON deploy_runs (body_sha256);
"#,
    r#"
-- End-of-line test records: one per unit and attempt, the station's record (OpenHTF's JSON)
-- kept whole. The same record sent twice (unit, station, start time) is stored once.
CREATE TABLE test_records (
    id                BIGSERIAL PRIMARY KEY,
    serial_number     TEXT COLLATE "C" NOT NULL REFERENCES devices (serial_number),
    station           TEXT COLLATE "C" NOT NULL,
    start_time_millis BIGINT NOT NULL,
    outcome           TEXT COLLATE "C" NOT NULL
        CHECK (outcome IN ('PASS', 'FAIL', 'ERROR', 'TIMEOUT', 'ABORTED')),
    marginal          INTEGER NOT NULL CHECK (marginal IN (0, 1)),
    received_at       TEXT COLLATE "C" NOT NULL,
    record            TEXT COLLATE "C" NOT NULL,
    UNIQUE (serial_number, station, start_time_millis)
);
"#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Any number that no other program takes for `pg_advisory_xact_lock`: "vesper" in ASCII.
const MIGRATION_LOCK: i64 = 0x7665_7370_6572;

/// Applies every migration the database has not seen yet.
pub async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS vesper_schema (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .await?;
    let found: i64 = tx
        .query_one("SELECT COALESCE(max(version), 0) FROM vesper_schema", &[])
        .await?
        .get(0);
    if found > VERSION {
        return Err(RegistryError::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO vesper_schema (version, applied_at) VALUES ($1, $2)",
            &[&(index as i64 + 1), &super::super::now()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
