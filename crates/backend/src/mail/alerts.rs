//! Alerts to `[mail.alerts] to`: a batch with boards that failed again and again, a heartbeat
//! listener away from the broker for minutes, a data folder's disk nearly full. Each kind goes
//! out at most once per `interval`; the outbox row is the record of when it last went.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vesper_core::model::{AlertKind, MailContent};

use crate::{SharedState, stopped};

/// The actor of alert rows in the audit log.
const ALERT_ACTOR: &str = "alerts";

/// What the monitor remembers between checks.
pub struct AlertMonitor {
    state: SharedState,
    data_dir: PathBuf,
    /// Since when the heartbeat listener has been disconnected.
    broker_down_since: Option<Instant>,
}

/// Checks every few seconds until the stop flag is raised.
pub async fn run(
    state: SharedState,
    data_dir: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if state.config.mail.alerts.to.is_empty() {
        return;
    }
    let period = (state.config.mail.alerts.broker_down_after / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut monitor = AlertMonitor {
        state,
        data_dir,
        broker_down_since: None,
    };
    loop {
        monitor.check().await;
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

impl AlertMonitor {
    /// One round of the three checks.
    pub async fn check(&mut self) {
        let alerts = [
            self.failed_boards().await,
            self.broker_down(),
            self.disk_full(),
        ];
        for (kind, summary, details) in alerts.into_iter().flatten() {
            self.raise(kind, summary, details).await;
        }
    }

    async fn failed_boards(&self) -> Option<(AlertKind, String, Vec<String>)> {
        let alerts = &self.state.config.mail.alerts;
        let min = alerts.failed_attempts;
        let since = self.last(AlertKind::FailedBoards).await;
        let failing = match self
            .state
            .store
            .failing_devices(min, since.as_deref())
            .await
        {
            Ok(failing) => failing,
            Err(e) => {
                tracing::error!(error = %e, "cannot look for failing boards");
                return None;
            }
        };
        if failing.is_empty() {
            return None;
        }
        let mut batches: Vec<&str> = failing.iter().map(|(b, ..)| b.as_str()).collect();
        batches.dedup();
        let summary = format!(
            "{} board(s) failed {min} times or more in batch {}",
            failing.len(),
            batches.join(", ")
        );
        let details = failing
            .iter()
            .map(|(batch, sn, n, reason)| format!("{batch} {sn}: {n} failures, the last: {reason}"))
            .collect();
        Some((AlertKind::FailedBoards, summary, details))
    }

    fn broker_down(&mut self) -> Option<(AlertKind, String, Vec<String>)> {
        let broker = self.state.config.serve.broker.as_ref()?;
        if self.state.broker_connected.load(Ordering::Relaxed) {
            self.broker_down_since = None;
            return None;
        }
        let since = *self.broker_down_since.get_or_insert_with(Instant::now);
        let after = self.state.config.mail.alerts.broker_down_after;
        (since.elapsed() >= after).then(|| {
            (
                AlertKind::BrokerDisconnected,
                format!("the heartbeat listener has been disconnected from the broker for over {} s", after.as_secs()),
                vec![
                    format!("broker: {}:{}", broker.host, broker.port),
                    "no board can be verified by its heartbeat until it reconnects; check that mosquitto runs and that the service account's login works".into(),
                ],
            )
        })
    }

    fn disk_full(&self) -> Option<(AlertKind, String, Vec<String>)> {
        let limit = self.state.config.mail.alerts.disk_percent;
        let total = fs4::total_space(&self.data_dir).ok()?;
        let free = fs4::available_space(&self.data_dir).ok()?;
        if total == 0 {
            return None;
        }
        let used = 100 - (free.saturating_mul(100) / total).min(100);
        (used > u64::from(limit)).then(|| {
            (
                AlertKind::DiskFull,
                format!("the data folder's disk is {used}% full"),
                vec![
                    format!(
                        "{}: {} MB free of {} MB",
                        self.data_dir.display(),
                        free / 1_000_000,
                        total / 1_000_000
                    ),
                    format!("alert threshold: {limit}% (mail.alerts.disk_percent)"),
                ],
            )
        })
    }

    /// When an alert of this kind last went out.
    async fn last(&self, kind: AlertKind) -> Option<String> {
        self.state.store.last_alert(kind).await.ok().flatten()
    }

    /// Queues the alert for every recipient, unless one of its kind went out within the interval.
    async fn raise(&self, kind: AlertKind, summary: String, details: Vec<String>) {
        let interval = self.state.config.mail.alerts.interval;
        if let Some(last) = self.last(kind).await {
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(1));
            if last > vesper_store::stamp(cutoff) {
                return;
            }
        }
        tracing::warn!(alert = kind.as_str(), %summary, "alert");
        let content = MailContent::Alert {
            alert: kind,
            summary,
            details,
        };
        for to in self.state.config.mail.alerts.to.clone() {
            let content = content.clone();
            if let Err(e) = self
                .state
                .store
                .enqueue_mail(&to, &content, ALERT_ACTOR)
                .await
            {
                tracing::error!(error = %e, "cannot queue an alert");
            }
        }
        self.state.mail_wake.notify_one();
    }
}
