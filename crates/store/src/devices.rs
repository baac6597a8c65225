//! Devices: the record, its status state machine, and the queries the API and the broker use.

use rusqlite::{Connection, OptionalExtension as _, Row, params};
use serde_json::{Value, json};

use vesper_core::model::{
    AuditQuery, COUNT_CAP, Device, DeviceEvent, DeviceFilter, DevicePage, DeviceUsers,
    FailureReport, FlashReport, MailContent, Sighting, Stats, Status, StatusCounts, UserAccess,
    is_email_address,
};

use super::listing::{Dialect, Listing, listing};
use super::{Registry, RegistryError, Result, audit, now, outbox};

/// Device columns, in the order [`device_from_row`] reads them.
pub(super) const DEVICE_COLUMNS: &str = "d.serial_number, d.hw_type, d.hw_version, d.board, b.name, d.status,
    d.subscription_plan, d.available_outputs, d.created_at, d.assigned_email, d.assigned_name, d.chip, d.mac,
    d.firmware_version, d.flashed_at, d.provisioned_at, d.last_seen, d.station,
    (SELECT user_id FROM device_users u WHERE u.serial_number = d.serial_number AND u.is_owner = 1),
    (SELECT json_group_array(user_id) FROM (SELECT user_id FROM device_users u
        WHERE u.serial_number = d.serial_number AND u.is_owner = 0 ORDER BY user_id)),
    d.claimed_by, d.claimed_until";

pub(super) fn device_from_row(r: &Row) -> rusqlite::Result<Device> {
    super::rows::device(r)
}

pub(super) fn load(conn: &Connection, sn: &str) -> Result<Device> {
    conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices d JOIN batches b ON b.id = d.batch_id WHERE d.serial_number = ?1"
    ))?
    .query_row([sn], device_from_row)
    .optional()?
    .ok_or_else(|| RegistryError::NoDevice(sn.to_owned()))
}

pub(super) fn snapshot(device: &Device) -> Value {
    serde_json::to_value(device).unwrap_or(Value::Null)
}

/// Reloads a device just changed inside `conn`'s transaction and audits the change from
/// `before`; returns the device as it is now.
pub(super) fn audit_change(
    conn: &Connection,
    actor: &str,
    action: &str,
    before: &Device,
) -> Result<Device> {
    let sn = &before.serial_number;
    let after = load(conn, sn)?;
    audit::append(
        conn,
        actor,
        action,
        Some(sn),
        Some(&snapshot(before)),
        Some(&snapshot(&after)),
    )?;
    Ok(after)
}

/// A bare date `YYYY-MM-DD` as the start of that day, or the text as given.
pub(crate) fn date_bound(text: &str, end: bool) -> Result<String> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end {
            date.succ_opt().unwrap_or(date)
        } else {
            date
        };
        return Ok(format!("{day}T00:00:00.000Z"));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
        })
        .map_err(|_| {
            RegistryError::Invalid(format!(
                "`{text}` is not a date (YYYY-MM-DD) or an RFC 3339 time"
            ))
        })
}

pub(crate) fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Queues the welcome e-mail for an assigned device that becomes active, once per device.
fn welcome_once(tx: &Connection, device: &Device) -> Result<()> {
    let Some(email) = device.assigned_email.as_deref() else {
        return Ok(());
    };
    let sent_before: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE subject = ?1 AND kind = 'welcome')",
        [&device.serial_number],
        |r| r.get(0),
    )?;
    if !sent_before {
        let content = MailContent::Welcome {
            serial_number: device.serial_number.clone(),
            name: device.assigned_name.clone(),
        };
        outbox::enqueue(tx, email, &content)?;
    }
    Ok(())
}

pub(crate) fn check_email(email: &str) -> Result<()> {
    if is_email_address(email) {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "`{email}` is not an e-mail address"
        )))
    }
}

pub(crate) fn check_user_id(id: &str) -> Result<()> {
    let ok = (1..=128).contains(&id.len())
        && !id
            .chars()
            .any(|c| c.is_control() || c == '+' || c == '#' || c == '/');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "`{id}` is not a user id (1..128 characters, no control characters, +, # or /)"
        )))
    }
}

pub(crate) fn check_mac(mac: &str) -> Result<String> {
    let upper = mac.to_ascii_uppercase();
    let parts: Vec<&str> = upper.split(':').collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(upper)
    } else {
        Err(RegistryError::Invalid(format!(
            "`{mac}` is not a MAC address like 24:0A:C4:12:34:56"
        )))
    }
}

pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(RegistryError::Invalid(format!(
            "{field} must be 1..{max} characters without control characters"
        )));
    }
    Ok(())
}

