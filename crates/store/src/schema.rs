//! Schema migrations, versioned in the code with SQLite's `user_version`.
//!
//! Each migration runs once, in its own transaction, in order. A database written by a newer
//! vesper is refused rather than misread.

use rusqlite::Connection;

use super::{RegistryError, Result};

/// Migrations in order; `MIGRATIONS[i]` brings the schema from version i to i + 1.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE batches (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    board             TEXT NOT NULL,
    hw_type           TEXT NOT NULL,
    hw_version        TEXT NOT NULL,
    quantity          INTEGER NOT NULL CHECK (quantity > 0),
    subscription_plan TEXT NOT NULL,
    available_outputs INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    created_by        TEXT NOT NULL
);

CREATE TABLE devices (
    serial_number     TEXT PRIMARY KEY,
    hw_type           TEXT NOT NULL,
    hw_version        TEXT NOT NULL,
    board             TEXT NOT NULL,
    batch_id          INTEGER NOT NULL REFERENCES batches (id),
    status            TEXT NOT NULL CHECK (status IN
                      ('manufactured', 'flashed', 'provisioned', 'sold', 'claimed', 'active', 'revoked')),
    subscription_plan TEXT NOT NULL,
    available_outputs INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    assigned_email    TEXT,
    assigned_name     TEXT,
    chip              TEXT,
    mac               TEXT,
    firmware_version  TEXT,
    flashed_at        TEXT,
    provisioned_at    TEXT,
    last_seen         TEXT,
    station           TEXT
);
CREATE UNIQUE INDEX devices_mac ON devices (mac) WHERE mac IS NOT NULL;
CREATE INDEX devices_batch ON devices (batch_id);
CREATE INDEX devices_status ON devices (status);
CREATE INDEX devices_created ON devices (created_at);

-- Who may use a device: its owner and its other users (the seed's `owner` and `users_list`).
CREATE TABLE device_users (
    serial_number TEXT NOT NULL REFERENCES devices (serial_number),
    user_id       TEXT NOT NULL,
    is_owner      INTEGER NOT NULL CHECK (is_owner IN (0, 1)),
    PRIMARY KEY (serial_number, user_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX device_users_one_owner ON device_users (serial_number) WHERE is_owner = 1;

CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'technician', 'viewer')),
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT,
    before  TEXT,
    after   TEXT
);
CREATE INDEX audit_subject ON audit (subject);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- E-mails to send; the mail worker sends them with retries. Written in the same
-- transaction as the change that asks for them, so none is lost.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    kind       TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    payload    TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    sent_at    TEXT,
    last_error TEXT
);
"#,
    r#"
-- Bench slots and wizards claim a device before flashing it, so no serial number is ever
-- taken by two slots or two stations. A claim is a lease: it lapses if the station dies.
ALTER TABLE devices ADD COLUMN claimed_by TEXT;
ALTER TABLE devices ADD COLUMN claimed_until TEXT;
CREATE INDEX devices_provisioned ON devices (provisioned_at) WHERE provisioned_at IS NOT NULL;
CREATE INDEX devices_serial_order ON devices (created_at DESC, serial_number);
"#,
    r#"
-- The mail worker: each row is pending until its provider accepts it, then sent, or dead with
-- the reason. message_key is the row's Message-ID / Idempotency-Key, stable across retries.
ALTER TABLE outbox ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'sent', 'dead'));
ALTER TABLE outbox ADD COLUMN next_attempt_at TEXT;
ALTER TABLE outbox ADD COLUMN message_key TEXT;
ALTER TABLE outbox ADD COLUMN provider_answer TEXT;
ALTER TABLE outbox ADD COLUMN subject TEXT;
UPDATE outbox SET status = 'sent' WHERE sent_at IS NOT NULL;
UPDATE outbox SET message_key = lower(hex(randomblob(16))) WHERE message_key IS NULL;
UPDATE outbox SET subject = json_extract(payload, '$.serial_number'),
    payload = json_set(payload, '$.template', kind) WHERE kind = 'device_invite';
