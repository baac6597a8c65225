//! The real broker path: Debian's mosquitto with this project's plugin, asking a real `vesper
//! serve`, and MQTT clients (rumqttc, MQTT 5 for reason codes). Each test starts its own broker
//! on a free loopback port with a config it writes, and stops it by PID.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use serde_json::json;

use crate::backend_support::{App, SERVICE, device_password, service_password, user_token};

/// The plugin built next to this test binary (`cargo build -p vesper-mosquitto`; scripts/test does it).
pub fn plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("libvesper_mosquitto.so");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p vesper-mosquitto` (./scripts/test does)",
        path.display()
    );
    path
}

/// The user running the tests: mosquitto started as root would otherwise switch to the
/// `mosquitto` user, which cannot read a plugin inside a private build folder.
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto process; killed (by its PID) when dropped.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _keys: Option<tempfile::TempDir>,
}

impl Mosquitto {
    /// A broker with a config written here: the plugin asking `auth_port`, both caches at
    /// `cache_seconds`, no packet size limit (so the backend's own limits are what is tested).
    pub fn start(port: u16, auth_port: u16, cache_seconds: u32) -> Mosquitto {
        Self::with_config(
            port,
            &format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\nuser {}\n\
                 plugin {}\nplugin_opt_http_host 127.0.0.1\nplugin_opt_http_port {auth_port}\n\
                 plugin_opt_http_getuser_uri /mqtt/auth/user\nplugin_opt_http_aclcheck_uri /mqtt/auth/acl\n\
                 plugin_opt_http_superuser_uri /mqtt/auth/superuser\nplugin_opt_http_timeout 2\n\
                 plugin_opt_auth_cache_seconds {cache_seconds}\nplugin_opt_acl_cache_seconds {cache_seconds}\n\
                 log_dest stderr\nlog_type all\n",
                current_user(),
                plugin().display(),
            ),
        )
    }

    /// The same broker with a TLS listener on `tls_port` besides the plain one, presenting
    /// `cert_pem` (what devices log in to).
    pub fn start_tls(
        port: u16,
        tls_port: u16,
        auth_port: u16,
        cert_pem: &str,
        key_pem: &str,
    ) -> Mosquitto {
        let keys = tempfile::tempdir().unwrap();
        let (cert, key) = (keys.path().join("cert.pem"), keys.path().join("key.pem"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let mut broker = Self::with_config(
            port,
            &format!(
                "per_listener_settings false\nlistener {port} 127.0.0.1\nlistener {tls_port} 127.0.0.1\n\
                 certfile {}\nkeyfile {}\nallow_anonymous false\npersistence false\nuser {}\n\
                 plugin {}\nplugin_opt_http_host 127.0.0.1\nplugin_opt_http_port {auth_port}\n\
                 plugin_opt_http_getuser_uri /mqtt/auth/user\nplugin_opt_http_aclcheck_uri /mqtt/auth/acl\n\
                 plugin_opt_http_timeout 2\nplugin_opt_auth_cache_seconds 5\nplugin_opt_acl_cache_seconds 5\n\
                 log_dest stderr\nlog_type all\n",
                cert.display(),
                key.display(),
                current_user(),
                plugin().display(),
            ),
        );
        broker._keys = Some(keys);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok() {
                return broker;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not listen on {tls_port}: {}", broker.log());
    }

    /// The broker as shipped: `mosquitto/vesper-plugin.conf` as it is in the repository, with
    /// only the listeners (the TLS one with a certificate made here), the plugin's path and the
    /// backend's port changed for this machine.
    pub fn shipped(port: u16, auth_port: u16) -> Mosquitto {
        let keys = tempfile::tempdir().unwrap();
        let certificate = crate::deploy_nginx::ServerCert::new(None);
        let (cert, key) = (keys.path().join("cert.pem"), keys.path().join("key.pem"));
        std::fs::write(&cert, &certificate.cert_pem).unwrap();
        std::fs::write(&key, &certificate.key_pem).unwrap();
        let tls_port = free_port();
        let shipped =
            std::fs::read_to_string(crate::support::root().join("mosquitto/vesper-plugin.conf"))
                .unwrap();
        let mut replaced = 0;
        let config: String = shipped
            .lines()
            .map(|line| {
                let new = match line {
                    "listener 1883 127.0.0.1" => format!("listener {port} 127.0.0.1"),
                    "listener 8883" => format!("listener {tls_port} 127.0.0.1"),
                    "certfile /etc/mosquitto/certs/server.crt" => {
                        format!("certfile {}", cert.display())
                    }
                    "keyfile /etc/mosquitto/certs/server.key" => {
                        format!("keyfile {}", key.display())
                    }
                    "plugin /usr/lib/vesper/libvesper_mosquitto.so" => {
                        format!("plugin {}", plugin().display())
                    }
                    "plugin_opt_http_port 8081" => format!("plugin_opt_http_port {auth_port}"),
                    other => return format!("{other}\n"),
                };
                replaced += 1;
                format!("{new}\n")
            })
            .collect();
        assert_eq!(replaced, 6, "the shipped config changed shape:\n{shipped}");
        let mut broker = Self::with_config(
            port,
            &format!(
                "{config}persistence false\nuser {}\nlog_dest stderr\nlog_type all\n",
                current_user()
            ),
        );
        broker._keys = Some(keys);
        broker
    }

    pub fn with_config(port: u16, config: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new("mosquitto").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().expect(
            "mosquitto is not installed: ./scripts/test installs Debian's mosquitto and mosquitto-clients",
        );
        let mut m = Mosquitto {
            child,
            port,
            log,
            _dir: dir,
            _keys: None,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return m;
            }
            assert!(
                m.child.try_wait().unwrap().is_none(),
                "mosquitto exited: {}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not listen on {port}: {}", m.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A backend with its heartbeat listener pointed at the shipped broker config, then started.
pub async fn backend_and_shipped_broker() -> (App, Mosquitto) {
    let port = free_port();
    let app = App::start_with(&format!(
        "[serve.broker]\nhost = \"127.0.0.1\"\nport = {port}\n"
    ))
    .await;
    let broker = Mosquitto::shipped(port, app.auth_port());
    (app, broker)
}

/// A backend with its heartbeat listener pointed at a broker that is then started.
pub async fn backend_and_broker(cache_seconds: u32) -> (App, Mosquitto) {
    let port = free_port();
    let app = App::start_with(&format!(
        "[serve.broker]\nhost = \"127.0.0.1\"\nport = {port}\n"
    ))
    .await;
    let broker = Mosquitto::start(port, app.auth_port(), cache_seconds);
    (app, broker)
}

/// The backend's `/healthz` answer.
pub async fn health(app: &App) -> serde_json::Value {
    app.client
        .get(format!("{}/healthz", app.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the backend's heartbeat listener is logged in and subscribed.
pub async fn listener_connected(app: &App) {
    for _ in 0..100 {
        if health(app).await["broker"] == "connected" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the heartbeat listener did not connect");
}

pub fn options(port: u16, client_id: &str, credentials: Option<(&str, &str)>) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((user, pass)) = credentials {
        o.set_credentials(user, pass);
    }
    o
}

/// Connects and waits for the CONNACK; `Err` carries the refusal. A connection closed without
/// a CONNACK is tried again a few times, as a device's MQTT client does (esp-mqtt reconnects
/// after `reconnect_timeout_ms`): the vesper plugin closes a login it could not get the
/// backend's answer for in time, and has the answer cached for the retry.
pub async fn connect_with(o: MqttOptions) -> Result<(AsyncClient, EventLoop), String> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match connect_once(o.clone()).await {
            Err(e) if e.starts_with("error:") && attempts < 6 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// One connection attempt, without the retries of [`connect_with`].
pub async fn connect_once(o: MqttOptions) -> Result<(AsyncClient, EventLoop), String> {
    let (client, mut eventloop) = AsyncClient::new(o, 32);
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack)))
                    if ack.code == ConnectReturnCode::Success =>
                {
                    return Ok(());
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return Err(format!("refused: {:?}", ack.code));
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    return Err(format!("refused: {code:?}"));
                }
                Err(e) => return Err(format!("error: {e}")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("timeout".into()));
    result.map(|()| (client, eventloop))
}

pub async fn connect(
    port: u16,
    client_id: &str,
    user: &str,
    pass: &str,
) -> Result<(AsyncClient, EventLoop), String> {
    connect_with(options(port, client_id, Some((user, pass)))).await
}

/// Polls until a packet matches, or `None` after `wait`.
pub async fn next<T>(
    eventloop: &mut EventLoop,
    wait: Duration,
    mut pick: impl FnMut(Packet) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(wait, async {
        loop {
            if let Ok(Event::Incoming(packet)) = eventloop.poll().await {
                if let Some(t) = pick(packet) {
                    return t;
                }
            }
        }
    })
    .await
    .ok()
}

pub async fn publish(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    topic: &str,
    payload: &str,
) -> PubAckReason {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_owned())
        .await
        .unwrap();
    next(eventloop, Duration::from_secs(5), |p| match p {
        Packet::PubAck(ack) => Some(ack.reason),
        _ => None,
    })
    .await
    .expect("a PUBACK")
}

pub async fn subscribe(client: &AsyncClient, eventloop: &mut EventLoop, filter: &str) -> bool {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let codes = next(eventloop, Duration::from_secs(5), |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes),
        _ => None,
    })
    .await
    .expect("a SUBACK");
    codes
        .iter()
        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
}

/// Messages received within `wait`, as (topic, payload).
pub async fn received(eventloop: &mut EventLoop, wait: Duration) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = eventloop.poll().await {
                out.push((
                    String::from_utf8_lossy(&p.topic).into_owned(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                ));
            }
        }
    })
    .await;
    out
}

pub async fn flashed(app: &App, sn: &str, mac: &str) {
    let body =
        json!({ "chip": "ESP32", "mac": mac, "firmware_version": "1.0.0", "station": "bench-1" });
    assert!(
        app.post(
            &format!("/manufacturing/devices/{sn}/flashed"),
            &app.technician,
            body
        )
        .await
        .status()
        .is_success()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_heartbeat_provisions_the_device_and_bad_logins_are_refused() {
    let (app, mut broker) = backend_and_broker(5).await;
    let (_, sns) = app.batch(3).await;
    let (a, b, c) = (&sns[0], &sns[1], &sns[2]);
    flashed(&app, a, "24:0A:C4:00:00:0A").await;
    app.post(
        &format!("/manufacturing/devices/{c}/status"),
        &app.admin,
        json!({ "status": "revoked" }),
    )
    .await;

    // The heartbeat listener logs in as the service account and subscribes.
    listener_connected(&app).await;
    let (client, mut eventloop) = connect(broker.port, a, a, &device_password(a))
        .await
        .expect("the right password connects");
    let wait = app.wait_in_background(a, "provisioned");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ack = publish(
        &client,
        &mut eventloop,
        &format!("vesper/{a}/data"),
        r#"{"type":"heartbeat","fw":"1.0.1"}"#,
    )
    .await;
    assert!(
        matches!(
            ack,
            PubAckReason::Success | PubAckReason::NoMatchingSubscribers
        ),
        "{ack:?}"
    );
    let response = wait.await.unwrap();
    assert_eq!(response.headers()["x-wait-result"], "reached");
    let device: serde_json::Value = response.json().await.unwrap();
    assert_eq!(device["status"], "provisioned");
    assert!(device["provisioned_at"].is_string() && device["last_seen"].is_string());
    assert_eq!(device["firmware_version"], "1.0.1");
    let history = app
        .get(
            &format!("/manufacturing/audit?subject={a}&action=device.provisioned"),
            &app.admin,
        )
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(history["entries"][0]["actor"], "mqtt-heartbeat");

    // A later heartbeat moves last_seen only; a malformed one is ignored.
    let first_seen = device["last_seen"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish(
        &client,
        &mut eventloop,
        &format!("vesper/{a}/data"),
        "not json",
    )
    .await;
    publish(
        &client,
        &mut eventloop,
        &format!("vesper/{a}/status"),
        r#"{"state":"online"}"#,
    )
    .await;
    let mut later = String::new();
    for _ in 0..50 {
        let d: serde_json::Value = app
            .get(&format!("/manufacturing/devices/{a}"), &app.viewer)
            .await
            .json()
            .await
            .unwrap();
        later = d["last_seen"].as_str().unwrap().to_owned();
        if later != first_seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(later > first_seen, "last_seen moves on later messages");

    // A device that was never flashed is seen but not provisioned.
    let (bc, mut bl) = connect(broker.port, b, b, &device_password(b))
        .await
        .unwrap();
    publish(
        &bc,
        &mut bl,
        &format!("vesper/{b}/data"),
        r#"{"type":"heartbeat"}"#,
    )
    .await;
    let r = app
        .get(
            &format!("/manufacturing/devices/{b}?wait=provisioned&timeout=1"),
            &app.viewer,
        )
        .await;
    assert_eq!(r.headers()["x-wait-result"], "timeout");

    for (name, result) in [
        (
            "wrong password",
            connect(broker.port, a, a, &device_password(b)).await,
        ),
        (
            "revoked device",
            connect(broker.port, c, c, &device_password(c)).await,
        ),
        (
            "unknown device",
            connect(
                broker.port,
                "PV-26A18-BC02R-ZZZZZ",
                "PV-26A18-BC02R-ZZZZZ",
                &device_password("PV-26A18-BC02R-ZZZZZ"),
            )
            .await,
        ),
        (
            "anonymous",
            connect_with(options(broker.port, "x4", None)).await,
        ),
        (
            "client id with #",
            connect(broker.port, &format!("{a}-bad#id"), a, &device_password(a)).await,
        ),
        ("empty password", connect(broker.port, a, a, "").await),
    ] {
        let err = result.err().unwrap_or_else(|| panic!("{name}: connected"));
        assert!(err.starts_with("refused"), "{name}: {err}");
    }
    // MQTT 5 extended authentication would skip the password check: refused.
    let mut ext = options(broker.port, a, Some((a, &device_password(b))));
    ext.set_authentication_method(Some("SCRAM-SHA-256".into()));
    ext.set_authentication_data(Some(bytes::Bytes::from_static(b"client-first")));
    assert!(
        connect_with(ext).await.is_err(),
        "extended auth must not let a client in"
    );
    assert!(broker.running());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_cannot_use_other_devices_topics() {
    let (app, broker) = backend_and_broker(5).await;
    let (_, sns) = app.batch(2).await;
    let (a, b) = (&sns[0], &sns[1]);
    let (watcher, mut watch_loop) = connect(
        broker.port,
        &format!("{SERVICE}-watcher"),
        SERVICE,
        &service_password(),
    )
    .await
    .expect("the service account logs in");
    assert!(subscribe(&watcher, &mut watch_loop, "vesper/+/data").await);
    let (ac, mut al) = connect(broker.port, a, a, &device_password(a))
        .await
        .unwrap();

    assert_eq!(
        publish(
            &ac,
            &mut al,
            &format!("vesper/{b}/data"),
            r#"{"spoof":true}"#
        )
        .await,
        PubAckReason::NotAuthorized
    );
    assert!(matches!(
        publish(&ac, &mut al, &format!("vesper/{a}/data"), r#"{"own":true}"#).await,
        PubAckReason::Success
    ));
    let got = received(&mut watch_loop, Duration::from_secs(2)).await;
    assert!(
        got.iter().any(|(t, _)| *t == format!("vesper/{a}/data")),
        "the watcher works: {got:?}"
    );
    assert!(
        !got.iter().any(|(t, _)| *t == format!("vesper/{b}/data")),
        "a spoofed message arrived: {got:?}"
    );

    assert!(!subscribe(&ac, &mut al, &format!("vesper/{b}/control")).await);
    assert!(!subscribe(&ac, &mut al, "vesper/+/data").await);
    assert!(!subscribe(&ac, &mut al, "vesper/#").await);
    assert!(subscribe(&ac, &mut al, &format!("vesper/{a}/control")).await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn owners_receive_data_and_send_control_but_strangers_cannot() {
    let (app, broker) = backend_and_broker(5).await;
    let (_, sns) = app.batch(1).await;
    let a = &sns[0];
    app.post(
        &format!("/manufacturing/devices/{a}/users"),
        &app.admin,
        json!({ "owner": "uid-owner" }),
    )
    .await;
    let (dc, mut dl) = connect(broker.port, a, a, &device_password(a))
        .await
        .unwrap();
    assert!(subscribe(&dc, &mut dl, &format!("vesper/{a}/control")).await);
    let (oc, mut ol) = connect(
        broker.port,
        "uid-owner-phone",
        "uid-owner",
        &user_token("uid-owner", "test-key", json!({})),
    )
    .await
    .expect("owner logs in with an ID token");
    assert!(subscribe(&oc, &mut ol, &format!("vesper/{a}/data")).await);
    publish(&dc, &mut dl, &format!("vesper/{a}/data"), r#"{"t":21.5}"#).await;
    let got = received(&mut ol, Duration::from_secs(2)).await;
    assert_eq!(
        got,
        [(format!("vesper/{a}/data"), r#"{"t":21.5}"#.to_owned())]
    );
    assert!(matches!(
        publish(
            &oc,
            &mut ol,
            &format!("vesper/{a}/control"),
            r#"{"relay":1}"#
        )
        .await,
        PubAckReason::Success
    ));
    let got = received(&mut dl, Duration::from_secs(2)).await;
    assert!(
        got.contains(&(format!("vesper/{a}/control"), r#"{"relay":1}"#.to_owned())),
        "{got:?}"
    );

    let (sc, mut sl) = connect(
        broker.port,
        "uid-stranger",
        "uid-stranger",
        &user_token("uid-stranger", "test-key", json!({})),
    )
    .await
    .unwrap();
    assert!(!subscribe(&sc, &mut sl, &format!("vesper/{a}/data")).await);
    assert_eq!(
        publish(&sc, &mut sl, &format!("vesper/{a}/control"), "{}").await,
        PubAckReason::NotAuthorized
    );
    let forged = connect(
        broker.port,
        "uid-owner-forger",
        "uid-owner",
        &user_token("uid-owner", "other-key", json!({})),
    )
    .await;
    assert!(forged.is_err(), "a token signed by another key is refused");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_survives_a_backend_outage_and_recovers() {
    let (mut app, mut broker) = backend_and_broker(0).await;
    let (_, sns) = app.batch(1).await;
    let a = sns[0].clone();
    let (first, _) = connect(broker.port, &a, &a, &device_password(&a))
        .await
        .expect("login with the backend up");
    drop(first);
    app.pause().await;
    let down = connect(broker.port, &a, &a, &device_password(&a)).await;
    assert!(down.is_err(), "no login while the backend is down");
    assert!(broker.running(), "the broker stays up: {}", broker.log());
    assert!(
        broker.log().contains("backend unavailable"),
        "{}",
        broker.log()
    );
    app.resume().await;
    connect(broker.port, &a, &a, &device_password(&a))
        .await
        .expect("logins work again when the backend returns (errors are not cached)");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_login_within_the_cache_time_asks_the_backend_nothing() {
    let (app, broker) = backend_and_broker(60).await;
    // The backend's own heartbeat listener logs in too: counted only once it is in.
    listener_connected(&app).await;
    let (_, sns) = app.batch(1).await;
    let a = sns[0].clone();
    let before = app.user_checks().await;
    let (c1, l1) = connect(broker.port, &a, &a, &device_password(&a))
        .await
        .unwrap();
    let after_first = app.user_checks().await;
    assert_eq!(after_first, before + 1);
    c1.disconnect().await.unwrap();
    drop(l1);
    let _second = connect(broker.port, &a, &a, &device_password(&a))
        .await
        .unwrap();
    assert_eq!(
        app.user_checks().await,
        after_first,
        "the plugin's cache answered"
    );
    // Denials are cached too, but a different password is a different question.
    assert!(connect(broker.port, &a, &a, "wrong").await.is_err());
    assert_eq!(app.user_checks().await, after_first + 1);
    assert!(connect(broker.port, &a, &a, "wrong").await.is_err());
    assert_eq!(app.user_checks().await, after_first + 1);
    app.stop().await;
}
