//! Benchmark: a device's first login and heartbeat over TLS, through the real broker path
//! (mosquitto with a TLS listener + the vesper plugin + `vesper serve`, its heartbeat listener
//! connected), until the registry has the device `provisioned`: as the shipped firmware does it
//! (`vesper-device`, which is `firmware/src/main.cpp` on the host board, built without sanitizers,
//! flashed beforehand with `--write-only`, then timed from power-on: the bootloader's image check,
//! NVS read, Wi-Fi join, TLS with the broker verified, login with the last will,
//! retained online status, subscription, QoS 1 heartbeat), against Eclipse's `mosquitto_pub`
//! doing the least a device can (TLS with the same CA, login, one QoS 1 publish) with the same
//! credentials. Both are one process per device, one after another, each device's first login
//! (the plugin asks the backend); `DEVICE_RUNS` (default 200) each. Not a timed test.
//!
//! The broker runs with the shipped `set_tcp_nodelay true`. The firmware's process start is
//! measured alone too (`--help`).
//!
//! Needs the release plugin and the firmware's host build without sanitizers
//! (`firmware/build-release`): `scripts/bench` builds both.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vesper::config::Broker;
use vesper::model::{FlashReport, NewBatch, Status};
use vesper::nvs::{DeviceNetwork, DeviceNvs};

#[path = "support/backend.rs"]
mod backend;
#[path = "support/broker.rs"]
mod broker;
use broker::{free_port, mosquitto};

const RUNS: usize = 200;
const WIFI: (&str, &str) = ("bench", "bench wifi");

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
/// (local ACL; TCP_NODELAY from `support/broker.rs`): plain `port` for the backend's heartbeat
/// listener, TLS `tls_port` for devices.
fn broker_with_plugin(dir: &Path, port: u16, tls_port: u16, auth_port: u16) -> Child {
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
            "listener {tls_port} 127.0.0.1\ncertfile {d}/cert.pem\nkeyfile {d}/key.pem\n\
             plugin {}\nplugin_opt_http_host 127.0.0.1\n\
             plugin_opt_http_port {auth_port}\nplugin_opt_http_getuser_uri /mqtt/auth/user\n\
             plugin_opt_http_aclcheck_uri /mqtt/auth/acl\nplugin_opt_http_timeout 2\n\
             plugin_opt_local_acl true\nplugin_opt_service_account vesper-backend\n\
             plugin_opt_topic_data vesper/{{sn}}/data\nplugin_opt_topic_status vesper/{{sn}}/status\n\
             plugin_opt_topic_control vesper/{{sn}}/control\n",
            plugin.display(),
            d = dir.display(),
        ),
    )
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let total: f64 = ms.iter().sum();
    println!(
        "  {name:<52} p50 {:6.2} ms   p99 {:6.2} ms   mean {:6.2} ms   {:5.1} devices/s",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        total / ms.len() as f64,
        ms.len() as f64 * 1000.0 / total
    );
}

