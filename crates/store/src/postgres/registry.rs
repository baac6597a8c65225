//! Every [`Store`] operation on PostgreSQL. The statements are SQLite's, in PostgreSQL's words:
//! `$n` parameters, `json_agg` for `json_group_array`, `->>` for `json_extract`, `seq` for
//! `rowid`, `ON CONFLICT` for `OR IGNORE`; a changed device row is locked (`FOR UPDATE`) for its
//! transaction, and the next device of a batch is taken with `FOR UPDATE SKIP LOCKED`.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use vesper_core::eol::record::{StoredTest, TestRecord};
use vesper_core::model::{
    ACCESS_ACTIONS, AccessChanges, AlertKind, AuditEntry, AuditQuery, Batch, BatchSummary,
    DeployReceipt, DeployRun, DeployState, Device, DeviceEvent, DeviceFilter, DevicePage,
    DeviceUsers, FailureReport, FlashReport, InviteState, MailContent, MailOutcome, MailStatus,
    NewBatch, OutboxMessage, Push, Role, Sighting, Stats, Status, StatusCounts, TokenInfo,
    TokenPrincipal, UserAccess,
};
use vesper_core::serial;

use super::super::batches::check_new_batch;
use super::super::claims::{check_claimant, lease_end};
use super::super::devices::{check_email, check_mac, check_text, check_user_id};
use super::super::engine::{Delivery, Engine, Store};
use super::super::listing::{Dialect, Listing, listing};
use super::super::outbox::{MAIL_LEASE, audit_state, retry_stamp, subject, truncate};
use super::super::tokens::{check_name, hash, new_token};
use super::super::{DEPLOY_ACTOR, MAIL_ACTOR, RegistryError, Result, TOKEN_PREFIX, now, stamp};
use super::PgStore;

const DEVICE_COLUMNS: &str = "d.serial_number, d.hw_type, d.hw_version, d.board, b.name, d.status,
    d.subscription_plan, d.available_outputs, d.created_at, d.assigned_email, d.assigned_name, d.chip, d.mac,
    d.firmware_version, d.flashed_at, d.provisioned_at, d.last_seen, d.station,
    (SELECT user_id FROM device_users u WHERE u.serial_number = d.serial_number AND u.is_owner = 1),
    COALESCE((SELECT json_agg(user_id ORDER BY user_id)::text FROM device_users u
        WHERE u.serial_number = d.serial_number AND u.is_owner = 0), '[]'),
    d.claimed_by, d.claimed_until";

fn device_from_row(r: &Row) -> Result<Device> {
    super::super::rows::device(r)
}

pub(super) async fn load(c: &impl GenericClient, sn: &str) -> Result<Device> {
    let row = c
        .query_opt(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices d JOIN batches b ON b.id = d.batch_id WHERE d.serial_number = $1"),
            &[&sn],
        )
        .await?
        .ok_or_else(|| RegistryError::NoDevice(sn.to_owned()))?;
    device_from_row(&row)
}

/// Locks a device's row for the rest of the transaction, then reads it.
async fn lock(tx: &Transaction<'_>, sn: &str) -> Result<Device> {
    tx.execute(
        "SELECT 1 FROM devices WHERE serial_number = $1 FOR UPDATE",
        &[&sn],
    )
    .await?;
    load(tx, sn).await
}

fn snapshot(device: &Device) -> Value {
    serde_json::to_value(device).unwrap_or(Value::Null)
}

