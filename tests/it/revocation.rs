//! Revocation that cannot be lost (issue 25, finding 1): with the shipped broker config (the
//! plugin decides devices' topics locally) and a backend with no MQTT connection of its own (no
//! `[serve.broker]`, as `vesper init` writes it), 1,000 connected devices revoked at once can
//! none of them publish 5 s later: the plugin reads the backend's control feed (the audit rows
//! written with each revocation) and kicks them, and a device's standing is confirmed by that
//! feed, or asked on its own when the feed is stale.

use std::time::Duration;

use futures_util::StreamExt as _;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use serde_json::json;

use crate::backend_support::{App, device_password, metric};
use crate::broker::{Mosquitto, connect, free_port};

const DEVICES: usize = 1000;

/// What a QoS 1 publish came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    Accepted,
    Refused,
    Disconnected,
}

/// A connected device: its client, and what its event loop (polled by a task of its own, so the
/// keepalive goes on) reports about its publishes.
struct Device {
    sn: String,
    client: AsyncClient,
    outcomes: tokio::sync::mpsc::UnboundedReceiver<Published>,
}

impl Device {
    async fn connect(port: u16, sn: &str) -> Device {
        let (client, events) = connect(port, sn, sn, &device_password(sn))
            .await
            .unwrap_or_else(|e| panic!("{sn} logs in: {e}"));
        let (tx, outcomes) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(poll(events, tx));
        Device {
            sn: sn.to_owned(),
            client,
            outcomes,
        }
    }

