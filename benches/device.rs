//! Benchmark: a device's login, through the real broker path (mosquitto + the vesper plugin +
//! `vesper serve`, its heartbeat listener connected), as the firmware's own core does it
//! (`vesper-device --once`: read the NVS image, connect with the last will, publish the online
//! status, one QoS 1 heartbeat acknowledged, disconnect), against Eclipse's `mosquitto_pub` doing
//! the least a device can (connect, one QoS 1 publish, disconnect) with the same credentials.
//! Both are one process per device, one after another, each device's first login (the plugin
//! asks the backend); `DEVICE_RUNS` (default 200) each. Then every device of both sets must be
//! provisioned by its heartbeat. Not a timed test.
//!
//! The broker runs with the shipped `set_tcp_nodelay true` (without it, p50 55 ms instead of 11:
//! the broker's second small answer waits for the device's delayed ACK). The runner's process
//! start is measured alone too: it links libcurl (for OTA) and its 30-odd libraries.
//!
//! Needs the release plugin and the host runner: `scripts/bench` builds both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vesper::config::{Broker, Config, Machine};
use vesper::credentials::MasterSecret;
use vesper::model::{FlashReport, NewBatch, Status};
use vesper::server::{self, ServeOptions};

#[path = "support/broker.rs"]
mod broker;
use broker::{free_port, mosquitto};

const RUNS: usize = 200;
const SECRET: &str = "vesper-bench-secret-0123456789abcdef";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn existing(paths: &[&str]) -> PathBuf {
    paths
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("none of {paths:?}: run scripts/bench (it builds them)"))
}

/// mosquitto with the plugin asking the backend's auth listener, with the shipped settings
/// (local ACL; TCP_NODELAY from `support/broker.rs`).
fn broker_with_plugin(dir: &Path, port: u16, auth_port: u16) -> Child {
    let plugin = std::fs::canonicalize(existing(&[
        "target/release/libvesper_mosquitto.so",
        "target/debug/libvesper_mosquitto.so",
    ]))
    .unwrap();
    mosquitto(
        dir,
        "plugin",
        port,
        &format!(
            "plugin {}\nplugin_opt_http_host 127.0.0.1\n\
             plugin_opt_http_port {auth_port}\nplugin_opt_http_getuser_uri /mqtt/auth/user\n\
             plugin_opt_http_aclcheck_uri /mqtt/auth/acl\nplugin_opt_http_timeout 2\n\
             plugin_opt_local_acl true\nplugin_opt_service_account vesper-backend\n\
             plugin_opt_topic_data vesper/{{sn}}/data\nplugin_opt_topic_status vesper/{{sn}}/status\n\
             plugin_opt_topic_control vesper/{{sn}}/control\n",
            plugin.display()
        ),
    )
}

