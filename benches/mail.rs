//! Benchmark: invitations from the outbox to a real SMTP server on loopback (aiosmtpd, the mail
//! tests' `tests/it/smtp_server.py`), against the customer's plan, Python sending each message
//! with `smtplib` (`benches/mail_smtplib.py`, run by `scripts/bench` on its own server).
//!
//! `MAIL_MESSAGES` (default 1,000) devices are assigned through the registry before the backend
//! starts (so the benchmark's writes do not compete with the worker): the outbox holds their
//! invitations. Then `vesper serve` starts with `provider = "smtp"` and its worker renders the
//! templates and delivers them in rounds (pooled connections, a round's outcomes committed in
//! one transaction). Timed from the backend's start to the last message recorded as sent, as
//! Python's inline `smtplib` is timed from its first message to its last. Not a timed test.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vesper::config::{MailProvider, Smtp, SmtpTls};
use vesper::model::{MailStatus, NewBatch};

#[path = "support/backend.rs"]
mod backend;

const MESSAGES: usize = 1_000;

fn messages() -> usize {
    std::env::var("MAIL_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MESSAGES)
}

fn python() -> String {
    std::env::var("VESPER_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into())
}

fn millis(a: &str, b: &str) -> f64 {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    (t(b) - t(a)).num_microseconds().unwrap() as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let n = messages();
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    let mut smtp = Command::new(python())
        .args(["tests/it/smtp_server.py", inbox.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the SMTP server (run ./scripts/test once: it makes the venv with aiosmtpd)");
    let mut line = String::new();
    std::io::BufReader::new(smtp.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .trim_start_matches("listening ")
        .parse()
        .unwrap();

    let mut config = backend::example_config(dir.path());
    config.mail.provider = MailProvider::Smtp(Smtp {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        user: None,
        password_file: None,
        ca_file: None,
    });
    config.mail.from = "Vesper Devices <devices@vesper.example>".into();
    let board = config.boards[1].clone();
    // The outbox is filled before the backend starts, so the benchmark's own writes do not
    // compete with the worker it measures: n assignments, each its committed row.
    let data = dir.path().join("data");
    {
        let registry = vesper::registry::open_store(None, &data).await.unwrap();
        let batch = registry
            .create_batch(
                &NewBatch {
                    board: &board,
                    quantity: n as u32,
                    subscription_plan: "standard".into(),
                    available_outputs: 8,
                },
                "bench",
            )
            .await
            .unwrap();
        for (i, device) in batch.devices.iter().enumerate() {
            let email = format!("customer{i}@example.com");
            registry
                .assign(&device.serial_number, &email, Some("Ada"), "bench")
                .await
                .unwrap();
        }
    }

    let start = Instant::now();
    let running = backend::start(config, data).await;
    let registry = running.state.store.clone();
    let rows = loop {
        let rows = registry.outbox(None, n).await.unwrap();
        if rows.iter().all(|m| m.status == MailStatus::Sent) {
            break rows;
        }
        assert!(
            !rows.iter().any(|m| m.status == MailStatus::Dead),
            "a message died: {:?}",
            rows.iter().find(|m| m.status == MailStatus::Dead)
        );
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "not all sent in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let total = start.elapsed();
    running.stop().await.unwrap();
    let received = std::fs::read_dir(&inbox)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
        })
        .count();
    let _ = smtp.kill();
    let _ = smtp.wait();
    assert_eq!(received, n, "the server has every message");

    let mut sent_at: Vec<&str> = rows.iter().map(|m| m.sent_at.as_deref().unwrap()).collect();
    sent_at.sort();
    println!("outbox -> SMTP (aiosmtpd on loopback, plain), {n} invitations, text + HTML:");
    println!(
        "  vesper serve's worker: {:.2} s from its start to the last recorded sent ({:.0} messages/s), first to last sent {:.2} s",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        millis(sent_at[0], sent_at[sent_at.len() - 1]) / 1000.0
    );
    println!(
        "  every outcome committed (synchronous=FULL) with its audit row, {} messages a round in one transaction, over {} connections",
        vesper::server::mail::IN_FLIGHT,
        vesper::server::mail::SMTP_CONNECTIONS
    );
}