CREATE INDEX outbox_due ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_subject ON outbox (subject, kind);
-- Alerts count each device's failed flashes.
CREATE INDEX audit_action ON audit (action, subject);
"#,
    r#"
-- Deploy runs of the push webhook: one per delivery (a replay is refused by UNIQUE).
CREATE TABLE deploy_runs (
    id          INTEGER PRIMARY KEY,
    delivery    TEXT NOT NULL UNIQUE,
    git_ref     TEXT NOT NULL,
    commit_id   TEXT NOT NULL,
    repository  TEXT,
    pusher      TEXT,
    state       TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'superseded')),
    received_at TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    exit_code   INTEGER,
    detail      TEXT,
    log         TEXT
);
"#,
    r#"
-- Firmware CI uploads releases with a token of its own role, `publisher`.
CREATE TABLE tokens_new (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'technician', 'viewer', 'publisher')),
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
INSERT INTO tokens_new (id, name, role, hash, created_at, revoked_at)
    SELECT id, name, role, hash, created_at, revoked_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;
"#,
    r#"
-- A message handed to a mail worker is its own until leased_until (several instances share a
-- PostgreSQL outbox; on SQLite the one backend clears its leases when it starts).
ALTER TABLE outbox ADD COLUMN leased_until TEXT;
"#,
    r#"
-- The Devices screen's search: a trigram index over the searched columns (case-insensitive
-- substrings of 3 characters or more, as LIKE '%...%' finds them), kept by triggers.
CREATE VIRTUAL TABLE devices_search USING fts5(
    serial_number, mac, station, assigned_email,
    content = 'devices', content_rowid = 'rowid', tokenize = 'trigram');
INSERT INTO devices_search (devices_search) VALUES ('rebuild');
CREATE TRIGGER devices_search_insert AFTER INSERT ON devices BEGIN
    INSERT INTO devices_search (rowid, serial_number, mac, station, assigned_email)
    VALUES (new.rowid, new.serial_number, new.mac, new.station, new.assigned_email);
END;
CREATE TRIGGER devices_search_delete AFTER DELETE ON devices BEGIN
    INSERT INTO devices_search (devices_search, rowid, serial_number, mac, station, assigned_email)
    VALUES ('delete', old.rowid, old.serial_number, old.mac, old.station, old.assigned_email);
END;
CREATE TRIGGER devices_search_update AFTER UPDATE OF serial_number, mac, station, assigned_email ON devices BEGIN
    INSERT INTO devices_search (devices_search, rowid, serial_number, mac, station, assigned_email)
    VALUES ('delete', old.rowid, old.serial_number, old.mac, old.station, old.assigned_email);
    INSERT INTO devices_search (rowid, serial_number, mac, station, assigned_email)
    VALUES (new.rowid, new.serial_number, new.mac, new.station, new.assigned_email);
END;
"#,
    r#"
-- A deploy push is identified by what is signed: the body's SHA-256 (a replayed body under a
-- new delivery header runs nothing). Runs recorded before have none.
ALTER TABLE deploy_runs ADD COLUMN body_sha256 TEXT;
CREATE UNIQUE INDEX deploy_runs_body ON deploy_runs (body_sha256);
"#,
    r#"
-- End-of-line test records: one per unit and attempt, the station's record (OpenHTF's JSON)
-- kept whole. The same record sent twice (unit, station, start time) is stored once.
CREATE TABLE test_records (
    id                INTEGER PRIMARY KEY,
    serial_number     TEXT NOT NULL REFERENCES devices (serial_number),
    station           TEXT NOT NULL,
    start_time_millis INTEGER NOT NULL,
    outcome           TEXT NOT NULL
        CHECK (outcome IN ('PASS', 'FAIL', 'ERROR', 'TIMEOUT', 'ABORTED')),
    marginal          INTEGER NOT NULL CHECK (marginal IN (0, 1)),
    received_at       TEXT NOT NULL,
    record            TEXT NOT NULL,
    UNIQUE (serial_number, station, start_time_millis)
);
"#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies every migration the database has not seen yet.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(RegistryError::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
