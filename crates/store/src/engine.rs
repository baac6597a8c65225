//! The store behind one trait: the backend asks [`Store`] and does not know which engine
//! answers (SQLite in the data folder, or PostgreSQL shared by several instances).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use vesper_core::model::{
    AccessChanges, AlertKind, AuditEntry, AuditQuery, Batch, BatchSummary, DeployReceipt,
    DeployRun, DeployState, Device, DeviceEvent, DeviceFilter, DevicePage, DeviceUsers,
    FailureReport, FlashReport, MailContent, MailOutcome, MailStatus, NewBatch, OutboxMessage,
    Push, Role, Sighting, Stats, Status, TokenInfo, TokenPrincipal, UserAccess,
};

use vesper_core::eol::record::{StoredTest, TestRecord};

use super::{Registry, RegistryError, Result};

/// Which engine holds the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        })
    }
}

/// Who hears an announced device event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Only this instance: the caller hands the event to its own listeners.
    Local,
    /// Every instance on the database, this one included, through the engine.
    Shared,
}

/// The one message of a one-outcome [`Store::mail_record`].
fn one(recorded: Result<Vec<OutboxMessage>>) -> Result<OutboxMessage> {
    recorded?
        .pop()
        .ok_or_else(|| crate::RegistryError::Invalid("no outcome recorded".into()))
}

