//! The broker path against a hostile device, through the real parts: Debian's mosquitto with the
//! project's plugin (the shipped config where it matters), a real `vesper serve`, and MQTT 5
//! clients. Each behaviour here was broken before the hardening (issue 11).

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{Event, EventLoop};
use serde_json::json;

use crate::backend_support::{App, SERVICE, device_password, service_password};
use crate::broker::{
    backend_and_broker, backend_and_shipped_broker, connect, flashed, health, listener_connected,
    publish, received, subscribe,
};

/// Polls the connection for `wait`; `true` if the broker ended it (a DISCONNECT or an error).
async fn cut_off_within(eventloop: &mut EventLoop, wait: Duration) -> bool {
    tokio::time::timeout(wait, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Disconnect(_))) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn status_of(app: &App, sn: &str) -> String {
    let d: serde_json::Value = app
        .get(&format!("/manufacturing/devices/{sn}"), &app.viewer)
        .await
        .json()
        .await
        .unwrap();
    d["status"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_cannot_take_another_devices_or_the_listeners_session() {
    let (app, mut broker) = backend_and_shipped_broker().await;
    let (_, sns) = app.batch(2).await;
    let (a, b) = (&sns[0], &sns[1]);
    listener_connected(&app).await;
    let (bc, mut bl) = connect(broker.port, b, b, &device_password(b))
        .await
        .expect("B connects with its own client id");

    // A, with its own valid password, tries B's session and the backend's listener's session.
    for stolen in [
        b.clone(),
        format!("{SERVICE}-heartbeats"),
        SERVICE.to_owned(),
    ] {
        let attempt = connect(broker.port, &stolen, a, &device_password(a)).await;
        assert!(
            attempt.as_ref().is_err_and(|e| e.starts_with("refused")),
            "A took client id {stolen}: {:?}",
            attempt.map(|_| ())
        );
    }
    assert!(
        !cut_off_within(&mut bl, Duration::from_millis(500)).await,
        "B stays connected"
    );
    assert!(matches!(
        publish(&bc, &mut bl, &format!("vesper/{b}/status"), "{}").await,
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
    ));
    // The listener was not knocked off either.
    assert_eq!(health(&app).await["broker"], "connected");
    // A with its own id (and a suffix) is fine.
    connect(broker.port, &format!("{a}-ota"), a, &device_password(a))
        .await
        .expect("SN-suffix is A's own");
    assert!(broker.running());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_account_reads_everything_but_cannot_command_a_device() {
    let (app, broker) = backend_and_shipped_broker().await;
    let (_, sns) = app.batch(1).await;
    let a = &sns[0];
    let (dc, mut dl) = connect(broker.port, a, a, &device_password(a))
        .await
        .unwrap();
    assert!(subscribe(&dc, &mut dl, &format!("vesper/{a}/control")).await);
    let (sc, mut sl) = connect(
        broker.port,
        &format!("{SERVICE}-ops"),
        SERVICE,
        &service_password(),
    )
    .await
    .expect("the service account logs in");
    assert!(subscribe(&sc, &mut sl, "vesper/+/data").await);
    assert!(subscribe(&sc, &mut sl, "$share/ops/vesper/+/status").await);
    assert!(
        !subscribe(&sc, &mut sl, "#").await,
        "no superuser: # is refused"
    );
    assert!(!subscribe(&sc, &mut sl, "$SYS/#").await);
    assert_eq!(
        publish(
            &sc,
            &mut sl,
            &format!("vesper/{a}/control"),
            r#"{"cmd":"reboot"}"#
        )
        .await,
        PubAckReason::NotAuthorized
    );
    let got = received(&mut dl, Duration::from_secs(1)).await;
    assert!(got.is_empty(), "the device received {got:?}");
    // It still reads device data.
    publish(&dc, &mut dl, &format!("vesper/{a}/data"), r#"{"t":1}"#).await;
    let got = received(&mut sl, Duration::from_secs(2)).await;
    assert!(
        got.iter().any(|(t, _)| *t == format!("vesper/{a}/data")),
        "{got:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_device_is_cut_off_within_a_second() {
    // Caches of 60 s, as shipped: without the kick, the device would keep its grants a minute.
    let (app, broker) = backend_and_shipped_broker().await;
    let (_, sns) = app.batch(2).await;
    let (a, b) = (&sns[0], &sns[1]);
    listener_connected(&app).await;
    let (watcher, mut wl) = connect(
        broker.port,
        &format!("{SERVICE}-watcher"),
        SERVICE,
        &service_password(),
    )
    .await
    .unwrap();
    assert!(subscribe(&watcher, &mut wl, "vesper/+/data").await);
    let (ac, mut al) = connect(broker.port, a, a, &device_password(a))
        .await
        .unwrap();
    publish(&ac, &mut al, &format!("vesper/{a}/data"), r#"{"n":1}"#).await;
    let before = received(&mut wl, Duration::from_millis(500)).await;
    assert_eq!(before.len(), 1, "the watcher sees A before: {before:?}");

    let revoked_at = Instant::now();
    let r = app
        .post(
            &format!("/manufacturing/devices/{a}/status"),
            &app.admin,
            json!({ "status": "revoked" }),
        )
        .await;
    assert!(r.status().is_success());
    assert!(
        cut_off_within(&mut al, Duration::from_secs(1)).await,
        "A was still connected 1 s after its revocation"
    );
    let took = revoked_at.elapsed();

    // It cannot come back, and nothing it sends reaches a subscriber.
    let again = connect(broker.port, a, a, &device_password(a)).await;
    assert!(again.is_err(), "a revoked device reconnected");
    let _ = ac.try_publish(
        format!("vesper/{a}/data"),
        QoS::AtLeastOnce,
        false,
        r#"{"n":2}"#,
    );
    let after = received(&mut wl, Duration::from_secs(1)).await;
    assert!(
        after.iter().all(|(t, _)| *t != format!("vesper/{a}/data")),
        "a subscriber saw the revoked device: {after:?}"
    );
    // Another device is untouched.
    let (bc, mut bl) = connect(broker.port, b, b, &device_password(b))
        .await
        .unwrap();
    publish(&bc, &mut bl, &format!("vesper/{b}/data"), r#"{"n":3}"#).await;
    assert!(
        received(&mut wl, Duration::from_secs(2))
            .await
            .iter()
            .any(|(t, _)| *t == format!("vesper/{b}/data"))
    );
    assert!(
        broker.log().contains(&format!("kicked `{a}`")),
        "{}",
        broker.log()
    );
    eprintln!("revocation took effect after {took:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_removed_from_a_device_stops_receiving_at_once() {
    let (app, broker) = backend_and_shipped_broker().await;
    let (_, sns) = app.batch(1).await;
    let a = &sns[0];
    listener_connected(&app).await;
    app.post(
        &format!("/manufacturing/devices/{a}/users"),
        &app.admin,
        json!({ "owner": "uid-owner", "users_list": ["uid-family"] }),
    )
    .await;
    let token = crate::backend_support::user_token("uid-family", "test-key", json!({}));
    let (fc, mut fl) = connect(broker.port, "uid-family", "uid-family", &token)
        .await
        .unwrap();
    assert!(subscribe(&fc, &mut fl, &format!("vesper/{a}/data")).await);
    let (dc, mut dl) = connect(broker.port, a, a, &device_password(a))
        .await
        .unwrap();
    publish(&dc, &mut dl, &format!("vesper/{a}/data"), r#"{"n":1}"#).await;
    assert_eq!(received(&mut fl, Duration::from_secs(1)).await.len(), 1);

    app.post(
        &format!("/manufacturing/devices/{a}/users"),
        &app.admin,
        json!({ "owner": "uid-owner", "users_list": [] }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(&dc, &mut dl, &format!("vesper/{a}/data"), r#"{"n":2}"#).await;
    let got = received(&mut fl, Duration::from_secs(1)).await;
    assert!(
        got.is_empty(),
        "a removed user still received (cached grant): {got:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_message_does_not_stop_provisioning() {
    // No max_packet_size on this broker: the listener's own limit is what is tested.
    let (app, mut broker) = backend_and_broker(5).await;
    let (_, sns) = app.batch(2).await;
    let (a, b) = (&sns[0], &sns[1]);
    flashed(&app, b, "24:0A:C4:00:00:0B").await;
    listener_connected(&app).await;
    let (ac, mut al) = connect(broker.port, a, a, &device_password(a))
        .await
        .unwrap();
    let big = format!(r#"{{"type":"reading","blob":"{}"}}"#, "x".repeat(20_000));
    publish(&ac, &mut al, &format!("vesper/{a}/data"), &big).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (bc, mut bl) = connect(broker.port, b, b, &device_password(b))
        .await
        .unwrap();
    let wait = app.wait_in_background(b, "provisioned");
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(
        &bc,
        &mut bl,
        &format!("vesper/{b}/data"),
        r#"{"type":"heartbeat","fw":"1.0.0"}"#,
    )
    .await;
    let response = wait.await.unwrap();
    assert_eq!(
        response.headers()["x-wait-result"],
        "reached",
        "B was not provisioned after A's 20 KB message"
    );
    assert_eq!(status_of(&app, b).await, "provisioned");
    assert!(broker.running());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_broker_refuses_packets_over_8_kib() {
    let (app, broker) = backend_and_shipped_broker().await;
    let (_, sns) = app.batch(1).await;
    let a = &sns[0];
    let (ac, mut al) = connect(broker.port, a, a, &device_password(a))
        .await
        .expect("a device logs in through the shipped config");
    assert!(matches!(
        publish(&ac, &mut al, &format!("vesper/{a}/status"), "{}").await,
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
    ));
    let _ = ac
        .publish(
            format!("vesper/{a}/data"),
            QoS::AtLeastOnce,
            false,
            "x".repeat(9 * 1024),
        )
        .await;
    assert!(
        cut_off_within(&mut al, Duration::from_secs(3)).await,
        "a 9 KiB packet was accepted"
    );
    app.stop().await;
}
