//! Device events across instances: an instance that changes a device says so with `NOTIFY`
//! on one channel; every instance `LISTEN`s on its own connection and hands what it hears to
//! its long polls and event streams (its own announcements included, so each is heard once).

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{broadcast, watch};
use tokio_postgres::{AsyncMessage, GenericClient, NoTls};

use vesper_core::model::DeviceEvent;

use super::super::Result;

/// The channel of device events.
pub const CHANNEL: &str = "vesper_device_events";

/// A notification's payload must stay under PostgreSQL's 8000 bytes: events go in JSON arrays
/// of at most this many bytes.
const MAX_PAYLOAD: usize = 7000;

/// Announces `events` to every listening instance, in as few notifications as fit.
pub(super) async fn notify(client: &impl GenericClient, events: &[DeviceEvent]) -> Result<()> {
    for payload in payloads(events) {
        client
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await?;
    }
    Ok(())
}

/// JSON arrays of events, each under [`MAX_PAYLOAD`] bytes.
fn payloads(events: &[DeviceEvent]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 2;
    for event in events {
        let Ok(text) = serde_json::to_string(event) else {
            continue;
        };
        if !current.is_empty() && size + text.len() + 1 > MAX_PAYLOAD {
            out.push(format!("[{}]", current.join(",")));
            current.clear();
            size = 2;
        }
        size += text.len() + 1;
        current.push(text);
    }
    if !current.is_empty() {
        out.push(format!("[{}]", current.join(",")));
    }
    out
}

/// Listens until `stop`, reconnecting with backoff, and forwards every event heard to `sink`.
pub(super) async fn forward(
    config: tokio_postgres::Config,
    sink: broadcast::Sender<DeviceEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match listen(&config, &sink, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "device event listener lost its database connection")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One connection's worth of listening; `Ok` when stopped.
async fn listen(
    config: &tokio_postgres::Config,
    sink: &broadcast::Sender<DeviceEvent>,
    stop: &mut watch::Receiver<bool>,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANNEL}");
    let subscribe = client.batch_execute(&statement);
    // The connection must be polled for LISTEN to be answered.
    tokio::pin!(subscribe);
    loop {
        tokio::select! {
            done = &mut subscribe => {
                done?;
                tracing::info!("listening for device events of every instance");
                break;
            }
            message = messages.next() => match message {
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    match serde_json::from_str::<Vec<DeviceEvent>>(n.payload()) {
                        Ok(events) => {
                            for event in events {
                                let _ = sink.send(event);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable device event notification"),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vesper_core::model::Status;

    #[test]
    fn many_events_are_split_into_notifications_under_the_limit() {
        let event = DeviceEvent {
            kind: "seen".into(),
            serial_number: "PV-26A18-BC02R-X7KQA".into(),
            status: Status::Provisioned,
            last_seen: Some("2026-11-30T10:00:00.000Z".into()),
            provisioned_at: Some("2026-11-30T10:00:00.000Z".into()),
            firmware_version: Some("1.0.1".into()),
        };
        let events = vec![event; 512];
        let payloads = payloads(&events);
        assert!(payloads.len() > 1);
        let mut back = 0;
        for p in &payloads {
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            back += serde_json::from_str::<Vec<serde_json::Value>>(p)
                .unwrap()
                .len();
        }
        assert_eq!(back, 512);
    }
}
