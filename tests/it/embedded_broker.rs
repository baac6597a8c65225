//! The embedded broker of `vesper demo`, with real MQTT clients (rumqttc) on loopback: every
//! login and topic is decided by the backend's own code, as mosquitto's are through go-auth.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};

use crate::backend_support::{App, SERVICE, device_password, service_password};
use vesper::broker::Broker;
use vesper::server::BackendGate;

fn client(port: u16, id: &str, user: &str, password: &str) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_credentials(user, password);
    options.set_keep_alive(Duration::from_secs(5));
    AsyncClient::new(options, 16)
}

/// Polls until `want` matches an event, or fails after 10 s.
async fn until<T>(
    events: &mut EventLoop,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> Result<T, String> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(e) => {
                    if let Some(t) = want(&e) {
                        return Ok(t);
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "timed out".to_owned())?
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_acls_and_delivery_are_the_backends() {
    let app = App::start().await;
    let (_, sns) = app.batch(2).await;
    let gate = Arc::new(BackendGate(app.running.as_ref().unwrap().state.clone()));
    let broker = Broker::start("127.0.0.1:0".parse().unwrap(), gate)
        .await
        .unwrap();
    let port = broker.addr().port();

    // A wrong password, an unknown device and a client id that is not the login's own (device
    // B's serial number, the backend's listener id) are refused at CONNECT.
    let right = device_password(&sns[0]);
    let listener_id = format!("{SERVICE}-heartbeats");
    for (id, user, password) in [
        (sns[0].as_str(), sns[0].as_str(), "wrong"),
        ("PV-26A18-BC02R-X7KQA", "PV-26A18-BC02R-X7KQA", "x"),
        (SERVICE, SERVICE, "nope"),
        (sns[1].as_str(), sns[0].as_str(), right.as_str()),
        (listener_id.as_str(), sns[0].as_str(), right.as_str()),
        ("anything", sns[0].as_str(), right.as_str()),
    ] {
        let (_c, mut events) = client(port, id, user, password);
        let refused = until(&mut events, |_| None::<()>).await.unwrap_err();
        assert!(
            refused.contains("BadUserNamePassword") || refused.contains("refused"),
            "{user}: {refused}"
        );
    }

    // The service account subscribes to every device's data; a device may not read another's.
    let (service, mut service_events) = client(port, SERVICE, SERVICE, &service_password());
    until(&mut service_events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success)
            .then_some(())
    })
    .await
    .unwrap();
    service
        .subscribe("vesper/+/data", QoS::AtLeastOnce)
        .await
        .unwrap();
    let granted = until(&mut service_events, |e| match e {
        Event::Incoming(Packet::SubAck(a)) => Some(a.return_codes.clone()),
        _ => None,
    })
    .await
    .unwrap();
    assert!(matches!(
        granted[..],
        [rumqttc::SubscribeReasonCode::Success(_)]
    ));

    let (device, mut device_events) = client(port, &sns[0], &sns[0], &device_password(&sns[0]));
    until(&mut device_events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await
    .unwrap();
    device
        .subscribe(format!("vesper/{}/data", sns[1]), QoS::AtMostOnce)
        .await
        .unwrap();
    let codes = until(&mut device_events, |e| match e {
        Event::Incoming(Packet::SubAck(a)) => Some(a.return_codes.clone()),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(
        codes,
        vec![rumqttc::SubscribeReasonCode::Failure],
        "deny by default"
    );

    // Its own data topic reaches the service; another device's topic is dropped.
    device
        .publish(
            format!("vesper/{}/data", sns[1]),
            QoS::AtLeastOnce,
            false,
            "spoof",
        )
        .await
        .unwrap();
    device
        .publish(
            format!("vesper/{}/data", sns[0]),
            QoS::AtLeastOnce,
            false,
            r#"{"type":"heartbeat"}"#,
        )
        .await
        .unwrap();
    let pump = tokio::spawn(async move {
        loop {
            if device_events.poll().await.is_err() {
                break;
            }
        }
    });
    let topic = until(&mut service_events, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.topic.clone()),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(
        topic,
        format!("vesper/{}/data", sns[0]),
        "the spoofed message was not delivered"
    );
    pump.abort();
    broker.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_silence_do_not_hurt_the_broker() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = App::start().await;
    let gate = Arc::new(BackendGate(app.running.as_ref().unwrap().state.clone()));
    let broker = Broker::start("127.0.0.1:0".parse().unwrap(), gate)
        .await
        .unwrap();
    let addr = broker.addr();
    // Not MQTT: the connection is closed.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    // A CONNECT without a username is refused (return code 5).
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut packet = bytes::BytesMut::new();
    rumqttc::mqttbytes::v4::Packet::Connect(rumqttc::mqttbytes::v4::Connect::new("anon"))
        .write(&mut packet, 1024)
        .unwrap();
    s.write_all(&packet).await.unwrap();
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack, [0x20, 2, 0, 5]);
    // The broker still serves.
    let (_c, mut events) = client(addr.port(), SERVICE, SERVICE, &service_password());
    until(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await
    .unwrap();
    broker.stop().await;
    app.stop().await;
}
