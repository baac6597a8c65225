//! The outbox worker: sends due messages oldest first in rounds (a round's messages leased
//! together, sent at once over pooled connections, their outcomes recorded together in one
//! transaction). A row is marked sent only after its provider accepted it, so a crash in
//! between sends the round's messages once more with the same keys; nothing is lost.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;

use vesper_core::model::{MailOutcome, OutboxMessage};

use super::{Mailer, SendError, Templates};
use crate::{SharedState, stopped};

/// Most messages in a round: in flight at once, and recorded in one transaction.
pub const IN_FLIGHT: usize = 32;
/// Attempts before a message that keeps failing in passing is given up as dead (about a day of
/// backing off).
pub const MAX_ATTEMPTS: i64 = 30;
/// The first retry's delay, doubled per attempt up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// How often the outbox is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(1);

/// The delay before attempt `attempts + 1`: exponential, capped, with full jitter over its
/// upper half so that many failed messages do not come back at one instant.
pub fn backoff(attempts: i64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempts.clamp(0, 20));
    let ceiling = exp.min(BACKOFF_CAP);
    ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Runs until the stop flag is raised; messages in flight are finished first.
pub async fn run(
    state: SharedState,
    mailer: Arc<Mailer>,
    templates: Arc<Templates>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(provider = %mailer.describe(), "mail worker started");
    loop {
        if *stop.borrow() {
            return;
        }
        let due = state.store.mail_lease(IN_FLIGHT).await;
        match due {
            Ok(due) if !due.is_empty() => {
                let attempts = due.into_iter().map(|m| attempt(&mailer, &templates, m));
                let outcomes = futures_util::future::join_all(attempts).await;
                if let Err(e) = state.store.mail_record(&outcomes).await {
                    tracing::error!(error = %e, messages = outcomes.len(), "cannot record the round's outcomes; its messages stay pending");
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = state.mail_wake.notified() => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// One attempt at one message: what it came to, logged.
async fn attempt(mailer: &Mailer, templates: &Templates, message: OutboxMessage) -> MailOutcome {
    let (id, template) = (message.id, message.content.template());
    let sent = match templates.render(&message.content) {
        Ok(rendered) => mailer.send(&message, &rendered).await,
        Err(e) => Err(SendError::Permanent(e.to_string())),
    };
    match sent {
        Ok(answer) => {
            tracing::info!(id, template, answer = %answer, "mail sent");
            MailOutcome::Sent { id, answer }
        }
        Err(SendError::Permanent(reason)) => {
            tracing::warn!(id, template, reason = %reason, "mail refused for good; it is dead (vesper mail retry {id} revives it)");
            MailOutcome::Dead { id, reason }
        }
        Err(SendError::Temporary { reason, .. }) if message.attempts + 1 >= MAX_ATTEMPTS => {
            let reason = format!("gave up after {MAX_ATTEMPTS} attempts; the last: {reason}");
            tracing::warn!(id, template, reason = %reason, "mail given up");
            MailOutcome::Dead { id, reason }
        }
        Err(SendError::Temporary {
            reason,
            retry_after,
        }) => {
            let retry_in = retry_after.unwrap_or_else(|| backoff(message.attempts));
            tracing::warn!(id, template, reason = %reason, retry_in_s = retry_in.as_secs_f32(), "mail not sent; trying again later");
            MailOutcome::Failed {
                id,
                error: reason,
                retry_in,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for attempts in 0..40 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << attempts.min(20))
                .min(BACKOFF_CAP);
            for _ in 0..20 {
                let d = backoff(attempts);
                assert!(
                    d <= ceiling && d >= ceiling / 2,
                    "{attempts}: {d:?} against {ceiling:?}"
                );
            }
        }
        assert!(backoff(3) >= Duration::from_secs(8));
    }
}