/// Runs `command` and returns how long it took; it must succeed. Cargo's LD_LIBRARY_PATH (the
/// build folders) is dropped, so the loader searches only the system's, as on a deployment.
fn timed(command: &mut Command) -> f64 {
    command.env_remove("LD_LIBRARY_PATH");
    let start = Instant::now();
    let out = command.output().expect("run");
    let took = start.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        command,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let total: f64 = ms.iter().sum();
    println!(
        "  {name:<44} p50 {:6.2} ms   p99 {:6.2} ms   mean {:6.2} ms   {:5.1} devices/s",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        total / ms.len() as f64,
        ms.len() as f64 * 1000.0 / total
    );
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("DEVICE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(RUNS);
    let runner = std::fs::canonicalize(existing(&["firmware/build/vesper-device"])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let machine = Machine {
        station_name: "bench".into(),
        firmware_cache: dir.path().join("cache"),
    };
    let broker_port = free_port();
    let mut config = Config::example_at(&dir.path().join("config.toml"), &machine);
    config.serve.broker = Some(Broker {
        host: "127.0.0.1".into(),
        port: broker_port,
        tls: false,
    });
    let board = config.board("bellcore-v2").unwrap().clone();
    let options = ServeOptions {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        auth_listen: "127.0.0.1:0".parse().unwrap(),
    };
    let secret = MasterSecret::new(SECRET, "bench").unwrap();
    let running = server::start(config, secret.clone(), &options)
        .await
        .unwrap();
    let mut broker = broker_with_plugin(dir.path(), broker_port, running.auth_addr.port());
    let registry = running.state.store.clone();
    let batch = registry
        .create_batch(
            &NewBatch {
                board: &board,
                quantity: 2 * runs as u32,
                subscription_plan: "standard".into(),
                available_outputs: 8,
            },
            "bench",
        )
        .await
        .unwrap();
    for (i, d) in batch.devices.iter().enumerate() {
        let report = FlashReport {
            chip: "ESP32".into(),
            mac: format!("24:0A:C4:00:{:02X}:{:02X}", i >> 8 & 0xff, i & 0xff),
            firmware_version: "1.0.0".into(),
            station: "bench".into(),
            force: false,
        };
        registry
            .flashed(d.serial_number.as_str(), &report, "bench")
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // the heartbeat listener logs in
    let (firmware_set, peer_set) = batch.devices.split_at(runs);

    let address = format!("127.0.0.1:{broker_port}");
    let firmware_ms = tokio::task::spawn_blocking({
        let (devices, dir, board, secret) = (
            firmware_set.to_vec(),
            dir.path().to_owned(),
            board.clone(),
            secret.clone(),
        );
        move || {
            devices
                .iter()
                .map(|d| {
                    let sn = d.serial_number.parse().unwrap();
                    let image = vesper::demo::device_image(&board, &secret, &sn);
                    let nvs = dir.join("nvs.bin");
                    std::fs::write(&nvs, image).unwrap();
                    timed(Command::new(&runner).args([
                        "--nvs",
                        nvs.to_str().unwrap(),
                        "--broker",
                        &address,
                        "--fw",
                        "1.0.0",
                        "--once",
                    ]))
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .unwrap();
    let peer_ms = tokio::task::spawn_blocking({
        let (devices, secret) = (peer_set.to_vec(), secret.clone());
        move || {
            devices
                .iter()
                .map(|d| {
                    let sn = d.serial_number.as_str();
                    let password = secret.device_password(&sn.parse().unwrap());
                    timed(Command::new("mosquitto_pub").args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &broker_port.to_string(),
                        "-V",
                        "mqttv311",
                        "-i",
                        sn,
                        "-u",
                        sn,
                        "-P",
                        password.expose(),
                        "-q",
                        "1",
                        "-t",
                        &format!("vesper/{sn}/data"),
                        "-m",
                        r#"{"type":"heartbeat","fw":"1.0.0","uptime":1}"#,
                    ]))
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .unwrap();

    // Every heartbeat of both sets provisioned its device.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let provisioned = registry
            .stats()
            .await
            .unwrap()
            .by_status
            .get(Status::Provisioned);
        if provisioned == 2 * runs as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{provisioned} of {} provisioned",
            2 * runs
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What starting each process costs alone (loading its libraries): the host runner links
    // libcurl (for OTA) and its 30-odd libraries, mosquitto_pub only libmosquitto and OpenSSL.
    let start_only = |program: &Path, arg: &str| -> Vec<f64> {
        (0..runs)
            .map(|_| {
                // mosquitto_pub answers --help with exit 1: only the time counts here.
                let start = Instant::now();
                let _ = Command::new(program)
                    .arg(arg)
                    .env_remove("LD_LIBRARY_PATH")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("run");
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect()
    };
    let runner = std::fs::canonicalize("firmware/build/vesper-device").unwrap();
    let firmware_start = start_only(&runner, "--help");
    let peer_start = start_only(Path::new("mosquitto_pub"), "--help");
    println!(
        "one device's first login and heartbeat through mosquitto + plugin + vesper serve, {runs} devices each, one process per device:"
    );
    summary("vesper-device --once (the firmware core)", firmware_ms);
    summary("mosquitto_pub -q 1 (Eclipse's client)", peer_ms);
    println!("process start alone:");
    summary("vesper-device --help", firmware_start);
    summary("mosquitto_pub --help", peer_start);
    println!("  all {} devices provisioned by their heartbeat", 2 * runs);
    let _ = broker.kill();
    let _ = broker.wait();
    running.stop().await.unwrap();
}
