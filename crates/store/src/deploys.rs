//! Deploy runs of the push webhook: one row per delivery (a replayed delivery is refused by the
//! unique constraint), its state, and an audit row `deploy.run` when it ends.

use rusqlite::{Connection, OptionalExtension as _, Row, params};
use serde_json::json;

use vesper_core::model::{DeployReceipt, DeployRun, DeployState, Push};

use super::{Registry, RegistryError, Result, audit, now};

/// The actor of deploy audit rows.
pub const DEPLOY_ACTOR: &str = "deploy-hook";

const COLUMNS: &str = "id, delivery, git_ref, commit_id, repository, pusher, state, received_at,
    started_at, finished_at, exit_code, detail, log, body_sha256";

fn run_from_row(r: &Row) -> rusqlite::Result<DeployRun> {
    super::rows::run(r)
}

fn load(conn: &Connection, id: i64) -> Result<DeployRun> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM deploy_runs WHERE id = ?1"))?
        .query_row([id], run_from_row)
        .optional()?
        .ok_or_else(|| RegistryError::Invalid(format!("no deploy run {id}")))
}

impl Registry {
    /// Records a push as a queued run, unless its delivery or its signed body was seen before.
    pub fn deploy_received(&self, push: &Push) -> Result<DeployReceipt> {
        self.write(|conn| {
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO deploy_runs (delivery, git_ref, commit_id, repository, pusher, state, received_at, body_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7)",
                params![push.delivery, push.git_ref, push.commit, push.repository, push.pusher, now(), push.body_sha256],
            )?;
            if inserted == 1 {
                return load(conn, conn.last_insert_rowid()).map(|run| DeployReceipt::Queued(Box::new(run)));
            }
            let same_delivery: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM deploy_runs WHERE delivery = ?1 AND body_sha256 IS ?2)",
                params![push.delivery, push.body_sha256],
                |r| r.get(0),
            )?;
            Ok(if same_delivery { DeployReceipt::Duplicate } else { DeployReceipt::Replayed })
        })
    }

    /// The run starts now, writing its output to `log`.
    pub fn deploy_started(&self, id: i64, log: &str) -> Result<DeployRun> {
        self.write(|conn| {
            conn.execute(
                "UPDATE deploy_runs SET state = 'running', started_at = ?2, log = ?3 WHERE id = ?1",
                params![id, now(), log],
            )?;
            load(conn, id)
        })
    }

    /// The run ended (succeeded, failed or superseded), with its audit row `deploy.run`.
    pub fn deploy_finished(
        &self,
        id: i64,
        state: DeployState,
        exit_code: Option<i32>,
        detail: Option<&str>,
    ) -> Result<DeployRun> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE deploy_runs SET state = ?2, finished_at = ?3, exit_code = ?4, detail = ?5 WHERE id = ?1",
                params![id, state.as_str(), now(), exit_code, detail],
            )?;
            let run = load(&tx, id)?;
            let after = json!({
                "commit": run.push.commit,
                "ref": run.push.git_ref,
                "delivery": run.push.delivery,
                "pusher": run.push.pusher,
                "result": state.as_str(),
                "exit_code": exit_code,
                "detail": detail,
                "log": run.log,
            });
            audit::append(&tx, DEPLOY_ACTOR, "deploy.run", Some(&format!("deploy:{id}")), None, Some(&after))?;
            tx.commit()?;
            Ok(run)
        })
    }

    /// Runs left queued or running by a backend that stopped: failed, said so.
    pub fn deploys_interrupted(&self) -> Result<Vec<DeployRun>> {
        let open: Vec<i64> = self.read(|c| {
            let mut stmt =
                c.prepare("SELECT id FROM deploy_runs WHERE state IN ('queued', 'running')")?;
            let ids = stmt.query_map([], |r| r.get(0))?;
            Ok(ids.collect::<rusqlite::Result<_>>()?)
        })?;
        open.into_iter()
            .map(|id| {
                self.deploy_finished(
                    id,
                    DeployState::Failed,
                    None,
                    Some("interrupted: the backend stopped"),
                )
            })
            .collect()
    }

    /// The most recent runs, newest first.
    pub fn deploy_runs(&self, limit: usize) -> Result<Vec<DeployRun>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM deploy_runs ORDER BY id DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit.clamp(1, 1000) as i64], run_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