/// Every registry operation the backend uses. Each change runs in one transaction with its
/// audit row on either engine; the conformance suite (`tests/conformance.rs`) holds both to the
/// same behaviour.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    fn engine(&self) -> Engine;
    async fn ping(&self) -> Result<()>;

    async fn create_batch(&self, new: &NewBatch<'_>, actor: &str) -> Result<Batch>;
    async fn batch(&self, name: &str) -> Result<Batch>;
    async fn batches(&self, limit: u32, offset: u32) -> Result<Vec<BatchSummary>>;

    async fn device(&self, sn: &str) -> Result<Device>;
    async fn devices(&self, filter: &DeviceFilter) -> Result<DevicePage>;
    async fn device_status(&self, sn: &str) -> Result<Option<Status>>;
    async fn user_access(&self, user: &str, sn: &str) -> Result<UserAccess>;
    async fn set_status(&self, sn: &str, to: Status, actor: &str) -> Result<Device>;
    async fn assign(
        &self,
        sn: &str,
        email: &str,
        name: Option<&str>,
        actor: &str,
    ) -> Result<Device>;
    async fn failed(&self, sn: &str, report: &FailureReport, actor: &str) -> Result<Device>;
    async fn failing_devices(
        &self,
        min_failures: u32,
        since: Option<&str>,
    ) -> Result<Vec<(String, String, i64, String)>>;
    async fn flashed(&self, sn: &str, report: &FlashReport, actor: &str) -> Result<Device>;
    /// Stores a unit's end-of-line test record; `true` when new, `false` when the same record
    /// (unit, station, start time) was stored before, which is returned.
    async fn record_test(
        &self,
        sn: &str,
        record: &TestRecord,
        actor: &str,
    ) -> Result<(StoredTest, bool)>;
    /// A unit's test records, oldest first.
    async fn test_records(&self, sn: &str) -> Result<Vec<StoredTest>>;
    /// Every test record of a batch's units, oldest first.
    async fn batch_test_records(&self, batch: &str) -> Result<Vec<StoredTest>>;
    async fn set_users(&self, sn: &str, users: &DeviceUsers, actor: &str) -> Result<Device>;
    async fn stats(&self) -> Result<Stats>;
    async fn record_sightings(
        &self,
        sightings: &[Sighting],
        actor: &str,
    ) -> Result<Vec<DeviceEvent>>;

    async fn claim_next(
        &self,
        batch: &str,
        claimant: &str,
        lease: Duration,
        actor: &str,
    ) -> Result<Device>;
    async fn claim(&self, sn: &str, claimant: &str, lease: Duration, actor: &str)
    -> Result<Device>;
    async fn release(&self, sn: &str, claimant: &str, actor: &str) -> Result<Device>;

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;
    /// Audit rows that take rights away from broker logins, after `after` (oldest first, at
    /// most `limit`), the newest audit id, and the newest id written over `settle` ago: what
    /// the broker plugin's control feed reads.
    async fn access_changes(
        &self,
        after: Option<i64>,
        settle: Duration,
        limit: u32,
    ) -> Result<AccessChanges>;
    async fn record(
        &self,
        actor: &str,
        action: &str,
        subject: Option<&str>,
        after: &Value,
    ) -> Result<()>;

    async fn create_token(&self, name: &str, role: Role, actor: &str) -> Result<String>;
    async fn authenticate_token(&self, token: &str) -> Result<Option<TokenPrincipal>>;
    async fn token_active(&self, name: &str) -> Result<bool>;
    async fn tokens(&self) -> Result<Vec<TokenInfo>>;
    async fn revoke_token(&self, name: &str, actor: &str) -> Result<()>;

    async fn enqueue_mail(
        &self,
        recipient: &str,
        content: &MailContent,
        actor: &str,
    ) -> Result<OutboxMessage>;
    /// Pending messages whose attempt is due, oldest first. On a shared database each message
    /// is handed to one instance at a time (a lease), so two workers never send it twice.
    async fn mail_due(&self, limit: usize) -> Result<Vec<OutboxMessage>>;
    /// Due messages handed to this worker for [`crate::MAIL_LEASE`]: on a shared database
    /// another instance's worker does not take them meanwhile.
    async fn mail_lease(&self, limit: usize) -> Result<Vec<OutboxMessage>>;
    async fn mail_next_due(&self) -> Result<Option<String>>;
    /// At start: leases a previous run of this backend held end now. Only where this backend
    /// is the only one (SQLite); on a shared database leases lapse after [`crate::MAIL_LEASE`].
    async fn release_mail_leases(&self) -> Result<usize> {
        Ok(0)
    }
    async fn outbox(&self, status: Option<MailStatus>, limit: usize) -> Result<Vec<OutboxMessage>>;
    async fn mail(&self, id: i64) -> Result<OutboxMessage>;
    /// Records what attempts came to, all in one transaction: `sent` and `dead` with an audit
    /// row each, a passing failure with its next attempt. The messages as they are now.
    async fn mail_record(&self, outcomes: &[MailOutcome]) -> Result<Vec<OutboxMessage>>;
    /// One message sent (see [`Store::mail_record`]).
    async fn mail_sent(&self, id: i64, provider_answer: &str) -> Result<OutboxMessage> {
        let answer = provider_answer.to_owned();
        one(self.mail_record(&[MailOutcome::Sent { id, answer }]).await)
    }
    /// One passing failure (see [`Store::mail_record`]).
    async fn mail_failed(&self, id: i64, error: &str, retry_in: Duration) -> Result<OutboxMessage> {
        let error = error.to_owned();
        one(self
            .mail_record(&[MailOutcome::Failed {
                id,
                error,
                retry_in,
            }])
            .await)
    }
    /// One permanent failure (see [`Store::mail_record`]).
    async fn mail_dead(&self, id: i64, reason: &str) -> Result<OutboxMessage> {
        let reason = reason.to_owned();
        one(self.mail_record(&[MailOutcome::Dead { id, reason }]).await)
    }
    async fn mail_retry(&self, id: i64, actor: &str) -> Result<OutboxMessage>;
    async fn last_alert(&self, kind: AlertKind) -> Result<Option<String>>;

    async fn deploy_received(&self, push: &Push) -> Result<DeployReceipt>;
    async fn deploy_started(&self, id: i64, log: &str) -> Result<DeployRun>;
    async fn deploy_finished(
        &self,
        id: i64,
        state: DeployState,
        exit_code: Option<i32>,
        detail: Option<&str>,
    ) -> Result<DeployRun>;
    async fn deploys_interrupted(&self) -> Result<Vec<DeployRun>>;
    async fn deploy_runs(&self, limit: usize) -> Result<Vec<DeployRun>>;

    /// Tells every instance about device changes. SQLite serves one instance: `Local`, and the
    /// caller hands the events to its own listeners.
    async fn announce(&self, _events: &[DeviceEvent]) -> Result<Delivery> {
        Ok(Delivery::Local)
    }

    /// Forwards the events every instance announces into `sink` until `stop`; returns at
    /// once on an engine that serves one instance.
    async fn forward_events(
        &self,
        _sink: broadcast::Sender<DeviceEvent>,
        _stop: watch::Receiver<bool>,
    ) {
    }
}

/// The SQLite registry as a [`Store`]: each call runs on the blocking pool, except the two
/// single-row reads of the broker's auth checks, which are faster where they are than a hop.
#[derive(Debug, Clone)]
pub struct SqliteStore(pub Arc<Registry>);

impl SqliteStore {
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(registry))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Registry) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let registry = self.0.clone();
        tokio::task::spawn_blocking(move || f(&registry))
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))?
    }
}

fn owned(text: &str) -> String {
    text.to_owned()
}