pub(super) async fn append(
    c: &impl GenericClient,
    actor: &str,
    action: &str,
    subject: Option<&str>,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<()> {
    c.execute(
        "INSERT INTO audit (at, actor, action, subject, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&now(), &actor, &action, &subject, &before.map(Value::to_string), &after.map(Value::to_string)],
    )
    .await?;
    Ok(())
}

async fn audit_change(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    before: &Device,
) -> Result<Device> {
    let after = load(tx, &before.serial_number).await?;
    append(
        tx,
        actor,
        action,
        Some(&before.serial_number),
        Some(&snapshot(before)),
        Some(&snapshot(&after)),
    )
    .await?;
    Ok(after)
}

fn audit_entry(r: &tokio_postgres::Row) -> Result<AuditEntry> {
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    Ok(AuditEntry {
        id: r.try_get(0)?,
        at: r.try_get(1)?,
        actor: r.try_get(2)?,
        action: r.try_get(3)?,
        subject: r.try_get(4)?,
        before: json(r.try_get(5)?),
        after: json(r.try_get(6)?),
    })
}

async fn audit_query(c: &impl GenericClient, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let limit = i64::from(q.limit.clamp(1, 1000));
    let rows = c
        .query(
            "SELECT id, at, actor, action, subject, before, after FROM audit
             WHERE ($1::text IS NULL OR subject = $1) AND ($2::text IS NULL OR action = $2)
               AND ($3::bigint IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4",
            &[&q.subject, &q.action, &q.before_id, &limit],
        )
        .await?;
    rows.iter().map(audit_entry).collect()
}

const SUMMARY_SQL: &str = "SELECT b.name, b.board, b.hw_type, b.hw_version, b.quantity, b.subscription_plan,
    b.available_outputs, b.created_at, b.created_by,
    COALESCE((SELECT json_object_agg(status, n)::text FROM (SELECT status, count(*) AS n FROM devices d
        WHERE d.batch_id = b.id GROUP BY status) s), '{}')
    FROM batches b";

fn summary_from_row(r: &Row) -> Result<BatchSummary> {
    super::super::rows::summary(r)
}

const MAIL_COLUMNS: &str =
    "id, created_at, recipient, payload, status, attempts, next_attempt_at, sent_at,
    last_error, message_key, provider_answer";

fn message_from_row(r: &Row) -> Result<OutboxMessage> {
    super::super::rows::message(r)
}

async fn load_mail(c: &impl GenericClient, id: i64) -> Result<OutboxMessage> {
    let row = c
        .query_opt(
            &format!("SELECT {MAIL_COLUMNS} FROM outbox WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| RegistryError::Invalid(format!("no message {id} in the outbox")))?;
    message_from_row(&row)
}

/// A message key: 16 random bytes in hex, as SQLite's `lower(hex(randomblob(16)))`.
fn message_key() -> String {
    use rand::RngCore as _;
    let mut key = [0u8; 16];
    rand::rng().fill_bytes(&mut key);
    key.iter().map(|b| format!("{b:02x}")).collect()
}

async fn enqueue(c: &impl GenericClient, recipient: &str, content: &MailContent) -> Result<i64> {
    let payload =
        serde_json::to_string(content).map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let row = c
        .query_one(
            "INSERT INTO outbox (created_at, kind, recipient, payload, subject, message_key)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &now(),
                &content.template(),
                &recipient,
                &payload,
                &content.serial_number(),
                &message_key(),
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

async fn welcome_once(tx: &Transaction<'_>, device: &Device) -> Result<()> {
    let Some(email) = device.assigned_email.as_deref() else {
        return Ok(());
    };
    let sent_before: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE subject = $1 AND kind = 'welcome')",
            &[&device.serial_number],
        )
        .await?
        .try_get(0)?;
    if !sent_before {
        let content = MailContent::Welcome {
            serial_number: device.serial_number.clone(),
            name: device.assigned_name.clone(),
        };
        enqueue(tx, email, &content).await?;
    }
    Ok(())
}

const DEPLOY_COLUMNS: &str =
    "id, delivery, git_ref, commit_id, repository, pusher, state, received_at,
    started_at, finished_at, exit_code, detail, log, body_sha256";

fn run_from_row(r: &Row) -> Result<DeployRun> {
    super::super::rows::run(r)
}

async fn load_run(c: &impl GenericClient, id: i64) -> Result<DeployRun> {
    let row = c
        .query_opt(
            &format!("SELECT {DEPLOY_COLUMNS} FROM deploy_runs WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| RegistryError::Invalid(format!("no deploy run {id}")))?;
    run_from_row(&row)
}

/// What a change to one device did: nothing (no audit row), or a change to audit.
type Changed = bool;

impl PgStore {
    /// Runs one change to a device in a transaction, its row locked, with its audit row.
    async fn change<F>(&self, sn: &str, actor: &str, action: &str, apply: F) -> Result<Device>
    where
        F: for<'t> AsyncChange<'t>,
    {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = lock(&tx, sn).await?;
        if !apply.apply(&tx, &before).await? {
            return Ok(before);
        }
        let after = audit_change(&tx, actor, action, &before).await?;
        tx.commit().await?;
        Ok(after)
    }
}

/// One mail outcome inside the caller's transaction (see `Store::mail_record`).
async fn record_mail_outcome(tx: &Transaction<'_>, outcome: &MailOutcome) -> Result<OutboxMessage> {
    let id = outcome.id();
    let before = load_mail(tx, id).await?;
    let action = match outcome {
        MailOutcome::Sent { answer, .. } => {
            tx.execute(
                "UPDATE outbox SET status = 'sent', sent_at = $2, attempts = attempts + 1,
                   provider_answer = $3, next_attempt_at = NULL, leased_until = NULL, last_error = NULL WHERE id = $1",
                &[&id, &now(), &truncate(answer)],
            )
            .await?;
            "mail.sent"
        }
        MailOutcome::Dead { reason, .. } => {
            tx.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = $2, next_attempt_at = NULL, leased_until = NULL WHERE id = $1",
                &[&id, &truncate(reason)],
            )
            .await?;
            "mail.dead"
        }
        MailOutcome::Failed {
            error, retry_in, ..
        } => {
            let next_attempt_at = retry_stamp(*retry_in);
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, leased_until = NULL
                 WHERE id = $1 AND status = 'pending'",
                &[&id, &truncate(error), &next_attempt_at],
            )
            .await?;
            return load_mail(tx, id).await;
        }
    };
    let after = load_mail(tx, id).await?;
    append(
        tx,
        MAIL_ACTOR,
        action,
        Some(&subject(&after)),
        Some(&audit_state(&before)),
        Some(&audit_state(&after)),
    )
    .await?;
    Ok(after)
}

/// A change applied inside [`PgStore::change`]'s transaction.
#[async_trait]
trait AsyncChange<'t>: Send {
    async fn apply(self, tx: &Transaction<'t>, before: &Device) -> Result<Changed>;
}

struct SetStatus<'a> {
    sn: &'a str,
    to: Status,
}

#[async_trait]
impl<'t> AsyncChange<'t> for SetStatus<'_> {
    async fn apply(self, tx: &Transaction<'t>, before: &Device) -> Result<Changed> {
        let (sn, to) = (self.sn, self.to);
        if before.status == to {
            return Ok(false);
        }
        if !before.status.may_move_to(to) {
            return Err(RegistryError::IllegalTransition {
                sn: sn.to_owned(),
                from: before.status,
                to,
            });
        }
        let stamp = (to == Status::Provisioned).then(now);
        tx.execute(
            "UPDATE devices SET status = $2, provisioned_at = COALESCE(provisioned_at, $3) WHERE serial_number = $1",
            &[&sn, &to.as_str(), &stamp],
        )
        .await?;
        if to == Status::Active {
            welcome_once(tx, before).await?;
        }
        Ok(true)
    }
}

struct Assign<'a> {
    sn: &'a str,
    email: &'a str,
    name: Option<&'a str>,
}

#[async_trait]
impl<'t> AsyncChange<'t> for Assign<'_> {
    async fn apply(self, tx: &Transaction<'t>, before: &Device) -> Result<Changed> {
        if before.status == Status::Revoked {
            return Err(RegistryError::Revoked(self.sn.to_owned()));
        }
        tx.execute(
            "UPDATE devices SET assigned_email = $2, assigned_name = $3 WHERE serial_number = $1",
            &[&self.sn, &self.email, &self.name],
        )
        .await?;
        let invite = MailContent::DeviceInvite {
            serial_number: self.sn.to_owned(),
            name: self.name.map(str::to_owned),
        };
        enqueue(tx, self.email, &invite).await?;
        Ok(true)
    }
}