    async fn publish(&mut self) -> Published {
        let topic = format!("vesper/{}/data", self.sn);
        let payload = r#"{"type":"heartbeat","fw":"1.0.0","uptime":1}"#;
        if self
            .client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .is_err()
        {
            return Published::Disconnected;
        }
        tokio::time::timeout(Duration::from_secs(5), self.outcomes.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or(Published::Disconnected)
    }
}

async fn poll(mut events: EventLoop, tx: tokio::sync::mpsc::UnboundedSender<Published>) {
    loop {
        let outcome = match events.poll().await {
            // MQTT 5: 0x00 and 0x10 (no matching subscribers) accept the message; 0x80 and up
            // (0x87 not authorized) refuse it.
            Ok(Event::Incoming(Packet::PubAck(ack)))
                if matches!(
                    ack.reason,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                ) =>
            {
                Published::Accepted
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => Published::Refused,
            Ok(Event::Incoming(Packet::Disconnect(_))) | Err(_) => {
                let _ = tx.send(Published::Disconnected);
                return;
            }
            Ok(_) => continue,
        };
        if tx.send(outcome).is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_devices_revoked_at_once_cannot_publish_five_seconds_later_without_any_kick() {
    let app = App::start().await; // no [serve.broker]: no command channel, no kick
    let port = free_port();
    let _broker = Mosquitto::shipped(port, app.auth_port());
    let (_, sns) = app.batch(DEVICES as u32).await;
    let mut devices: Vec<Device> = futures_util::stream::iter(sns.iter())
        .map(|sn| Device::connect(port, sn))
        .buffer_unordered(32)
        .collect()
        .await;
    // Before: they publish on their own data topics.
    for device in devices.iter_mut().take(10) {
        assert_eq!(device.publish().await, Published::Accepted);
    }

    // All revoked at once (32 requests in flight).
    revoke_all(&app, &sns).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let outcomes = futures_util::stream::iter(devices.iter_mut())
        .map(|device| device.publish())
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let accepted = outcomes
        .iter()
        .filter(|o| **o == Published::Accepted)
        .count();
    assert_eq!(
        accepted, 0,
        "{accepted} of {DEVICES} revoked devices still published"
    );
    app.stop().await;
}

/// The control feed kicks a revoked device within about a second with no `[serve.broker]`
/// (no `$CONTROL` message is ever published), and while it is fresh the devices still allowed
/// publish without one question to the backend.
#[tokio::test(flavor = "multi_thread")]
async fn the_control_feed_kicks_a_revoked_device_without_a_broker_connection() {
    let app = App::start().await; // no [serve.broker]
    let port = free_port();
    let _broker = Mosquitto::shipped(port, app.auth_port());
    let (_, sns) = app.batch(3).await;
    let mut devices = Vec::new();
    for sn in &sns {
        devices.push(Device::connect(port, sn).await);
    }
    // The feed has been read (twice a second) since the broker started: fresh.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = metric(
        &app.client,
        &app.auth,
        r#"vesper_auth_requests_total{route="acl"}"#,
    )
    .await;
    for device in devices.iter_mut() {
        for _ in 0..3 {
            assert_eq!(device.publish().await, Published::Accepted);
        }
    }
    assert_eq!(
        metric(
            &app.client,
            &app.auth,
            r#"vesper_auth_requests_total{route="acl"}"#
        )
        .await,
        asked,
        "the fresh feed confirmed the devices: no question per message"
    );

    let revoked_at = std::time::Instant::now();
    revoke_all(&app, &sns[..1]).await;
    let gone = tokio::time::timeout(Duration::from_secs(5), devices[0].outcomes.recv())
        .await
        .expect("the revoked device is disconnected within 5 s");
    assert_eq!(gone, Some(Published::Disconnected));
    assert!(
        revoked_at.elapsed() < Duration::from_secs(3),
        "kicked after {:?}",
        revoked_at.elapsed()
    );
    assert!(
        connect(port, &sns[0], &sns[0], &device_password(&sns[0]))
            .await
            .is_err(),
        "a revoked device cannot log in again"
    );
    for device in devices.iter_mut().skip(1) {
        assert_eq!(device.publish().await, Published::Accepted);
    }
    assert_eq!(
        metric(
            &app.client,
            &app.auth,
            "vesper_broker_commands_unsent_total"
        )
        .await,
        1,
        "no MQTT connection: the $CONTROL command was not sent; the feed carried it"
    );
    app.stop().await;
}

/// The backend's command channel queues without dropping (issue 25, finding 1b): 1,100 kicks
/// queued while the broker is away (the old queue held 1,024 and dropped the rest) all wait,
/// `/metrics` says how many, and they are handed over once the broker is back. Without
/// `[serve.broker]` they are counted as unsent.
#[tokio::test(flavor = "multi_thread")]
async fn kicks_queued_while_the_broker_is_away_wait_and_are_sent_when_it_returns() {
    const KICKS: usize = 1100;
    let port = free_port();
    let app = App::start_with(&format!(
        "[serve.broker]\nhost = \"127.0.0.1\"\nport = {port}\n"
    ))
    .await;
    let (_, sns) = app.batch(KICKS as u32).await;
    revoke_all(&app, &sns).await;
    let waiting = || metric(&app.client, &app.auth, "vesper_broker_commands_waiting");
    // All but the MQTT client's own queue (64) wait in the backend's.
    assert!(waiting().await >= KICKS as u64 - 64, "{}", waiting().await);
    let broker = Mosquitto::shipped(port, app.auth_port());
    let sent = || {
        broker
            .log()
            .lines()
            .filter(|l| {
                l.contains("Received PUBLISH from vesper-backend")
                    && l.contains("$CONTROL/vesper/v1")
            })
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while waiting().await > 0 || sent() < KICKS {
        assert!(
            std::time::Instant::now() < deadline,
            "{} wait, {} of {KICKS} reached the broker\n{}",
            waiting().await,
            sent(),
            broker
                .log()
                .lines()
                .filter(|l| !l.contains("PUBLISH"))
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sent(), KICKS, "each kick reached the broker once");
    app.stop().await;

    let app = App::start().await; // no [serve.broker]
    let (_, sns) = app.batch(3).await;
    revoke_all(&app, &sns).await;
    assert_eq!(
        metric(
            &app.client,
            &app.auth,
            "vesper_broker_commands_unsent_total"
        )
        .await,
        3
    );
    assert_eq!(
        metric(&app.client, &app.auth, "vesper_broker_commands_waiting").await,
        0
    );
    app.stop().await;
}

async fn revoke_all(app: &App, sns: &[String]) {
    let revoked = futures_util::stream::iter(sns.iter())
        .map(|sn| {
            let path = format!("/manufacturing/devices/{sn}/status");
            async move {
                app.post(&path, &app.admin, json!({ "status": "revoked" }))
                    .await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(revoked.iter().all(|r| r.status().is_success()));
}
