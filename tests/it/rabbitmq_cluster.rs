//! A real two-node RabbitMQ cluster (Debian's rabbitmq-server 3.10 with its MQTT plugin and its
//! HTTP auth backend, configured from `deploy/rabbitmq/rabbitmq.conf`) in front of `vesper
//! serve`: a device logs in on node A with its NVS credentials and its owner, subscribed on node
//! B, receives its data; another device's topics are refused; a revoked device is refused at its
//! next publish; with node A stopped the device reconnects to B and its data still arrives.
//!
//! The nodes run on loopback with their own names, ports, data folders and cookie (the
//! facts of DESIGN.md section 12), started from Debian's `/usr/lib/rabbitmq/bin` scripts as the
//! test's own user, and are stopped by the test (and by `Drop` when it fails), with the epmd
//! the first node starts.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use serde_json::json;

use crate::backend_support::{App, device_password, user_token};
use crate::broker::free_port;

const BIN: &str = "/usr/lib/rabbitmq/bin";

pub(crate) struct Node {
    name: String,
    pub(crate) mqtt_port: u16,
    process: Option<Child>,
}

/// Two RabbitMQ nodes clustered on loopback, with their own epmd.
pub(crate) struct Cluster {
    _dir: tempfile::TempDir,
    home: PathBuf,
    pub(crate) nodes: Vec<Node>,
}