struct Flashed<'a> {
    sn: &'a str,
    mac: String,
    report: &'a FlashReport,
    actor: &'a str,
}

#[async_trait]
impl<'t> AsyncChange<'t> for Flashed<'_> {
    async fn apply(self, tx: &Transaction<'t>, before: &Device) -> Result<Changed> {
        let (sn, mac, report) = (self.sn, &self.mac, self.report);
        if before.status == Status::Revoked {
            return Err(RegistryError::Revoked(sn.to_owned()));
        }
        if let Some(previous) = before.mac.as_deref().filter(|m| m != mac)
            && !report.force
        {
            return Err(RegistryError::AlreadyFlashed {
                sn: sn.to_owned(),
                mac: previous.to_owned(),
            });
        }
        let other: Option<String> = tx
            .query_opt(
                "SELECT serial_number FROM devices WHERE mac = $1 AND serial_number != $2 FOR UPDATE",
                &[mac, &sn],
            )
            .await?
            .map(|r| r.get(0));
        if let Some(other) = other {
            if !report.force {
                return Err(RegistryError::MacInUse {
                    mac: mac.clone(),
                    other,
                    sn: sn.to_owned(),
                });
            }
            tx.execute(
                "UPDATE devices SET mac = NULL WHERE serial_number = $1",
                &[&other],
            )
            .await?;
            append(
                tx,
                self.actor,
                "device.mac_moved",
                Some(&other),
                Some(&json!({ "mac": mac })),
                Some(&json!({ "mac": null, "moved_to": sn })),
            )
            .await?;
        }
        let online = before.status == Status::Manufactured && before.last_seen.is_some();
        let status = if online {
            Status::Provisioned
        } else {
            before.status.max(Status::Flashed)
        };
        tx.execute(
            "UPDATE devices SET chip = $2, mac = $3, firmware_version = $4, station = $5, flashed_at = $6, status = $7,
             provisioned_at = CASE WHEN $8 THEN COALESCE(provisioned_at, last_seen) ELSE provisioned_at END,
             claimed_until = NULL WHERE serial_number = $1",
            &[&sn, &report.chip, mac, &report.firmware_version, &report.station, &now(), &status.as_str(), &online],
        )
        .await?;
        Ok(true)
    }
}

struct SetUsers<'a> {
    sn: &'a str,
    users: &'a DeviceUsers,
}

#[async_trait]
impl<'t> AsyncChange<'t> for SetUsers<'_> {
    async fn apply(self, tx: &Transaction<'t>, _before: &Device) -> Result<Changed> {
        let sn = self.sn;
        tx.execute("DELETE FROM device_users WHERE serial_number = $1", &[&sn])
            .await?;
        if let Some(owner) = &self.users.owner {
            tx.execute("INSERT INTO device_users VALUES ($1, $2, 1)", &[&sn, owner])
                .await?;
        }
        for user in &self.users.users_list {
            tx.execute(
                "INSERT INTO device_users VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
                &[&sn, user],
            )
            .await?;
        }
        Ok(true)
    }
}

