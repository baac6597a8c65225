//! Heartbeats on a RabbitMQ cluster, handled exactly once by two `vesper serve` instances on
//! one PostgreSQL registry: each instance consumes the durable queue of
//! `deploy/rabbitmq/definitions.json` over AMQP (competing consumers, one from each node),
//! devices publish on node A, every message is recorded once and shared between the instances;
//! node A stops, the instance that consumed from it reconnects to node B, the devices reconnect
//! to node B, and nothing is lost or recorded twice.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::backend_process::Serve;
use crate::backend_support::device_password;
use crate::broker::free_port;
use crate::rabbitmq_cluster::{Cluster, connect, publish};
use crate::scale_out::{
    create_batch, device_messages, get_json, instance_dir_with, pg, post, wait_listener,
};
use crate::support::{stderr, stdout, vesper_env};

/// An instance's folder: the registry on PostgreSQL, devices' broker on node A's MQTT port
/// (unused by the AMQP listener), and the AMQP nodes in the instance's order of preference.
fn instance_dir(url: &str, amqp_ports: [u16; 2]) -> tempfile::TempDir {
    let nodes = amqp_ports.map(|p| format!("\"amqp://127.0.0.1:{p}/%2f\""));
    let broker = format!(
        "[serve.broker]\nhost = \"127.0.0.1\"\nport = 1883\namqp = [{}]\n",
        nodes.join(", ")
    );
    instance_dir_with(url, &broker, true)
}

/// Publishes `count` heartbeats from each device on the node listening on `mqtt_port`,
/// each acknowledged by the broker; returns how many.
async fn heartbeats(mqtt_port: u16, devices: &[String], count: usize, fw: &str) -> u64 {
    let mut published = 0;
    for sn in devices {
        let (client, mut events) = connect(mqtt_port, sn, sn, &device_password(sn))
            .await
            .unwrap_or_else(|e| panic!("{sn} logs in on port {mqtt_port}: {e}"));
        let body = format!(r#"{{"type":"heartbeat","fw":"{fw}"}}"#);
        for _ in 0..count {
            assert!(
                publish(&client, &mut events, &format!("vesper/{sn}/data"), &body).await,
                "{sn}'s heartbeat acknowledged"
            );
            published += 1;
        }
        let _ = client.disconnect().await;
    }
    published
}

/// How many messages each instance handled, once `expected` in all arrived (or 20 s passed)
/// and nothing more came for a second.
async fn handled(a: &Serve, b: &Serve, expected: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = (device_messages(a).await, device_messages(b).await);
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (device_messages(a).await, device_messages(b).await);
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
        let done = now.0 + now.1 >= expected && quiet_since.elapsed() > Duration::from_secs(1);
        if done || Instant::now() > deadline {
            return now;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_handle_each_heartbeat_once_through_a_node_failure() {
    let pg = pg::PgCluster::start();
    let url = pg.create_database("vesper");
    let amqp_ports = [free_port(), free_port()];
    // Instance A prefers node A, instance B node B: one consumer on each node.
    let a_dir = instance_dir(&url, amqp_ports);
    let b_dir = instance_dir(&url, [amqp_ports[1], amqp_ports[0]]);
    let out = vesper_env(
        a_dir.path(),
        &["token", "create", "admin-1", "--role", "admin"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).split_whitespace().last().unwrap().to_owned();
    let (a, b) = (
        Serve::start(a_dir.path(), &[]),
        Serve::start(b_dir.path(), &[]),
    );
    let auth = a.auth.clone();
    let mut cluster = tokio::task::spawn_blocking(move || Cluster::start(&auth, amqp_ports))
        .await
        .unwrap();
    let (mqtt_a, mqtt_b) = (cluster.nodes[0].mqtt_port, cluster.nodes[1].mqtt_port);
    wait_listener(&a).await;
    wait_listener(&b).await;

    // Six flashed devices; their heartbeats go to node A.
    let (_, devices) = create_batch(&a.api, &token, 6).await;
    for (i, sn) in devices.iter().enumerate() {
        let body = json!({ "chip": "ESP32", "mac": format!("24:0A:C4:00:02:{i:02X}"), "firmware_version": "1.0.0", "station": "bench-1" });
        let r = post(
            &a.api,
            &token,
            &format!("/manufacturing/devices/{sn}/flashed"),
            body,
        )
        .await;
        assert!(r.status().is_success());
    }
    let published = heartbeats(mqtt_a, &devices, 5, "1.0.0").await;
    let (by_a, by_b) = handled(&a, &b, published).await;
    assert_eq!(
        by_a + by_b,
        published,
        "A handled {by_a}, B {by_b} of {published}\nA: {}\nB: {}",
        a.log(),
        b.log()
    );
    assert!(
        by_a > 0 && by_b > 0,
        "the queue shares the messages: A {by_a}, B {by_b}"
    );
    for sn in &devices {
        let device = get_json(&b.api, &token, &format!("/manufacturing/devices/{sn}")).await;
        assert_eq!(device["status"], "provisioned", "{device}");
    }
    let provisioned = "/manufacturing/audit?action=device.provisioned&limit=100";
    let audit = get_json(&b.api, &token, provisioned).await;
    assert_eq!(
        audit["entries"].as_array().unwrap().len(),
        devices.len(),
        "one provisioning row per device: {audit}"
    );

    // Node A stops: instance A reconnects to node B, the devices too; every heartbeat sent
    // there is recorded once.
    tokio::task::block_in_place(|| cluster.stop(0));
    let on_b = format!("amqp://127.0.0.1:{}/%2f", amqp_ports[1]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a
        .log()
        .lines()
        .any(|l| l.contains("heartbeat consumer connected") && l.contains(&on_b))
    {
        assert!(
            Instant::now() < deadline,
            "instance A did not move to node B:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let more = heartbeats(mqtt_b, &devices, 5, "1.0.1").await;
    let (after_a, after_b) = handled(&a, &b, published + more).await;
    assert_eq!(
        after_a + after_b,
        published + more,
        "after node A stopped: A {after_a}, B {after_b} of {}\nA: {}\nB: {}",
        published + more,
        a.log(),
        b.log()
    );
    for sn in &devices {
        let device = get_json(&a.api, &token, &format!("/manufacturing/devices/{sn}")).await;
        assert_eq!(device["status"], "provisioned", "{device}");
        assert!(device["last_seen"].is_string(), "{device}");
    }
    let audit = get_json(&a.api, &token, provisioned).await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), devices.len());
    tokio::task::block_in_place(|| drop(cluster));
    a.kill();
    b.kill();
}
