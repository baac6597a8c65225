//! Scale-out on Debian's PostgreSQL (a throwaway cluster the test starts and stops): two real
//! `vesper serve` processes on one database behind one mosquitto with this project's plugin.
//! Claims from 8 clients through both never share a device; a long poll on one instance is
//! answered by a heartbeat the other handled; every device message is handled exactly once
//! while both are up; an instance killed with SIGKILL mid-batch leaves every batch whole or
//! absent; `vesper migrate` moves a SQLite registry over and proves it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend_process::Serve;
use crate::backend_support::{device_password, metric, write_config_with};
use crate::broker::{Mosquitto, connect, free_port, publish};
use crate::support::{stderr, stdout, vesper_env};

#[path = "../../crates/store/tests/support/pg.rs"]
#[allow(dead_code)] // the store's conformance suite uses the rest
pub(crate) mod pg;

/// An instance's folder: config.toml with `broker` (a `[serve.broker]` table) and, with
/// `in_config`, the database (`serve.database`); otherwise the database comes from
/// `$VESPER_DATABASE_URL`.
pub(crate) fn instance_dir_with(url: &str, broker: &str, in_config: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config_with(dir.path(), "http://127.0.0.1:9/unused-jwks", broker);
    if in_config {
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replacen("[serve]\n", &format!("[serve]\ndatabase = \"{url}\"\n"), 1),
        )
        .unwrap();
    }
    dir
}

/// The same, with the broker on `broker_port`.
fn instance_dir(url: &str, broker_port: u16, in_config: bool) -> tempfile::TempDir {
    let broker = format!("[serve.broker]\nhost = \"127.0.0.1\"\nport = {broker_port}\n");
    instance_dir_with(url, &broker, in_config)
}

struct Cluster {
    _pg: pg::PgCluster,
    url: String,
    a_dir: tempfile::TempDir,
    b_dir: tempfile::TempDir,
    token: String,
    broker_port: u16,
}