/// Writes a claim of `sn` (row locked by the caller) and its audit row.
async fn take(
    tx: &Transaction<'_>,
    before: &Device,
    claimant: &str,
    lease: Duration,
    actor: &str,
) -> Result<Device> {
    tx.execute(
        "UPDATE devices SET claimed_by = $2, claimed_until = $3 WHERE serial_number = $1",
        &[&before.serial_number, &claimant, &lease_end(lease)],
    )
    .await?;
    audit_change(tx, actor, "device.claimed", before).await
}

#[async_trait]
impl Store for PgStore {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    async fn ping(&self) -> Result<()> {
        self.client().await?.execute("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn create_batch(&self, new: &NewBatch<'_>, actor: &str) -> Result<Batch> {
        check_new_batch(new)?;
        let board = new.board;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .query_one(
                "SELECT nextval(pg_get_serial_sequence('batches', 'id'))",
                &[],
            )
            .await?
            .try_get(0)?;
        let name = format!("B-{id:04}");
        let created_at = now();
        let quantity = i64::from(new.quantity);
        tx.execute(
            "INSERT INTO batches (id, name, board, hw_type, hw_version, quantity, subscription_plan, available_outputs, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[&id, &name, &board.name, &board.hw_type.as_str(), &board.hw_version.as_str(), &quantity, &new.subscription_plan, &new.available_outputs, &created_at, &actor],
        )
        .await?;
        let insert = tx
            .prepare(
                "INSERT INTO devices (serial_number, hw_type, hw_version, board, batch_id, status, subscription_plan, available_outputs, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'manufactured', $6, $7, $8) ON CONFLICT (serial_number) DO NOTHING",
            )
            .await?;
        let today = chrono::Utc::now().date_naive();
        for _ in 0..new.quantity {
            // A serial number drawn twice (here or by another instance) is drawn again.
            loop {
                let sn = serial::generate(board.hw_type, board.hw_version, today, &mut rand::rng())
                    .map_err(|e| RegistryError::Invalid(e.to_string()))?;
                let inserted = tx
                    .execute(
                        &insert,
                        &[
                            &sn.as_str(),
                            &board.hw_type.as_str(),
                            &board.hw_version.as_str(),
                            &board.name,
                            &id,
                            &new.subscription_plan,
                            &new.available_outputs,
                            &created_at,
                        ],
                    )
                    .await?;
                if inserted == 1 {
                    break;
                }
            }
        }
        let after = json!({
            "board": board.name, "quantity": new.quantity,
            "subscription_plan": new.subscription_plan, "available_outputs": new.available_outputs,
        });
        append(&tx, actor, "batch.create", Some(&name), None, Some(&after)).await?;
        tx.commit().await?;
        drop(client);
        self.batch(&name).await
    }

    async fn batch(&self, name: &str) -> Result<Batch> {
        let client = self.client().await?;
        let row = client
            .query_opt(&format!("{SUMMARY_SQL} WHERE b.name = $1"), &[&name])
            .await?
            .ok_or_else(|| RegistryError::NoBatch(name.to_owned()))?;
        let summary = summary_from_row(&row)?;
        let devices = client
            .query(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices d JOIN batches b ON b.id = d.batch_id WHERE b.name = $1 ORDER BY d.seq"),
                &[&name],
            )
            .await?
            .iter()
            .map(device_from_row)
            .collect::<Result<_>>()?;
        Ok(Batch { summary, devices })
    }

    async fn batches(&self, limit: u32, offset: u32) -> Result<Vec<BatchSummary>> {
        let (limit, offset) = (i64::from(limit.clamp(1, 1000)), i64::from(offset));
        self.client()
            .await?
            .query(
                &format!("{SUMMARY_SQL} ORDER BY b.id DESC LIMIT $1 OFFSET $2"),
                &[&limit, &offset],
            )
            .await?
            .iter()
            .map(summary_from_row)
            .collect()
    }

    async fn device(&self, sn: &str) -> Result<Device> {
        let client = self.client().await?;
        let mut device = load(&client, sn).await?;
        let query = AuditQuery {
            subject: Some(sn.to_owned()),
            limit: 1000,
            ..Default::default()
        };
        let mut history = audit_query(&client, &query).await?;
        history.reverse();
        device.history = Some(history);
        device.invite = client
            .query_opt(
                "SELECT id, status, attempts, sent_at, last_error FROM outbox
                 WHERE subject = $1 AND kind = 'device_invite' ORDER BY id DESC LIMIT 1",
                &[&sn],
            )
            .await?
            .map(|r| -> Result<InviteState> {
                let status: String = r.try_get(1)?;
                Ok(InviteState {
                    id: r.try_get(0)?,
                    status: status.parse().unwrap_or(MailStatus::Dead),
                    attempts: r.try_get(2)?,
                    sent_at: r.try_get(3)?,
                    last_error: r.try_get(4)?,
                })
            })
            .transpose()?;
        Ok(device)
    }