/// Polls the registry until `sn` is provisioned (every 1 ms; at most 10 s).
async fn until_provisioned(store: &std::sync::Arc<dyn vesper::registry::Store>, sn: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.device(sn).await.unwrap().status != Status::Provisioned {
        assert!(Instant::now() < deadline, "{sn} was not provisioned");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("DEVICE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(RUNS);
    let firmware =
        std::fs::canonicalize(existing(&["firmware/build-release/vesper-device"])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let (broker_port, tls_port) = (free_port(), free_port());
    let mut config = backend::example_config(dir.path());
    config.serve.broker = Some(Broker {
        host: "127.0.0.1".into(),
        port: broker_port,
        tls: false,
        amqp: Vec::new(),
    });
    let board = config.board("bellcore-v2").unwrap().clone();
    let secret = backend::secret();
    let running = backend::start(config, dir.path().join("data")).await;
    let mut broker =
        broker_with_plugin(dir.path(), broker_port, tls_port, running.auth_addr.port());
    let store = running.state.store.clone();
    let batch = store
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
        store
            .flashed(d.serial_number.as_str(), &report, "bench")
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // the heartbeat listener logs in
    let (firmware_set, peer_set) = batch.devices.split_at(runs);
    let table = dir.path().join("table.bin");
    std::fs::write(&table, board.table.to_bin().unwrap()).unwrap();
    let app = dir.path().join("app.bin");
    std::fs::write(&app, vesper::demo::app_image(300_000, "1.0.0")).unwrap();

    let mut firmware_ms = Vec::with_capacity(runs);
    for (i, d) in firmware_set.iter().enumerate() {
        let sn: vesper::serial::SerialNumber = d.serial_number.parse().unwrap();
        let password = secret.device_password(&sn);
        let image = vesper::nvs::device_image(
            u64::from(board.nvs.size),
            &DeviceNvs {
                serial_number: &sn,
                hw_type: board.hw_type.as_str(),
                hw_version: board.hw_version.as_str(),
                mqtt_pass: &password,
                mqtt_host: "127.0.0.1",
                mqtt_port: tls_port,
                network: DeviceNetwork {
                    wifi_ssid: Some(WIFI.0),
                    wifi_pass: Some(WIFI.1),
                    mqtt_ca: Some(&cert_pem),
                    ota_ca: None,
                },
                extra: &board.nvs_extra,
            },
        )
        .unwrap();
        let nvs = dir.path().join("nvs.bin");
        std::fs::write(&nvs, image).unwrap();
        // Flashed first (untimed), as the station does; then powered on.
        let flash = dir.path().join(format!("flash-{i}.bin"));
        let written = Command::new(&firmware)
            .args([
                "--flash",
                flash.to_str().unwrap(),
                "--table",
                table.to_str().unwrap(),
            ])
            .args([
                "--nvs",
                nvs.to_str().unwrap(),
                "--app",
                app.to_str().unwrap(),
            ])
            .arg("--write-only")
            .status()
            .expect("run vesper-device");
        assert!(written.success());
        let start = Instant::now();
        let mut child = Command::new(&firmware)
            .args(["--flash", flash.to_str().unwrap()])
            .args(["--wifi", &format!("{}:{}", WIFI.0, WIFI.1)])
            .env_remove("LD_LIBRARY_PATH")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run vesper-device");
        let out = BufReader::new(child.stdout.take().unwrap());
        let said = tokio::task::spawn_blocking(move || {
            out.lines()
                .map_while(Result::ok)
                .find(|l| l.starts_with("vesper: heartbeat sent") || l.starts_with("vesper: error"))
        })
        .await
        .unwrap();
        assert_eq!(
            said.as_deref().map(str::trim_end),
            Some("vesper: heartbeat sent"),
            "{sn}"
        );
        until_provisioned(&store, sn.as_str()).await;
        firmware_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&flash);
    }
    let mut peer_ms = Vec::with_capacity(runs);
    for d in peer_set {
        let sn = d.serial_number.as_str().to_owned();
        let password = secret.device_password(&sn.parse().unwrap());
        let start = Instant::now();
        let status = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &tls_port.to_string(),
                "-V",
                "mqttv311",
            ])
            .args(["--cafile", dir.path().join("cert.pem").to_str().unwrap()])
            .args(["-i", &sn, "-u", &sn, "-P", password.expose(), "-q", "1"])
            .args(["-t", &format!("vesper/{sn}/data")])
            .args(["-m", r#"{"type":"heartbeat","fw":"1.0.0","uptime":1}"#])
            .env_remove("LD_LIBRARY_PATH")
            .status()
            .expect("run mosquitto_pub");
        assert!(status.success(), "mosquitto_pub for {sn}");
        until_provisioned(&store, &sn).await;
        peer_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    // What starting each process costs alone (loading its libraries).
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
    let firmware_start = start_only(&firmware, "--help");
    let peer_start = start_only(Path::new("mosquitto_pub"), "--help");
    println!(
        "one device's first login and heartbeat over TLS through mosquitto + plugin + vesper serve, until provisioned in the registry, {runs} devices each, one process per device:"
    );
    summary(
        "vesper-device (the shipped firmware, src/main.cpp)",
        firmware_ms,
    );
    summary("mosquitto_pub -q 1 --cafile (Eclipse's client)", peer_ms);
    println!("process start alone:");
    summary("vesper-device --help", firmware_start);
    summary("mosquitto_pub --help", peer_start);
    println!("  all {} devices provisioned by their heartbeat", 2 * runs);
    let _ = broker.kill();
    let _ = broker.wait();
    running.stop().await.unwrap();
}