#[async_trait]
impl Store for SqliteStore {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }
    async fn ping(&self) -> Result<()> {
        self.blocking(|r| r.ping()).await
    }
    async fn create_batch(&self, new: &NewBatch<'_>, actor: &str) -> Result<Batch> {
        let (board, quantity, plan, outputs, actor) = (
            new.board.clone(),
            new.quantity,
            new.subscription_plan.clone(),
            new.available_outputs,
            owned(actor),
        );
        self.blocking(move |r| {
            let new = NewBatch {
                board: &board,
                quantity,
                subscription_plan: plan,
                available_outputs: outputs,
            };
            r.create_batch(&new, &actor)
        })
        .await
    }
    async fn batch(&self, name: &str) -> Result<Batch> {
        let name = owned(name);
        self.blocking(move |r| r.batch(&name)).await
    }
    async fn batches(&self, limit: u32, offset: u32) -> Result<Vec<BatchSummary>> {
        self.blocking(move |r| r.batches(limit, offset)).await
    }
    async fn device(&self, sn: &str) -> Result<Device> {
        let sn = owned(sn);
        self.blocking(move |r| r.device(&sn)).await
    }
    async fn devices(&self, filter: &DeviceFilter) -> Result<DevicePage> {
        let filter = filter.clone();
        self.blocking(move |r| r.devices(&filter)).await
    }
    async fn device_status(&self, sn: &str) -> Result<Option<Status>> {
        self.0.device_status(sn)
    }
    async fn user_access(&self, user: &str, sn: &str) -> Result<UserAccess> {
        self.0.user_access(user, sn)
    }
    async fn set_status(&self, sn: &str, to: Status, actor: &str) -> Result<Device> {
        let (sn, actor) = (owned(sn), owned(actor));
        self.blocking(move |r| r.set_status(&sn, to, &actor)).await
    }
    async fn assign(
        &self,
        sn: &str,
        email: &str,
        name: Option<&str>,
        actor: &str,
    ) -> Result<Device> {
        let (sn, email, name, actor) = (owned(sn), owned(email), name.map(owned), owned(actor));
        self.blocking(move |r| r.assign(&sn, &email, name.as_deref(), &actor))
            .await
    }
    async fn failed(&self, sn: &str, report: &FailureReport, actor: &str) -> Result<Device> {
        let (sn, report, actor) = (owned(sn), report.clone(), owned(actor));
        self.blocking(move |r| r.failed(&sn, &report, &actor)).await
    }
    async fn failing_devices(
        &self,
        min_failures: u32,
        since: Option<&str>,
    ) -> Result<Vec<(String, String, i64, String)>> {
        let since = since.map(owned);
        self.blocking(move |r| r.failing_devices(min_failures, since.as_deref()))
            .await
    }
    async fn flashed(&self, sn: &str, report: &FlashReport, actor: &str) -> Result<Device> {
        let (sn, report, actor) = (owned(sn), report.clone(), owned(actor));
        self.blocking(move |r| r.flashed(&sn, &report, &actor))
            .await
    }
    async fn record_test(
        &self,
        sn: &str,
        record: &TestRecord,
        actor: &str,
    ) -> Result<(StoredTest, bool)> {
        let (sn, record, actor) = (owned(sn), record.clone(), owned(actor));
        self.blocking(move |r| r.record_test(&sn, &record, &actor))
            .await
    }
    async fn test_records(&self, sn: &str) -> Result<Vec<StoredTest>> {
        let sn = owned(sn);
        self.blocking(move |r| r.test_records(&sn)).await
    }
    async fn batch_test_records(&self, batch: &str) -> Result<Vec<StoredTest>> {
        let batch = owned(batch);
        self.blocking(move |r| r.batch_test_records(&batch)).await
    }
    async fn set_users(&self, sn: &str, users: &DeviceUsers, actor: &str) -> Result<Device> {
        let (sn, users, actor) = (owned(sn), users.clone(), owned(actor));
        self.blocking(move |r| r.set_users(&sn, &users, &actor))
            .await
    }
    async fn stats(&self) -> Result<Stats> {
        self.blocking(|r| r.stats()).await
    }
    async fn record_sightings(
        &self,
        sightings: &[Sighting],
        actor: &str,
    ) -> Result<Vec<DeviceEvent>> {
        let (sightings, actor) = (sightings.to_vec(), owned(actor));
        self.blocking(move |r| r.record_sightings(&sightings, &actor))
            .await
    }
    async fn claim_next(
        &self,
        batch: &str,
        claimant: &str,
        lease: Duration,
        actor: &str,
    ) -> Result<Device> {
        let (batch, claimant, actor) = (owned(batch), owned(claimant), owned(actor));
        self.blocking(move |r| r.claim_next(&batch, &claimant, lease, &actor))
            .await
    }
    async fn claim(
        &self,
        sn: &str,
        claimant: &str,
        lease: Duration,
        actor: &str,
    ) -> Result<Device> {
        let (sn, claimant, actor) = (owned(sn), owned(claimant), owned(actor));
        self.blocking(move |r| r.claim(&sn, &claimant, lease, &actor))
            .await
    }
    async fn release(&self, sn: &str, claimant: &str, actor: &str) -> Result<Device> {
        let (sn, claimant, actor) = (owned(sn), owned(claimant), owned(actor));
        self.blocking(move |r| r.release(&sn, &claimant, &actor))
            .await
    }
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let query = query.clone();
        self.blocking(move |r| r.audit(&query)).await
    }
    async fn access_changes(
        &self,
        after: Option<i64>,
        settle: Duration,
        limit: u32,
    ) -> Result<AccessChanges> {
        self.blocking(move |r| r.access_changes(after, settle, limit))
            .await
    }
    async fn record(
        &self,
        actor: &str,
        action: &str,
        subject: Option<&str>,
        after: &Value,
    ) -> Result<()> {
        let (actor, action, subject, after) = (
            owned(actor),
            owned(action),
            subject.map(owned),
            after.clone(),
        );
        self.blocking(move |r| r.record(&actor, &action, subject.as_deref(), &after))
            .await
    }
    async fn create_token(&self, name: &str, role: Role, actor: &str) -> Result<String> {
        let (name, actor) = (owned(name), owned(actor));
        self.blocking(move |r| r.create_token(&name, role, &actor))
            .await
    }
    async fn authenticate_token(&self, token: &str) -> Result<Option<TokenPrincipal>> {
        let token = owned(token);
        self.blocking(move |r| r.authenticate_token(&token)).await
    }
    async fn token_active(&self, name: &str) -> Result<bool> {
        let name = owned(name);
        self.blocking(move |r| r.token_active(&name)).await
    }
    async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.blocking(|r| r.tokens()).await
    }
    async fn revoke_token(&self, name: &str, actor: &str) -> Result<()> {
        let (name, actor) = (owned(name), owned(actor));
        self.blocking(move |r| r.revoke_token(&name, &actor)).await
    }
    async fn enqueue_mail(
        &self,
        recipient: &str,
        content: &MailContent,
        actor: &str,
    ) -> Result<OutboxMessage> {
        let (recipient, content, actor) = (owned(recipient), content.clone(), owned(actor));
        self.blocking(move |r| r.enqueue_mail(&recipient, &content, &actor))
            .await
    }
    async fn mail_due(&self, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.blocking(move |r| r.mail_due(limit)).await
    }
    async fn mail_lease(&self, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.blocking(move |r| r.mail_lease(limit)).await
    }
    async fn release_mail_leases(&self) -> Result<usize> {
        self.blocking(|r| r.release_mail_leases()).await
    }
    async fn mail_next_due(&self) -> Result<Option<String>> {
        self.blocking(|r| r.mail_next_due()).await
    }
    async fn outbox(&self, status: Option<MailStatus>, limit: usize) -> Result<Vec<OutboxMessage>> {
        self.blocking(move |r| r.outbox(status, limit)).await
    }
    async fn mail(&self, id: i64) -> Result<OutboxMessage> {
        self.blocking(move |r| r.mail(id)).await
    }
    async fn mail_record(&self, outcomes: &[MailOutcome]) -> Result<Vec<OutboxMessage>> {
        let outcomes = outcomes.to_vec();
        self.blocking(move |r| r.mail_record(&outcomes)).await
    }
    async fn mail_retry(&self, id: i64, actor: &str) -> Result<OutboxMessage> {
        let actor = owned(actor);
        self.blocking(move |r| r.mail_retry(id, &actor)).await
    }
    async fn last_alert(&self, kind: AlertKind) -> Result<Option<String>> {
        self.blocking(move |r| r.last_alert(kind)).await
    }
    async fn deploy_received(&self, push: &Push) -> Result<DeployReceipt> {
        let push = push.clone();
        self.blocking(move |r| r.deploy_received(&push)).await
    }
    async fn deploy_started(&self, id: i64, log: &str) -> Result<DeployRun> {
        let log = owned(log);
        self.blocking(move |r| r.deploy_started(id, &log)).await
    }
    async fn deploy_finished(
        &self,
        id: i64,
        state: DeployState,
        exit_code: Option<i32>,
        detail: Option<&str>,
    ) -> Result<DeployRun> {
        let detail = detail.map(owned);
        self.blocking(move |r| r.deploy_finished(id, state, exit_code, detail.as_deref()))
            .await
    }
    async fn deploys_interrupted(&self) -> Result<Vec<DeployRun>> {
        self.blocking(|r| r.deploys_interrupted()).await
    }
    async fn deploy_runs(&self, limit: usize) -> Result<Vec<DeployRun>> {
        self.blocking(move |r| r.deploy_runs(limit)).await
    }
}