impl Registry {
    /// One device with its history.
    pub fn device(&self, sn: &str) -> Result<Device> {
        self.read(|c| {
            let mut device = load(c, sn)?;
            let mut history = audit::query(
                c,
                &AuditQuery {
                    subject: Some(sn.to_owned()),
                    limit: 1000,
                    ..Default::default()
                },
            )?;
            history.reverse();
            device.history = Some(history);
            device.invite = outbox::invite_of(c, sn)?;
            Ok(device)
        })
    }

    /// A filtered page of devices, newest first.
    pub fn devices(&self, f: &DeviceFilter) -> Result<DevicePage> {
        let q = listing(f, Dialect::Sqlite, false)?;
        self.read(|c| {
            // A common text (past the cap in the index alone): read the list in order instead,
            // which fills a page within a few hundred rows.
            let common = match &q.probe {
                Some((sql, phrase)) => {
                    let n: i64 = c.prepare_cached(sql)?.query_row([phrase], |r| r.get(0))?;
                    n > COUNT_CAP
                }
                None => false,
            };
            let q = if common {
                listing(f, Dialect::Sqlite, true)?
            } else {
                q
            };
            let args = rusqlite::params_from_iter(q.args.iter());
            let (total, total_capped) = if common && q.only_text {
                (COUNT_CAP, true)
            } else {
                let counted: i64 = c
                    .prepare_cached(&q.count_sql())?
                    .query_row(args.clone(), |r| r.get(0))?;
                Listing::total(counted)
            };
            // Few matches from the index: fetch them and sort. Many: read in list order.
            let order = if q.indexed && !total_capped {
                &q.sorted_order
            } else {
                &q.order
            };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices d JOIN batches b ON b.id = d.batch_id {} ORDER BY {order} LIMIT {} OFFSET {}",
                q.filter, q.limit, q.offset
            ))?;
            let devices = stmt
                .query_map(args, device_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(DevicePage {
                devices,
                total,
                total_capped,
                limit: q.limit,
                offset: q.offset,
            })
        })
    }

    /// Moves a device along its state machine; illegal moves are errors, a move to the current
    /// state is a no-op.
    pub fn set_status(&self, sn: &str, to: Status, actor: &str) -> Result<Device> {
        self.change(sn, actor, "device.status", |tx, before| {
            if before.status == to {
                return Ok(false);
            }
            if !before.status.may_move_to(to) {
                return Err(RegistryError::IllegalTransition { sn: sn.to_owned(), from: before.status, to });
            }
            let stamp = (to == Status::Provisioned).then(now);
            tx.execute(
                "UPDATE devices SET status = ?2, provisioned_at = COALESCE(provisioned_at, ?3) WHERE serial_number = ?1",
                params![sn, to.as_str(), stamp],
            )?;
            if to == Status::Active {
                welcome_once(tx, before)?;
            }
            Ok(true)
        })
    }

    /// Records the customer a device is meant for, and queues the invitation e-mail.
    pub fn assign(&self, sn: &str, email: &str, name: Option<&str>, actor: &str) -> Result<Device> {
        check_email(email)?;
        if let Some(name) = name {
            check_text("name", name, 200)?;
        }
        self.change(sn, actor, "device.assign", |tx, before| {
            if before.status == Status::Revoked {
                return Err(RegistryError::Revoked(sn.to_owned()));
            }
            tx.execute(
                "UPDATE devices SET assigned_email = ?2, assigned_name = ?3 WHERE serial_number = ?1",
                params![sn, email, name],
            )?;
            outbox::enqueue(
                tx,
                email,
                &MailContent::DeviceInvite {
                    serial_number: sn.to_owned(),
                    name: name.map(str::to_owned),
                },
            )?;
            Ok(true)
        })
    }

    /// Records a failed flash or verification of a device (an audit row `device.failed`); the
    /// device keeps its status.
    pub fn failed(&self, sn: &str, report: &FailureReport, actor: &str) -> Result<Device> {
        check_text("station", &report.station, 128)?;
        check_text("step", &report.step, 32)?;
        let reason: String = report.reason.chars().take(500).collect();
        self.write(|conn| {
            let tx = conn.transaction()?;
            let device = load(&tx, sn)?;
            let after = json!({ "station": report.station, "step": report.step, "reason": reason });
            audit::append(&tx, actor, "device.failed", Some(sn), None, Some(&after))?;
            tx.commit()?;
            Ok(device)
        })
    }

    /// Devices not yet provisioned with at least `min_failures` failures, the latest after
    /// `since`: `(batch, serial number, failures, last reason)`, by batch.
    pub fn failing_devices(
        &self,
        min_failures: u32,
        since: Option<&str>,
    ) -> Result<Vec<(String, String, i64, String)>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT b.name, d.serial_number, f.n, json_extract(l.after, '$.reason')
                 FROM (SELECT subject, count(*) AS n, max(id) AS last_id FROM audit
                       WHERE action = 'device.failed' GROUP BY subject) f
                 JOIN audit l ON l.id = f.last_id
                 JOIN devices d ON d.serial_number = f.subject JOIN batches b ON b.id = d.batch_id
                 WHERE f.n >= ?1 AND (?2 IS NULL OR l.at > ?2) AND d.status IN ('manufactured', 'flashed')
                 ORDER BY b.name, d.serial_number LIMIT 200",
            )?;
            let rows = stmt.query_map(params![min_failures, since], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, Option<String>>(3)?.unwrap_or_default()))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Records a flash reported by a station: chip, MAC, firmware; `manufactured` becomes `flashed`.
    pub fn flashed(&self, sn: &str, report: &FlashReport, actor: &str) -> Result<Device> {
        let mac = check_mac(&report.mac)?;
        check_text("chip", &report.chip, 64)?;
        check_text("firmware_version", &report.firmware_version, 64)?;
        check_text("station", &report.station, 128)?;
        self.change(sn, actor, "device.flashed", |tx, before| {
            if before.status == Status::Revoked {
                return Err(RegistryError::Revoked(sn.to_owned()));
            }
            // One identity, one board: putting it on a second board must be meant.
            if let Some(previous) = before.mac.as_deref().filter(|m| *m != mac)
                && !report.force
            {
                return Err(RegistryError::AlreadyFlashed { sn: sn.to_owned(), mac: previous.to_owned() });
            }
            let other: Option<String> = tx
                .query_row("SELECT serial_number FROM devices WHERE mac = ?1 AND serial_number != ?2", params![mac, sn], |r| r.get(0))
                .optional()?;
            if let Some(other) = other {
                if !report.force {
                    return Err(RegistryError::MacInUse { mac: mac.clone(), other, sn: sn.to_owned() });
                }
                tx.execute("UPDATE devices SET mac = NULL WHERE serial_number = ?1", [&other])?;
                audit::append(tx, actor, "device.mac_moved", Some(&other), Some(&json!({ "mac": mac })), Some(&json!({ "mac": null, "moved_to": sn })))?;
            }
            // A board can boot and reach the broker before its station's report arrives: its
            // first message already proved it online, so it is provisioned right away.
            let online = before.status == Status::Manufactured && before.last_seen.is_some();
            let status = if online { Status::Provisioned } else { before.status.max(Status::Flashed) };
            tx.execute(
                "UPDATE devices SET chip = ?2, mac = ?3, firmware_version = ?4, station = ?5, flashed_at = ?6, status = ?7,
                 provisioned_at = CASE WHEN ?8 THEN COALESCE(provisioned_at, last_seen) ELSE provisioned_at END,
                 claimed_until = NULL WHERE serial_number = ?1",
                params![sn, report.chip, mac, report.firmware_version, report.station, now(), status.as_str(), online],
            )?;
            Ok(true)
        })
    }

    /// Sets who may use a device over MQTT (the phone app's `owner` and `users_list`).
    pub fn set_users(&self, sn: &str, users: &DeviceUsers, actor: &str) -> Result<Device> {
        for id in users.owner.iter().chain(&users.users_list) {
            check_user_id(id)?;
        }
        self.change(sn, actor, "device.users", |tx, _| {
            tx.execute("DELETE FROM device_users WHERE serial_number = ?1", [sn])?;
            if let Some(owner) = &users.owner {
                tx.execute(
                    "INSERT INTO device_users VALUES (?1, ?2, 1)",
                    params![sn, owner],
                )?;
            }
            for user in &users.users_list {
                tx.execute(
                    "INSERT OR IGNORE INTO device_users VALUES (?1, ?2, 0)",
                    params![sn, user],
                )?;
            }
            Ok(true)
        })
    }

    /// Runs one change to a device in a transaction with its audit row (before and after).
    /// `apply` returns whether it changed anything; no change, no audit row.
    fn change(
        &self,
        sn: &str,
        actor: &str,
        action: &str,
        apply: impl FnOnce(&rusqlite::Transaction, &Device) -> Result<bool>,
    ) -> Result<Device> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            let before = load(&tx, sn)?;
            if !apply(&tx, &before)? {
                return Ok(before);
            }
            let after = audit_change(&tx, actor, action, &before)?;
            tx.commit()?;
            Ok(after)
        })
    }

    /// The status of a device, for MQTT logins; `None` if it does not exist.
    pub fn device_status(&self, sn: &str) -> Result<Option<Status>> {
        self.read(|c| {
            let status: Option<String> = c
                .prepare_cached("SELECT status FROM devices WHERE serial_number = ?1")?
                .query_row([sn], |r| r.get(0))
                .optional()?;
            Ok(status.and_then(|s| s.parse().ok()))
        })
    }

    /// Whether `user` is the owner or a user of a device that is not revoked.
    pub fn user_access(&self, user: &str, sn: &str) -> Result<UserAccess> {
        self.read(|c| {
            let found: Option<i64> = c
                .prepare_cached(
                    "SELECT 1 FROM device_users u JOIN devices d ON d.serial_number = u.serial_number
                     WHERE u.serial_number = ?1 AND u.user_id = ?2 AND d.status != 'revoked'",
                )?
                .query_row(params![sn, user], |r| r.get(0))
                .optional()?;
            Ok(if found.is_some() { UserAccess::Allowed } else { UserAccess::NotAllowed })
        })
    }

    /// Dashboard figures: counts by status and board, today's provisioning, recent activity.
    pub fn stats(&self) -> Result<Stats> {
        self.read(|c| {
            let counts = |sql: &str| -> Result<std::collections::BTreeMap<String, i64>> {
                let mut stmt = c.prepare_cached(sql)?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            };
            let mut by_status = StatusCounts::default();
            for status in Status::ALL {
                by_status.add(status, 0);
            }
            for (status, n) in counts("SELECT status, count(*) FROM devices GROUP BY status")? {
                let status = status.parse::<Status>().map_err(RegistryError::Invalid)?;
                by_status.add(status, n);
            }
            let by_board =
                counts("SELECT board, count(*) FROM devices GROUP BY board ORDER BY board")?;
            let total = c.query_row("SELECT count(*) FROM devices", [], |r| r.get(0))?;
            let today = format!("{}T00:00:00.000Z", chrono::Utc::now().date_naive());
            let mut provisioned_by_hour = vec![0i64; 24];
            let mut stmt = c.prepare_cached(
                "SELECT CAST(substr(provisioned_at, 12, 2) AS INTEGER), count(*) FROM devices
                 WHERE provisioned_at >= ?1 GROUP BY 1",
            )?;
            for row in
                stmt.query_map([today], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
            {
                let (hour, n) = row?;
                if let Some(slot) = provisioned_by_hour.get_mut(hour as usize) {
                    *slot = n;
                }
            }
            let provisioned_today = provisioned_by_hour.iter().sum();
            let recent = audit::query(
                c,
                &AuditQuery {
                    limit: 20,
                    ..Default::default()
                },
            )?;
            Ok(Stats {
                total,
                by_status,
                by_board,
                provisioned_today,
                provisioned_by_hour,
                recent,
            })
        })
    }
}