impl Cluster {
    /// Node `a` and node `b`, `b` joined to `a`, both asking `auth` (the backend's auth
    /// listener, `http://127.0.0.1:PORT`), their AMQP listeners on `amqp_ports`.
    pub(crate) fn start(auth: &str, amqp_ports: [u16; 2]) -> Cluster {
        assert!(
            Path::new(BIN).join("rabbitmq-server").exists(),
            "Debian's rabbitmq-server is missing: ./scripts/test installs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let cookie = home.join(".erlang.cookie");
        std::fs::write(&cookie, format!("VESPERTEST{}", std::process::id())).unwrap();
        set_mode(&cookie, 0o400);
        std::fs::write(
            dir.path().join("enabled_plugins"),
            "[rabbitmq_mqtt,rabbitmq_auth_backend_http].\n",
        )
        .unwrap();
        // The shipped snippet, pointed at this backend and the shipped definitions, with plain
        // loopback listeners.
        let deploy = crate::support::root().join("deploy/rabbitmq");
        let shipped = std::fs::read_to_string(deploy.join("rabbitmq.conf"))
            .unwrap()
            .replace("http://127.0.0.1:8081", auth)
            .replace(
                "/etc/rabbitmq/definitions.json",
                deploy.join("definitions.json").to_str().unwrap(),
            );
        let shipped: String = shipped
            .lines()
            .filter(|l| !l.starts_with("ssl_options.") && !l.starts_with("mqtt.listeners."))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut cluster = Cluster {
            _dir: dir,
            home,
            nodes: Vec::new(),
        };
        let suffix = std::process::id();
        for (letter, amqp_port) in ["a", "b"].into_iter().zip(amqp_ports) {
            let node_dir = cluster._dir.path().join(letter);
            std::fs::create_dir_all(node_dir.join("mnesia")).unwrap();
            std::fs::create_dir_all(node_dir.join("log")).unwrap();
            let (mqtt_port, dist_port) = (free_port(), free_port());
            let config = node_dir.join("rabbitmq.conf");
            std::fs::write(
                &config,
                format!(
                    "{shipped}listeners.tcp.default = 127.0.0.1:{amqp_port}\n\
                     mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}\n"
                ),
            )
            .unwrap();
            let name = format!("vesper-{letter}-{suffix}@localhost");
            let process = Command::new(Path::new(BIN).join("rabbitmq-server"))
                .envs(cluster.env())
                .env("RABBITMQ_NODENAME", &name)
                .env("RABBITMQ_CONFIG_FILE", &config)
                .env("RABBITMQ_MNESIA_BASE", node_dir.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", node_dir.join("log"))
                .env(
                    "RABBITMQ_ENABLED_PLUGINS_FILE",
                    cluster._dir.path().join("enabled_plugins"),
                )
                .env("RABBITMQ_DIST_PORT", dist_port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group: the script starts the Erlang VM as a child, and a
                // failed test must be able to end both.
                .process_group(0)
                .spawn()
                .unwrap();
            cluster.nodes.push(Node {
                name,
                mqtt_port,
                process: Some(process),
            });
        }
        for i in 0..2 {
            cluster.await_startup(i);
        }
        let a = cluster.nodes[0].name.clone();
        // As RabbitMQ's clustering guide does it: a node joins with nothing of its own (it
        // loaded the definitions when it booted alone).
        cluster.ctl(1, &["stop_app"]);
        cluster.ctl(1, &["reset"]);
        cluster.ctl(1, &["join_cluster", &a]);
        cluster.ctl(1, &["start_app"]);
        cluster.await_startup(1);
        cluster
    }

    /// Waits until the node has registered with epmd (the CLI answers "not running" before
    /// that) and then until it has booted.
    fn await_startup(&self, node: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = Command::new(Path::new(BIN).join("rabbitmqctl"))
                .envs(self.env())
                .args([
                    "-n",
                    &self.nodes[node].name,
                    "await_startup",
                    "--timeout",
                    "120",
                ])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                self.nodes[node].name,
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The environment every RabbitMQ process of this cluster runs with: the cluster's own
    /// cookie in its own home.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("HOME", self.home.display().to_string())]
    }

    /// `rabbitmqctl -n NODE ARGS`, which must succeed.
    fn ctl(&self, node: usize, args: &[&str]) -> String {
        let out = Command::new(Path::new(BIN).join("rabbitmqctl"))
            .envs(self.env())
            .arg("-n")
            .arg(&self.nodes[node].name)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?} on {}: {text}{}",
            self.nodes[node].name,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// Stops one node and waits for its process.
    pub(crate) fn stop(&mut self, node: usize) {
        let Some(mut process) = self.nodes[node].process.take() else {
            return;
        };
        let _ = Command::new(Path::new(BIN).join("rabbitmqctl"))
            .envs(self.env())
            .args(["-n", &self.nodes[node].name, "stop"])
            .output();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if process.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Still running: end its process group (the script and the VM it started).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", process.id())])
            .output();
        let _ = process.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in (0..self.nodes.len()).rev() {
            self.stop(node);
        }
        // The epmd the first node started (epmd refuses to stop while another node, not ours,
        // is registered with it).
        let _ = Command::new("epmd").arg("-kill").output();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An MQTT 3.1.1 client (RabbitMQ 3.10's MQTT plugin speaks 3.1.1 only).
pub(crate) async fn connect(
    port: u16,
    client_id: &str,
    user: &str,
    password: &str,
) -> Result<(AsyncClient, EventLoop), String> {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials(user, password);
    let (client, mut eventloop) = AsyncClient::new(o, 32);
    let result = tokio::time::timeout(Duration::from_secs(15), async {
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

/// Subscribes and returns whether the broker granted the filter.
pub(crate) async fn subscribe(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    filter: &str,
) -> bool {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    return ack
                        .return_codes
                        .iter()
                        .all(|c| !matches!(c, SubscribeReasonCode::Failure));
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// Publishes at QoS 1; `true` when the broker acknowledged it, `false` when it closed the
/// connection instead (what RabbitMQ does with a publish it refuses).
pub(crate) async fn publish(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    topic: &str,
    payload: &str,
) -> bool {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// The messages that arrive within `wait`.
pub(crate) async fn received(eventloop: &mut EventLoop, wait: Duration) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    got.push((
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).into_owned(),
                    ));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn a_two_node_rabbitmq_cluster_asks_vesper_serve() {
    let app = App::start().await;
    let (_, sns) = app.batch(2).await;
    let (device, other) = (sns[0].clone(), sns[1].clone());
    let users = json!({ "owner": "uid-owner", "users_list": [] });
    let path = format!("/manufacturing/devices/{device}/users");
    assert!(
        app.post(&path, &app.admin, users)
            .await
            .status()
            .is_success()
    );
    let auth = app.auth.clone();
    let mut cluster =
        tokio::task::spawn_blocking(move || Cluster::start(&auth, [free_port(), free_port()]))
            .await
            .unwrap();
    let (port_a, port_b) = (cluster.nodes[0].mqtt_port, cluster.nodes[1].mqtt_port);
    let password = device_password(&device);
    let owner_token = user_token("uid-owner", "test-key", json!({}));

    // The owner subscribes on node B; the device publishes on node A with its NVS credentials.
    let (owner, mut owner_loop) = connect(port_b, "uid-owner-app", "uid-owner", &owner_token)
        .await
        .unwrap();
    let data = format!("vesper/{device}/data");
    assert!(
        subscribe(&owner, &mut owner_loop, &data).await,
        "the owner's subscription"
    );
    let (dev, mut dev_loop) = connect(port_a, &device, &device, &password).await.unwrap();
    assert!(
        publish(
            &dev,
            &mut dev_loop,
            &data,
            r#"{"type":"heartbeat","fw":"1.0.0"}"#
        )
        .await
    );
    let got = received(&mut owner_loop, Duration::from_secs(3)).await;
    assert_eq!(
        got,
        vec![(
            data.clone(),
            r#"{"type":"heartbeat","fw":"1.0.0"}"#.to_owned()
        )]
    );

    // Refusals: a wrong password, another device's client id, another device's topics.
    assert!(connect(port_a, &device, &device, "wrong").await.is_err());
    assert!(
        connect(port_a, &other, &device, &password).await.is_err(),
        "another device's client id"
    );
    let (dev2, mut dev2_loop) = connect(port_a, &format!("{device}-2"), &device, &password)
        .await
        .unwrap();
    assert!(!subscribe(&dev2, &mut dev2_loop, &format!("vesper/{other}/control")).await);
    let (dev3, mut dev3_loop) = connect(port_b, &format!("{device}-3"), &device, &password)
        .await
        .unwrap();
    assert!(!publish(&dev3, &mut dev3_loop, &format!("vesper/{other}/data"), "{}").await);
    let (stranger, mut stranger_loop) = connect(
        port_b,
        "uid-stranger",
        "uid-stranger",
        &user_token("uid-stranger", "test-key", json!({})),
    )
    .await
    .unwrap();
    assert!(
        !subscribe(&stranger, &mut stranger_loop, &data).await,
        "a stranger reads the device's data"
    );

    // Node A stops: the device reconnects to node B and its data still reaches the owner.
    drop((dev2, dev2_loop));
    tokio::task::block_in_place(|| cluster.stop(0));
    let (dev, mut dev_loop) = connect(port_b, &device, &device, &password).await.unwrap();
    assert!(
        publish(
            &dev,
            &mut dev_loop,
            &data,
            r#"{"type":"heartbeat","fw":"1.0.1"}"#
        )
        .await
    );
    let got = received(&mut owner_loop, Duration::from_secs(3)).await;
    assert!(
        got.contains(&(
            data.clone(),
            r#"{"type":"heartbeat","fw":"1.0.1"}"#.to_owned()
        )),
        "{got:?}"
    );

    // Revoked: no auth cache, so the next publish is refused (RabbitMQ closes the connection)
    // and a new login is refused.
    let path = format!("/manufacturing/devices/{device}/status");
    assert!(
        app.post(&path, &app.admin, json!({ "status": "revoked" }))
            .await
            .status()
            .is_success()
    );
    assert!(
        !publish(
            &dev,
            &mut dev_loop,
            &data,
            r#"{"type":"heartbeat","fw":"1.0.1"}"#
        )
        .await,
        "a revoked device's publish"
    );
    assert!(
        connect(port_b, &device, &device, &password).await.is_err(),
        "a revoked device's login"
    );
    drop((owner, owner_loop, stranger, stranger_loop, dev3, dev3_loop));
    tokio::task::block_in_place(|| drop(cluster));
    app.stop().await;
}
