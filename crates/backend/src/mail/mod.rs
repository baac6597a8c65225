//! E-mail from `vesper serve`: the outbox worker, the providers it sends through, the
//! templates it renders, and the alerts it queues. The outbox rows themselves are the
//! registry's (written in the same transaction as the change that asks for a message).

mod alerts;
mod provider;
mod templates;
mod worker;

pub use alerts::{AlertMonitor, run as run_alerts};
pub use provider::{Mailer, MailerError, SMTP_CONNECTIONS, SendError};
pub use templates::{Globals, Rendered, Templates};
pub use worker::{IN_FLIGHT, MAX_ATTEMPTS, backoff, run as run_worker};

use vesper_core::config::Config;

/// The templates' globals for a configuration.
pub fn globals(config: &Config) -> Globals {
    Globals {
        product: config.mail.product_name.clone(),
        host: std::env::var("HOSTNAME")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "this host".into()),
        interval: words(config.mail.alerts.interval),
    }
}

/// "hour", "30 minutes", "90 seconds".
fn words(interval: std::time::Duration) -> String {
    match interval.as_secs() {
        3600 => "hour".into(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}