impl Registry {
    /// Applies a batch of sightings in one transaction: the first heartbeat of a `flashed`
    /// device moves it to `provisioned` (with an audit row by `actor`); every sighting stamps
    /// `last_seen`. Unknown devices are skipped.
    pub fn record_sightings(
        &self,
        sightings: &[Sighting],
        actor: &str,
    ) -> Result<Vec<DeviceEvent>> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            let mut events = Vec::with_capacity(sightings.len());
            for s in sightings {
                let before = match load(&tx, &s.serial_number) {
                    Ok(d) => d,
                    Err(RegistryError::NoDevice(_)) => continue,
                    Err(e) => return Err(e),
                };
                let provisions = s.heartbeat && before.status == Status::Flashed;
                if provisions {
                    tx.prepare_cached(
                        "UPDATE devices SET status = 'provisioned', provisioned_at = ?2, last_seen = ?2,
                         firmware_version = COALESCE(?3, firmware_version) WHERE serial_number = ?1",
                    )?
                    .execute(params![s.serial_number, s.at, s.firmware])?;
                } else {
                    tx.prepare_cached("UPDATE devices SET last_seen = ?2 WHERE serial_number = ?1")?
                        .execute(params![s.serial_number, s.at])?;
                }
                let after = load(&tx, &s.serial_number)?;
                if provisions {
                    audit::append(&tx, actor, "device.provisioned", Some(&s.serial_number), Some(&snapshot(&before)), Some(&snapshot(&after)))?;
                }
                events.push(DeviceEvent::of(if provisions { "provisioned" } else { "seen" }, &after));
            }
            tx.commit()?;
            Ok(events)
        })
    }
}