impl Cluster {
    fn new() -> Cluster {
        let pg = pg::PgCluster::start();
        let url = pg.create_database("vesper");
        let broker_port = free_port();
        let a_dir = instance_dir(&url, broker_port, false);
        let b_dir = instance_dir(&url, broker_port, true);
        // A token made from the command line on one instance's host works on both.
        let out = vesper_env(
            a_dir.path(),
            &["token", "create", "admin-1", "--role", "admin"],
            &[("VESPER_DATABASE_URL", &url)],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let token = stdout(&out).split_whitespace().last().unwrap().to_owned();
        Cluster {
            _pg: pg,
            url,
            a_dir,
            b_dir,
            token,
            broker_port,
        }
    }

    fn start_a(&self) -> Serve {
        Serve::start(self.a_dir.path(), &[("VESPER_DATABASE_URL", &self.url)])
    }

    fn start_b(&self) -> Serve {
        Serve::start(self.b_dir.path(), &[])
    }
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub(crate) async fn post(api: &str, token: &str, path: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{api}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn get_json(api: &str, token: &str, path: &str) -> Value {
    let r = http()
        .get(format!("{api}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

pub(crate) async fn create_batch(api: &str, token: &str, quantity: u32) -> (String, Vec<String>) {
    let r = post(
        api,
        token,
        "/manufacturing/batch",
        json!({ "board": "bellcore-v2", "quantity": quantity }),
    )
    .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let sns = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial_number"].as_str().unwrap().to_owned())
        .collect();
    (body["batch_id"].as_str().unwrap().to_owned(), sns)
}

/// `vesper_device_messages_total` from an instance's auth listener.
pub(crate) async fn device_messages(serve: &Serve) -> u64 {
    metric(&http(), &serve.auth, "vesper_device_messages_total").await
}

/// Whether an instance's log says it provisioned `sn` (the line holds the message and the
/// serial number, with or without colours).
pub(crate) fn provisioned_in(log: &str, sn: &str) -> bool {
    log.lines()
        .any(|l| l.contains("device provisioned by its first heartbeat") && l.contains(sn))
}

pub(crate) async fn wait_listener(serve: &Serve) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health: Value = http()
            .get(format!("{}/healthz", serve.api))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["broker"] == "connected" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the heartbeat listener did not connect: {health}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_database_share_claims_events_and_heartbeats() {
    let c = Cluster::new();
    let (a, b) = (c.start_a(), c.start_b());
    // The broker asks instance A; both listeners log in through it.
    let _broker = Mosquitto::start(
        c.broker_port,
        a.auth.rsplit(':').next().unwrap().parse().unwrap(),
        0,
    );
    wait_listener(&a).await;
    wait_listener(&b).await;
    let apis = [a.api.clone(), b.api.clone()];
    let token = c.token.clone();

    // 8 clients, alternating instances: each makes a batch, then all claim from one batch.
    let (pool, pool_sns) = create_batch(&apis[1], &token, 80).await;
    let clients = (0..8).map(|i| {
        let (apis, token, pool) = (apis.clone(), token.clone(), pool.clone());
        tokio::spawn(async move {
            let (_, mut made) = create_batch(&apis[i % 2], &token, 20).await;
            let mut claimed = Vec::new();
            for n in 0.. {
                let api = &apis[(i + n) % 2];
                let r = post(
                    api,
                    &token,
                    &format!("/manufacturing/batch/{pool}/claim"),
                    json!({ "station": format!("bench-{i}/1") }),
                )
                .await;
                if r.status() == 409 {
                    let body: Value = r.json().await.unwrap();
                    assert_eq!(body["code"], "batch_done", "{body}");
                    break;
                }
                assert_eq!(r.status(), 200);
                let device: Value = r.json().await.unwrap();
                claimed.push(device["serial_number"].as_str().unwrap().to_owned());
            }
            made.sort();
            (made, claimed)
        })
    });
    let mut all_made = pool_sns.clone();
    let mut all_claimed = Vec::new();
    for client in clients {
        let (made, claimed) = client.await.unwrap();
        all_made.extend(made);
        all_claimed.extend(claimed);
    }
    let distinct: HashSet<&String> = all_made.iter().collect();
    assert_eq!(
        (all_made.len(), distinct.len()),
        (80 + 8 * 20, 80 + 8 * 20),
        "serial numbers distinct across instances"
    );
    let claimed: HashSet<&String> = all_claimed.iter().collect();
    assert_eq!(
        (all_claimed.len(), claimed.len()),
        (80, 80),
        "each device claimed once"
    );
    assert_eq!(claimed, pool_sns.iter().collect::<HashSet<_>>());

    // Long polls on A; heartbeats go through the broker to whichever instance it picks.
    let devices: Vec<String> = pool_sns[..6].to_vec();
    for (i, sn) in devices.iter().enumerate() {
        let body = json!({ "chip": "ESP32", "mac": format!("24:0A:C4:00:01:{i:02X}"), "firmware_version": "1.0.0", "station": "bench-1" });
        let r = post(
            &apis[i % 2],
            &token,
            &format!("/manufacturing/devices/{sn}/flashed"),
            body,
        )
        .await;
        assert!(r.status().is_success());
    }
    let polls: Vec<_> = devices
        .iter()
        .map(|sn| {
            let url = format!(
                "{}/manufacturing/devices/{sn}?wait=provisioned&timeout=30",
                apis[0]
            );
            let token = token.clone();
            tokio::spawn(async move {
                let r = http().get(url).bearer_auth(token).send().await.unwrap();
                let result = r
                    .headers()
                    .get("x-wait-result")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body: Value = r.json().await.unwrap();
                (result, body["status"].as_str().unwrap().to_owned())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await; // the polls are waiting
    let before = (device_messages(&a).await, device_messages(&b).await);
    let mut published = 0u64;
    for sn in &devices {
        let (client, mut events) = connect(c.broker_port, sn, sn, &device_password(sn))
            .await
            .unwrap();
        for _ in 0..5 {
            let reason = publish(
                &client,
                &mut events,
                &format!("vesper/{sn}/data"),
                r#"{"type":"heartbeat","fw":"1.0.0"}"#,
            )
            .await;
            assert_eq!(format!("{reason:?}"), "Success");
            published += 1;
        }
        let _ = client.disconnect().await;
    }
    for poll in polls {
        let (result, status) = poll.await.unwrap();
        assert_eq!(
            (result.as_deref(), status.as_str()),
            (Some("reached"), "provisioned")
        );
    }
    // Which instance provisioned which device: each says so in its log.
    let by_b: Vec<&String> = devices
        .iter()
        .filter(|sn| provisioned_in(&b.log(), sn))
        .collect();
    let by_a: Vec<&String> = devices
        .iter()
        .filter(|sn| provisioned_in(&a.log(), sn))
        .collect();
    assert_eq!(
        by_a.len() + by_b.len(),
        devices.len(),
        "each provisioned once, by one instance"
    );
    assert!(
        !by_b.is_empty(),
        "no heartbeat went to B, so no long poll on A was answered across instances"
    );

    // Every message handled exactly once with both up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (handled_a, handled_b) = loop {
        let now = (
            device_messages(&a).await - before.0,
            device_messages(&b).await - before.1,
        );
        if now.0 + now.1 >= published || Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = (
        device_messages(&a).await - before.0,
        device_messages(&b).await - before.1,
    );
    assert_eq!(settled, (handled_a, handled_b), "no late duplicates");
    assert_eq!(
        handled_a + handled_b,
        published,
        "A handled {handled_a}, B {handled_b} of {published}"
    );
    assert!(
        handled_a > 0 && handled_b > 0,
        "the broker shares the messages: A {handled_a}, B {handled_b}"
    );
    let audit = get_json(
        &apis[1],
        &token,
        "/manufacturing/audit?action=device.provisioned&limit=100",
    )
    .await;
    assert_eq!(
        audit["entries"].as_array().unwrap().len(),
        devices.len(),
        "one provisioning row per device"
    );
    a.kill();
    b.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_mid_batch_leaves_every_batch_whole_or_absent() {
    use rand::{Rng as _, SeedableRng as _};
    let c = Cluster::new();
    let b = c.start_b();
    let token = c.token.clone();
    // How long one batch of 1,000 takes here.
    let started = Instant::now();
    create_batch(&b.api, &token, 1000).await;
    let life = started.elapsed();
    let seed: u64 = rand::rng().random();
    println!("kill delays from seed {seed}; a batch takes {life:?}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut answered = Vec::new();
    let mut in_flight = 0;
    for round in 0..6 {
        let a = c.start_a();
        let request = {
            let (api, token) = (a.api.clone(), token.clone());
            // The connection may be cut by the kill: an error here is an answer too.
            tokio::spawn(async move {
                http()
                    .post(format!("{api}/manufacturing/batch"))
                    .bearer_auth(token)
                    .json(&json!({ "board": "bellcore-v2", "quantity": 1000 }))
                    .send()
                    .await
            })
        };
        tokio::time::sleep(life.mul_f64(rng.random_range(0.05..0.95))).await;
        a.kill();
        let answer = request.await.unwrap();
        if !matches!(&answer, Ok(r) if r.status() == 201) {
            in_flight += 1;
        }
        if let Ok(r) = answer
            && r.status() == 201
        {
            answered.push(
                r.json::<Value>().await.unwrap()["batch_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        // B, still up, sees every batch whole, with its audit row.
        let list = get_json(&b.api, &token, "/manufacturing/batches?limit=1000").await;
        let mut total = 0;
        for summary in list["batches"].as_array().unwrap() {
            let id = summary["batch_id"].as_str().unwrap();
            let batch = get_json(&b.api, &token, &format!("/manufacturing/batch/{id}")).await;
            let quantity = summary["quantity"].as_i64().unwrap();
            assert_eq!(
                batch["devices"].as_array().unwrap().len() as i64,
                quantity,
                "round {round}: {id}"
            );
            let audit = get_json(
                &b.api,
                &token,
                &format!("/manufacturing/audit?subject={id}&action=batch.create"),
            )
            .await;
            assert_eq!(
                audit["entries"].as_array().unwrap().len(),
                1,
                "round {round}: {id} has its audit row"
            );
            total += quantity;
        }
        let devices = get_json(&b.api, &token, "/manufacturing/devices?limit=1").await;
        assert_eq!(
            devices["total"].as_i64().unwrap(),
            total,
            "round {round}: no orphan devices"
        );
        for id in &answered {
            assert!(
                list["batches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["batch_id"] == id.as_str()),
                "{id} was answered 201"
            );
        }
    }
    println!("{in_flight} of 6 kills landed while the batch was in flight");
    assert!(
        in_flight >= 2,
        "only {in_flight} of 6 kills landed mid-request: the test proved too little"
    );
    // The database still takes batches from both.
    let a = c.start_a();
    create_batch(&a.api, &token, 3).await;
    a.kill();
    b.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_moves_a_sqlite_registry_and_refuses_a_used_target() {
    let pg = pg::PgCluster::start();
    let url = pg.create_database("moved");
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), "http://127.0.0.1:9/unused-jwks", "");
    let out = vesper_env(
        dir.path(),
        &["token", "create", "admin-1", "--role", "admin"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).split_whitespace().last().unwrap().to_owned();
    // A SQLite registry with batches, a flashed device, users, mail and a revoked token.
    let serve = Serve::start(dir.path(), &[]);
    let (_, sns) = create_batch(&serve.api, &token, 30).await;
    // Ids past 9, so that an order by text ("10" before "2") would show.
    for _ in 0..11 {
        create_batch(&serve.api, &token, 1).await;
    }
    let flash = json!({ "chip": "ESP32", "mac": "24:0A:C4:00:00:01", "firmware_version": "1.0.0", "station": "bench\\1" });
    assert!(
        post(
            &serve.api,
            &token,
            &format!("/manufacturing/devices/{}/flashed", sns[0]),
            flash
        )
        .await
        .status()
        .is_success()
    );
    let users = json!({ "owner": "ana", "users_list": ["bo"] });
    assert!(
        post(
            &serve.api,
            &token,
            &format!("/manufacturing/devices/{}/users", sns[0]),
            users
        )
        .await
        .status()
        .is_success()
    );
    let assign = json!({ "email": "ana@example.com", "name": "Ana \\ \"quoted\"" });
    assert!(
        post(
            &serve.api,
            &token,
            &format!("/manufacturing/devices/{}/assign", sns[1]),
            assign
        )
        .await
        .status()
        .is_success()
    );
    let before = get_json(
        &serve.api,
        &token,
        &format!("/manufacturing/devices/{}", sns[0]),
    )
    .await;
    serve.kill();
    let out = vesper_env(
        dir.path(),
        &["token", "create", "old", "--role", "viewer"],
        &[],
    );
    assert!(out.status.success());
    assert!(
        vesper_env(dir.path(), &["token", "revoke", "old"], &[])
            .status
            .success()
    );

    let from = format!("sqlite:{}", dir.path().join("data").display());
    let out = vesper_env(dir.path(), &["migrate", "--from", &from, "--to", &url], &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report = stdout(&out);
    for (table, rows) in [
        ("batches", 12),
        ("devices", 41),
        ("device_users", 2),
        ("tokens", 2),
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("{table} ")))
            .unwrap_or_else(|| panic!("{report}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            (fields[1], fields[2], fields[4]),
            (rows.to_string().as_str(), rows.to_string().as_str(), "same"),
            "{line}"
        );
    }
    assert!(
        report.lines().filter(|l| l.ends_with(" same")).count() >= 7,
        "{report}"
    );

    // A second run is refused: the target is no longer empty.
    let again = vesper_env(dir.path(), &["migrate", "--from", &from, "--to", &url], &[]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already holds a registry"),
        "{}",
        stderr(&again)
    );
    let wrong = vesper_env(dir.path(), &["migrate", "--from", &url, "--to", &from], &[]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("--from must be a SQLite registry"),
        "{}",
        stderr(&wrong)
    );

    // The backend on PostgreSQL answers as it did on SQLite; the old token still works, the
    // revoked one still does not, and new rows take new ids.
    let serve = Serve::start(dir.path(), &[("VESPER_DATABASE_URL", &url)]);
    let after = get_json(
        &serve.api,
        &token,
        &format!("/manufacturing/devices/{}", sns[0]),
    )
    .await;
    assert_eq!(after, before);
    let (third, _) = create_batch(&serve.api, &token, 1).await;
    assert_eq!(third, "B-0013");
    let invite = get_json(
        &serve.api,
        &token,
        &format!("/manufacturing/devices/{}", sns[1]),
    )
    .await;
    assert_eq!(invite["assigned_name"], "Ana \\ \"quoted\"");
    serve.kill();
}