    async fn devices(&self, f: &DeviceFilter) -> Result<DevicePage> {
        let q = listing(f, Dialect::Postgres, false)?;
        let args: Vec<&(dyn ToSql + Sync)> =
            q.args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        let counted: i64 = client.query_one(&q.count_sql(), &args).await?.try_get(0)?;
        let (total, total_capped) = Listing::total(counted);
        let devices = client
            .query(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices d JOIN batches b ON b.id = d.batch_id {} ORDER BY {} LIMIT {} OFFSET {}",
                    q.filter, q.order, q.limit, q.offset
                ),
                &args,
            )
            .await?
            .iter()
            .map(device_from_row)
            .collect::<Result<_>>()?;
        Ok(DevicePage {
            devices,
            total,
            total_capped,
            limit: q.limit,
            offset: q.offset,
        })
    }

    async fn device_status(&self, sn: &str) -> Result<Option<Status>> {
        // The broker's hot path: a statement prepared once per pooled connection.
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT status FROM devices WHERE serial_number = $1")
            .await?;
        let row = client.query_opt(&statement, &[&sn]).await?;
        Ok(row.and_then(|r| r.get::<_, String>(0).parse().ok()))
    }

    async fn user_access(&self, user: &str, sn: &str) -> Result<UserAccess> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT 1 FROM device_users u JOIN devices d ON d.serial_number = u.serial_number
                 WHERE u.serial_number = $1 AND u.user_id = $2 AND d.status != 'revoked'",
            )
            .await?;
        let found = client.query_opt(&statement, &[&sn, &user]).await?;
        Ok(if found.is_some() {
            UserAccess::Allowed
        } else {
            UserAccess::NotAllowed
        })
    }

    async fn set_status(&self, sn: &str, to: Status, actor: &str) -> Result<Device> {
        self.change(sn, actor, "device.status", SetStatus { sn, to })
            .await
    }

    async fn assign(
        &self,
        sn: &str,
        email: &str,
        name: Option<&str>,
        actor: &str,
    ) -> Result<Device> {
        check_email(email)?;
        if let Some(name) = name {
            check_text("name", name, 200)?;
        }
        self.change(sn, actor, "device.assign", Assign { sn, email, name })
            .await
    }

    async fn failed(&self, sn: &str, report: &FailureReport, actor: &str) -> Result<Device> {
        check_text("station", &report.station, 128)?;
        check_text("step", &report.step, 32)?;
        let reason: String = report.reason.chars().take(500).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let device = load(&tx, sn).await?;
        let after = json!({ "station": report.station, "step": report.step, "reason": reason });
        append(&tx, actor, "device.failed", Some(sn), None, Some(&after)).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn failing_devices(
        &self,
        min_failures: u32,
        since: Option<&str>,
    ) -> Result<Vec<(String, String, i64, String)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT b.name, d.serial_number, f.n, l.after::json ->> 'reason'
                 FROM (SELECT subject, count(*) AS n, max(id) AS last_id FROM audit
                       WHERE action = 'device.failed' GROUP BY subject) f
                 JOIN audit l ON l.id = f.last_id
                 JOIN devices d ON d.serial_number = f.subject JOIN batches b ON b.id = d.batch_id
                 WHERE f.n >= $1 AND ($2::text IS NULL OR l.at > $2) AND d.status IN ('manufactured', 'flashed')
                 ORDER BY b.name, d.serial_number LIMIT 200",
                &[&i64::from(min_failures), &since],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
                ))
            })
            .collect()
    }

    async fn flashed(&self, sn: &str, report: &FlashReport, actor: &str) -> Result<Device> {
        let mac = check_mac(&report.mac)?;
        check_text("chip", &report.chip, 64)?;
        check_text("firmware_version", &report.firmware_version, 64)?;
        check_text("station", &report.station, 128)?;
        self.change(
            sn,
            actor,
            "device.flashed",
            Flashed {
                sn,
                mac,
                report,
                actor,
            },
        )
        .await
    }

    async fn record_test(
        &self,
        sn: &str,
        record: &TestRecord,
        actor: &str,
    ) -> Result<(StoredTest, bool)> {
        self.store_test_record(sn, record, actor).await
    }

    async fn test_records(&self, sn: &str) -> Result<Vec<StoredTest>> {
        self.stored_test_records(sn).await
    }

    async fn batch_test_records(&self, batch: &str) -> Result<Vec<StoredTest>> {
        self.stored_batch_records(batch).await
    }

    async fn set_users(&self, sn: &str, users: &DeviceUsers, actor: &str) -> Result<Device> {
        for id in users.owner.iter().chain(&users.users_list) {
            check_user_id(id)?;
        }
        self.change(sn, actor, "device.users", SetUsers { sn, users })
            .await
    }

    async fn stats(&self) -> Result<Stats> {
        let client = self.client().await?;
        let mut by_status = StatusCounts::default();
        for status in Status::ALL {
            by_status.add(status, 0);
        }
        for r in client
            .query("SELECT status, count(*) FROM devices GROUP BY status", &[])
            .await?
        {
            let status = r
                .try_get::<_, String>(0)?
                .parse::<Status>()
                .map_err(RegistryError::Invalid)?;
            by_status.add(status, r.try_get(1)?);
        }
        let mut by_board = std::collections::BTreeMap::new();
        for r in client
            .query("SELECT board, count(*) FROM devices GROUP BY board", &[])
            .await?
        {
            by_board.insert(r.try_get(0)?, r.try_get(1)?);
        }
        let total: i64 = client
            .query_one("SELECT count(*) FROM devices", &[])
            .await?
            .try_get(0)?;
        let today = format!("{}T00:00:00.000Z", chrono::Utc::now().date_naive());
        let mut provisioned_by_hour = vec![0i64; 24];
        for r in client
            .query(
                "SELECT CAST(substr(provisioned_at, 12, 2) AS BIGINT), count(*) FROM devices
                 WHERE provisioned_at >= $1 GROUP BY 1",
                &[&today],
            )
            .await?
        {
            let hour: i64 = r.try_get(0)?;
            if let Some(slot) = provisioned_by_hour.get_mut(hour as usize) {
                *slot = r.try_get(1)?;
            }
        }
        let provisioned_today = provisioned_by_hour.iter().sum();
        let recent = audit_query(
            &client,
            &AuditQuery {
                limit: 20,
                ..Default::default()
            },
        )
        .await?;
        Ok(Stats {
            total,
            by_status,
            by_board,
            provisioned_today,
            provisioned_by_hour,
            recent,
        })
    }

    async fn record_sightings(
        &self,
        sightings: &[Sighting],
        actor: &str,
    ) -> Result<Vec<DeviceEvent>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut events = Vec::with_capacity(sightings.len());
        for s in sightings {
            let before = match lock(&tx, &s.serial_number).await {
                Ok(d) => d,
                Err(RegistryError::NoDevice(_)) => continue,
                Err(e) => return Err(e),
            };
            let provisions = s.heartbeat && before.status == Status::Flashed;
            if provisions {
                tx.execute(
                    "UPDATE devices SET status = 'provisioned', provisioned_at = $2, last_seen = $2,
                     firmware_version = COALESCE($3, firmware_version) WHERE serial_number = $1",
                    &[&s.serial_number, &s.at, &s.firmware],
                )
                .await?;
            } else {
                tx.execute(
                    "UPDATE devices SET last_seen = $2 WHERE serial_number = $1",
                    &[&s.serial_number, &s.at],
                )
                .await?;
            }
            let after = load(&tx, &s.serial_number).await?;
            if provisions {
                append(
                    &tx,
                    actor,
                    "device.provisioned",
                    Some(&s.serial_number),
                    Some(&snapshot(&before)),
                    Some(&snapshot(&after)),
                )
                .await?;
            }
            events.push(DeviceEvent::of(
                if provisions { "provisioned" } else { "seen" },
                &after,
            ));
        }
        tx.commit().await?;
        Ok(events)
    }

    async fn claim_next(
        &self,
        batch: &str,
        claimant: &str,
        lease: Duration,
        actor: &str,
    ) -> Result<Device> {
        check_claimant(claimant)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let batch_id: i64 = tx
            .query_opt("SELECT id FROM batches WHERE name = $1", &[&batch])
            .await?
            .ok_or_else(|| RegistryError::NoBatch(batch.to_owned()))?
            .try_get(0)?;
        // A row another instance is claiming right now is skipped, not waited for.
        let next = tx
            .query_opt(
                "SELECT serial_number FROM devices WHERE batch_id = $1 AND status = 'manufactured'
                   AND (claimed_until IS NULL OR claimed_until < $2)
                 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[&batch_id, &now()],
            )
            .await?;
        let Some(next) = next else {
            let in_progress: i64 = tx
                .query_one(
                    "SELECT count(*) FROM devices WHERE batch_id = $1 AND status = 'manufactured'",
                    &[&batch_id],
                )
                .await?
                .try_get(0)?;
            return Err(RegistryError::BatchDone {
                batch: batch.to_owned(),
                in_progress,
            });
        };
        let sn: String = next.try_get(0)?;
        let before = load(&tx, &sn).await?;
        let device = take(&tx, &before, claimant, lease, actor).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn claim(
        &self,
        sn: &str,
        claimant: &str,
        lease: Duration,
        actor: &str,
    ) -> Result<Device> {
        check_claimant(claimant)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let device = lock(&tx, sn).await?;
        if device.status == Status::Revoked {
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
        let device = take(&tx, &device, claimant, lease, actor).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn release(&self, sn: &str, claimant: &str, actor: &str) -> Result<Device> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = lock(&tx, sn).await?;
        if before.claimed_until.is_none() || before.claimed_by.as_deref() != Some(claimant) {
            return Ok(before);
        }
        tx.execute(
            "UPDATE devices SET claimed_until = NULL WHERE serial_number = $1",
            &[&sn],
        )
        .await?;
        let after = audit_change(&tx, actor, "device.released", &before).await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        audit_query(&self.client().await?, query).await
    }

    async fn access_changes(
        &self,
        after: Option<i64>,
        settle: Duration,
        limit: u32,
    ) -> Result<AccessChanges> {
        let client = self.client().await?;
        let head: i64 = client
            .query_one("SELECT COALESCE(max(id), 0) FROM audit", &[])
            .await?
            .try_get(0)?;
        let Some(after) = after else {
            return Ok(AccessChanges {
                head,
                settled: head,
                entries: Vec::new(),
            });
        };
        let settled: i64 = client
            .query_one(
                "SELECT COALESCE(max(id), $1) FROM audit WHERE id > $1 AND at <= $2",
                &[&after, &crate::audit::settled_before(settle)],
            )
            .await?
            .try_get(0)?;
        let rows = client
            .query(
                "SELECT id, at, actor, action, subject, before, after FROM audit
                 WHERE id > $1 AND action IN ($2, $3) ORDER BY id LIMIT $4",
                &[
                    &after,
                    &ACCESS_ACTIONS[0],
                    &ACCESS_ACTIONS[1],
                    &i64::from(limit.max(1)),
                ],
            )
            .await?;
        let entries = rows.iter().map(audit_entry).collect::<Result<_>>()?;
        Ok(AccessChanges {
            head,
            settled,
            entries,
        })
    }

    async fn record(
        &self,
        actor: &str,
        action: &str,
        subject: Option<&str>,
        after: &Value,
    ) -> Result<()> {
        append(
            &self.client().await?,
            actor,
            action,
            subject,
            None,
            Some(after),
        )
        .await
    }

    async fn create_token(&self, name: &str, role: Role, actor: &str) -> Result<String> {
        check_name(name)?;
        let token = new_token();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                &[&name, &role.as_str(), &hash(&token), &now()],
            )
            .await?;
        if inserted == 0 {
            return Err(RegistryError::TokenExists(name.to_owned()));
        }
        append(
            &tx,
            actor,
            "token.create",
            Some(name),
            None,
            Some(&json!({ "name": name, "role": role })),
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    async fn authenticate_token(&self, token: &str) -> Result<Option<TokenPrincipal>> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT name, role FROM tokens WHERE hash = $1 AND revoked_at IS NULL",
                &[&hash(token)],
            )
            .await?;
        Ok(row.and_then(|r| {
            let (name, role): (String, String) = (r.get(0), r.get(1));
            role.parse().ok().map(|role| TokenPrincipal { name, role })
        }))
    }

    async fn token_active(&self, name: &str) -> Result<bool> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT 1 FROM tokens WHERE name = $1 AND revoked_at IS NULL",
                &[&name],
            )
            .await?
            .is_some())
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.client()
            .await?
            .query(
                "SELECT name, role, created_at, revoked_at FROM tokens ORDER BY id DESC",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(TokenInfo {
                    name: r.try_get(0)?,
                    role: r.try_get::<_, String>(1)?.parse().unwrap_or(Role::Viewer),
                    created_at: r.try_get(2)?,
                    revoked_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn revoke_token(&self, name: &str, actor: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                &[&name, &now()],
            )
            .await?;
        if changed == 0 {
            return Err(RegistryError::NoToken(name.to_owned()));
        }
        append(&tx, actor, "token.revoke", Some(name), None, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enqueue_mail(
        &self,
        recipient: &str,
        content: &MailContent,
        actor: &str,
    ) -> Result<OutboxMessage> {
        check_email(recipient)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = enqueue(&tx, recipient, content).await?;
        let queued = load_mail(&tx, id).await?;
        append(
            &tx,
            actor,
            "mail.queued",
            Some(&subject(&queued)),
            None,
            Some(&audit_state(&queued)),
        )
        .await?;
        tx.commit().await?;
        Ok(queued)
    }

    async fn mail_due(&self, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.client()
            .await?
            .query(
                &format!(
                    "SELECT {MAIL_COLUMNS} FROM outbox WHERE status = 'pending'
                       AND (next_attempt_at IS NULL OR next_attempt_at <= $1) ORDER BY id LIMIT $2"
                ),
                &[&now(), &(limit as i64)],
            )
            .await?
            .iter()
            .map(message_from_row)
            .collect()
    }

    async fn mail_lease(&self, limit: usize) -> Result<Vec<OutboxMessage>> {
        let until =
            stamp(chrono::Utc::now() + chrono::Duration::from_std(MAIL_LEASE).unwrap_or_default());
        let mut leased = self
            .client()
            .await?
            .query(
                &format!(
                    "UPDATE outbox SET leased_until = $3 WHERE id IN (
                        SELECT id FROM outbox WHERE status = 'pending'
                          AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
                        AND (leased_until IS NULL OR leased_until <= $1)
                        ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
                     RETURNING {MAIL_COLUMNS}"
                ),
                &[&now(), &(limit as i64), &until],
            )
            .await?
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>>>()?;
        leased.sort_by_key(|m| m.id);
        Ok(leased)
    }

    async fn mail_next_due(&self) -> Result<Option<String>> {
        Ok(self
            .client()
            .await?
            .query_one("SELECT min(COALESCE(next_attempt_at, created_at)) FROM outbox WHERE status = 'pending'", &[])
            .await?
            .try_get(0)?)
    }

    async fn outbox(&self, status: Option<MailStatus>, limit: usize) -> Result<Vec<OutboxMessage>> {
        let limit = limit.clamp(1, 10_000) as i64;
        self.client()
            .await?
            .query(
                &format!("SELECT {MAIL_COLUMNS} FROM outbox WHERE ($1::text IS NULL OR status = $1) ORDER BY id DESC LIMIT $2"),
                &[&status.map(MailStatus::as_str), &limit],
            )
            .await?
            .iter()
            .map(message_from_row)
            .collect()
    }

    async fn mail(&self, id: i64) -> Result<OutboxMessage> {
        load_mail(&self.client().await?, id).await
    }

    async fn mail_record(&self, outcomes: &[MailOutcome]) -> Result<Vec<OutboxMessage>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut after = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            after.push(record_mail_outcome(&tx, outcome).await?);
        }
        tx.commit().await?;
        Ok(after)
    }

    async fn mail_retry(&self, id: i64, actor: &str) -> Result<OutboxMessage> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = load_mail(&tx, id).await?;
        if before.status != MailStatus::Dead {
            return Err(RegistryError::Invalid(format!(
                "message {id} is {}; only a dead message can be retried",
                before.status
            )));
        }
        tx.execute("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = NULL, leased_until = NULL WHERE id = $1", &[&id])
            .await?;
        let after = load_mail(&tx, id).await?;
        append(
            &tx,
            actor,
            "mail.retry",
            Some(&subject(&after)),
            Some(&audit_state(&before)),
            Some(&audit_state(&after)),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn last_alert(&self, kind: AlertKind) -> Result<Option<String>> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT max(created_at) FROM outbox WHERE kind = 'alert' AND payload::json ->> 'alert' = $1",
                &[&kind.as_str()],
            )
            .await?
            .try_get(0)?)
    }

    async fn deploy_received(&self, push: &Push) -> Result<DeployReceipt> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "INSERT INTO deploy_runs (delivery, git_ref, commit_id, repository, pusher, state, received_at, body_sha256)
                     VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7) ON CONFLICT DO NOTHING RETURNING {DEPLOY_COLUMNS}"
                ),
                &[&push.delivery, &push.git_ref, &push.commit, &push.repository, &push.pusher, &now(), &push.body_sha256],
            )
            .await?;
        if let Some(row) = row {
            return run_from_row(&row).map(|run| DeployReceipt::Queued(Box::new(run)));
        }
        let same_delivery: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM deploy_runs WHERE delivery = $1 AND body_sha256 IS NOT DISTINCT FROM $2)",
                &[&push.delivery, &push.body_sha256],
            )
            .await?
            .try_get(0)?;
        Ok(if same_delivery {
            DeployReceipt::Duplicate
        } else {
            DeployReceipt::Replayed
        })
    }

    async fn deploy_started(&self, id: i64, log: &str) -> Result<DeployRun> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE deploy_runs SET state = 'running', started_at = $2, log = $3 WHERE id = $1",
                &[&id, &now(), &log],
            )
            .await?;
        load_run(&client, id).await
    }

    async fn deploy_finished(
        &self,
        id: i64,
        state: DeployState,
        exit_code: Option<i32>,
        detail: Option<&str>,
    ) -> Result<DeployRun> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE deploy_runs SET state = $2, finished_at = $3, exit_code = $4, detail = $5 WHERE id = $1",
            &[&id, &state.as_str(), &now(), &exit_code, &detail],
        )
        .await?;
        let run = load_run(&tx, id).await?;
        let after = json!({
            "commit": run.push.commit, "ref": run.push.git_ref, "delivery": run.push.delivery,
            "pusher": run.push.pusher, "result": state.as_str(), "exit_code": exit_code,
            "detail": detail, "log": run.log,
        });
        append(
            &tx,
            DEPLOY_ACTOR,
            "deploy.run",
            Some(&format!("deploy:{id}")),
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(run)
    }

    async fn deploys_interrupted(&self) -> Result<Vec<DeployRun>> {
        let open: Vec<i64> = self
            .client()
            .await?
            .query(
                "SELECT id FROM deploy_runs WHERE state IN ('queued', 'running')",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut runs = Vec::with_capacity(open.len());
        for id in open {
            runs.push(
                self.deploy_finished(
                    id,
                    DeployState::Failed,
                    None,
                    Some("interrupted: the backend stopped"),
                )
                .await?,
            );
        }
        Ok(runs)
    }

    async fn deploy_runs(&self, limit: usize) -> Result<Vec<DeployRun>> {
        let limit = limit.clamp(1, 1000) as i64;
        self.client()
            .await?
            .query(
                &format!("SELECT {DEPLOY_COLUMNS} FROM deploy_runs ORDER BY id DESC LIMIT $1"),
                &[&limit],
            )
            .await?
            .iter()
            .map(run_from_row)
            .collect()
    }

    async fn announce(&self, events: &[DeviceEvent]) -> Result<Delivery> {
        super::events::notify(&**self.client().await?, events).await?;
        Ok(Delivery::Shared)
    }

    async fn forward_events(
        &self,
        sink: broadcast::Sender<DeviceEvent>,
        stop: watch::Receiver<bool>,
    ) {
        super::events::forward(self.config.clone(), sink, stop).await;
    }
}
