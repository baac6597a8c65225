//! `vesper mail test|outbox|retry`: try the configured provider, read the outbox, revive a dead
//! message. The outbox commands open the registry directly (on the backend's host); the running
//! `vesper serve` sends what they queue within a second or two.

use std::path::Path;

use clap::Subcommand;

use vesper::model::{MailContent, MailStatus, OutboxMessage};
use vesper::server::mail::{self, Mailer, SendError, Templates};

use super::Outcome;
use super::serve::{DataDir, local_actor};

#[derive(Subcommand)]
pub enum MailCommand {
    /// Send one test message now through the configured provider and print its answer.
    #[command(after_help = "\
The provider is [mail] provider in the configuration: files (the default: .eml files in
DATA_DIR/mail), smtp or resend. Secrets come from mail.smtp.password_file or $VESPER_SMTP_PASSWORD,
mail.resend.api_key_file or $RESEND_API_KEY. Exit 1 when the provider refuses the message.")]
    Test {
        /// Recipient address.
        #[arg(long, value_name = "ADDR")]
        to: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List the outbox, newest first.
    Outbox {
        /// Only messages in this state: pending, sent or dead.
        #[arg(long, value_name = "STATUS", value_parser = parse_status)]
        status: Option<MailStatus>,
        /// Most messages listed.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Revive a dead message: pending again, sent by `vesper serve` within seconds.
    Retry {
        /// The message's id (the first column of `vesper mail outbox`).
        id: i64,
        #[command(flatten)]
        data: DataDir,
    },
}

fn parse_status(text: &str) -> Result<MailStatus, String> {
    text.parse()
}

pub fn run(cmd: MailCommand, config: Option<&Path>) -> anyhow::Result<Outcome> {
    match cmd {
        MailCommand::Test { to, data } => test(&to, &data, config),
        MailCommand::Outbox {
            status,
            limit,
            json,
            data,
        } => {
            let store = data.open_store(config)?;
            let messages = store.run(|s| s.outbox(status, limit))?;
            for m in &messages {
                if json {
                    println!("{}", serde_json::to_string(m)?);
                } else {
                    println!("{}", line(m));
                }
            }
            if messages.is_empty() && !json {
                println!(
                    "the outbox is empty{}",
                    status
                        .map(|s| format!(" of {s} messages"))
                        .unwrap_or_default()
                );
            }
            Ok(Outcome::Success)
        }
        MailCommand::Retry { id, data } => {
            let store = data.open_store(config)?;
            let actor = local_actor();
            let m = store.run(|s| s.mail_retry(id, &actor))?;
            println!(
                "message {} to {} is pending again; a running `vesper serve` sends it within seconds",
                m.id, m.recipient
            );
            Ok(Outcome::Success)
        }
    }
}

/// One table row: id, state, attempts, template, recipient, and the latest word on it.
fn line(m: &OutboxMessage) -> String {
    let word = match m.status {
        MailStatus::Sent => m.provider_answer.clone().unwrap_or_default(),
        MailStatus::Pending => match (&m.last_error, &m.next_attempt_at) {
            (Some(e), Some(at)) => format!("next try {at}: {e}"),
            _ => "due now".into(),
        },
        MailStatus::Dead => m.last_error.clone().unwrap_or_default(),
    };
    format!(
        "{:>6}  {}  {:<7} {:>2}x  {:<13} {:<32} {word}",
        m.id,
        m.created_at
            .get(..19)
            .unwrap_or(&m.created_at)
            .replace('T', " "),
        m.status,
        m.attempts,
        m.content.template(),
        m.recipient,
    )
}

fn test(to: &str, data: &DataDir, config: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = vesper::config::discover(config)?;
    let data_dir = data.resolve(Some(&config.path))?;
    // The SMTP transport's connection pool lives on a runtime from the start.
    let runtime = tokio::runtime::Runtime::new()?;
    let _inside = runtime.enter();
    let mailer = Mailer::new(&config.mail, &data_dir)?;
    let templates = Templates::new(mail::globals(&config));
    let content = MailContent::Test {
        provider: mailer.describe(),
    };
    let rendered = templates.render(&content)?;
    let message = OutboxMessage::unsaved(to, content);
    println!(
        "sending a test message to {to} through {} (Message-ID {})",
        mailer.describe(),
        mailer.message_id(&message)
    );
    match runtime.block_on(mailer.send(&message, &rendered)) {
        Ok(answer) => {
            println!("accepted: {answer}");
            Ok(Outcome::Success)
        }
        Err(SendError::Permanent(reason)) => {
            eprintln!("refused for good: {reason}");
            Ok(Outcome::Problems)
        }
        Err(SendError::Temporary {
            reason,
            retry_after,
        }) => {
            eprintln!(
                "not sent (a passing failure; the outbox would try again{}): {reason}",
                retry_after
                    .map(|d| format!(" after {} s", d.as_secs()))
                    .unwrap_or_default()
            );
            Ok(Outcome::Problems)
        }
    }
}
