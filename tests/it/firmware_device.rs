//! The firmware that ships, run: `vesper-device` is `firmware/src/main.cpp` itself, linked with
//! the host board layer (firmware/host/) and built under AddressSanitizer and UBSan. It boots from
//! an `nvs.bin` fetched from a real `vesper serve`, logs in over TLS to Debian's mosquitto with
//! this project's plugin, is provisioned by its acknowledged QoS 1 heartbeat, updates itself over
//! HTTPS from the shipped nginx site, rolls back an update that cannot log in, refuses servers
//! it cannot verify, and restarts itself when offline too long. Every console line is checked as
//! DESIGN.md section 3 writes it, and a test fails if a sanitizer reports anything.

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::json;

use crate::broker::{Mosquitto, publish, received};
use crate::deploy_nginx::ServerCert;
use crate::device_host::{Bench, Device, bench, heartbeats, wait_status};
use crate::firmware_publish::{pio_build, pio_build_with, publish_pio};
use crate::support::{root, stderr};

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_firmware_logs_in_over_tls_and_its_acknowledged_heartbeat_provisions_it() {
    let bench = bench("", None, None).await;
    let (sn, args) = bench.board("24:0A:C4:00:01:01", "1.0.0", &[]).await;
    let (_owner, mut events) = bench
        .owner(&sn, "uid-owner", &format!("vesper/{sn}/#"))
        .await;
    let device = Device::start(&args);
    device.wait_line(0, "vesper: heartbeat sent", Duration::from_secs(20));
    assert_eq!(
        device.console()[..4],
        [
            format!("vesper: boot sn={sn} hw=BC02 fw=1.0.0 mac=24:0A:C4:00:01:01 chip=esp32"),
            "vesper: wifi connected ip=127.0.0.1".into(),
            "vesper: mqtt connected".into(),
            "vesper: heartbeat sent".into(),
        ]
    );
    wait_status(&bench.app, &sn, "provisioned").await;
    // The owner sees the retained online status and heartbeats every heartbeat_s (2 s, NVS).
    let got = received(&mut events, Duration::from_millis(4500)).await;
    assert_eq!(
        got[0],
        (
            format!("vesper/{sn}/status"),
            r#"{"online":true,"fw":"1.0.0"}"#.to_owned()
        )
    );
    let beats = heartbeats(&got);
    assert!(beats.len() >= 2, "{got:?}");
    for beat in &beats {
        assert_eq!(beat["type"], "heartbeat");
        assert_eq!(beat["fw"], "1.0.0");
        assert_eq!(beat["rssi"], -55);
        assert_eq!(beat["reset_reason"], "poweron");
        assert!(beat["heap_free"].as_u64().unwrap() > 0);
    }
    // QoS 1: the broker acknowledged them (the plugin log shows the device's PUBLISH q1).
    assert!(
        bench
            .broker
            .log()
            .contains(&format!("Received PUBLISH from {sn} (d0, q1, r0, m"))
    );

    // Revoked: the plugin disconnects it at once, and its next login is refused.
    let from = device.console().len();
    let revoked = Instant::now();
    let r = bench
        .app
        .post(
            &format!("/manufacturing/devices/{sn}/status"),
            &bench.app.admin,
            json!({ "status": "revoked" }),
        )
        .await;
    assert!(r.status().is_success());
    let cut = device.wait_line(
        from,
        "vesper: error what=mqtt disconnected",
        Duration::from_secs(5),
    );
    assert!(
        revoked.elapsed() < Duration::from_secs(2),
        "cut off after {:?}",
        revoked.elapsed()
    );
    device.wait_line(
        cut,
        "vesper: error what=mqtt refused (not authorised)",
        Duration::from_secs(15),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_go_on_when_the_clock_crosses_2_pow_32_ms() {
    let bench = bench("", None, None).await;
    let start = (1u64 << 32) - 3000;
    let (sn, args) = bench
        .board(
            "24:0A:C4:00:01:02",
            "1.0.0",
            &["--clock-start-ms", &start.to_string()],
        )
        .await;
    let (_owner, mut events) = bench
        .owner(&sn, "uid-owner", &format!("vesper/{sn}/data"))
        .await;
    let device = Device::start(&args);
    device.wait_line(0, "vesper: mqtt connected", Duration::from_secs(20));
    // 2 s heartbeats from 2^32 - 3 s: some before the wrap, and they go on after it.
    let beats = heartbeats(&received(&mut events, Duration::from_secs(9)).await);
    let uptimes: Vec<u64> = beats
        .iter()
        .map(|b| b["uptime"].as_u64().unwrap())
        .collect();
    let wrap_s = (1u64 << 32) / 1000;
    assert!(uptimes.iter().any(|&u| u < wrap_s), "{uptimes:?}");
    assert!(
        uptimes.iter().filter(|&&u| u > wrap_s).count() >= 2,
        "heartbeats stopped at the wrap: {uptimes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_over_https_is_kept_after_its_heartbeat_and_a_broken_one_rolls_back() {
    let bench = bench(
        "[[boards.nvs_extra]]\nkey = \"ota_confirm_s\"\ntype = \"u32\"\nvalue = 8\n",
        None,
        None,
    )
    .await;
    let (sn, args) = bench.board("24:0A:C4:00:01:03", "1.0.0", &[]).await;
    let (owner, mut events) = bench
        .owner(&sn, "uid-owner", &format!("vesper/{sn}/status"))
        .await;
    let device = Device::start(&args);
    let at = device.wait_line(0, "vesper: heartbeat sent", Duration::from_secs(20));
    bench.wait_subscribed(&sn);
    publish_pio(
        &bench.app,
        &pio_build(bench.work.path(), &bench.app, "1.1.0"),
        "1.1.0",
    )
    .await;
    let control = format!("vesper/{sn}/control");
    assert!(matches!(
        publish(&owner, &mut events, &control, r#"{"cmd":"ota"}"#).await,
        PubAckReason::Success
    ));
    let at = device.wait_line(
        at,
        "vesper: ota update from=1.0.0 to=1.1.0",
        Duration::from_secs(10),
    );
    let at = device.wait_line(at, "vesper: ota done fw=1.1.0", Duration::from_secs(30));
    let at = device.wait_line(at, "vesper: reboot", Duration::from_secs(5));
    let at = device.wait_for(at, Duration::from_secs(10), "the new boot", |l| {
        l.starts_with(&format!("vesper: boot sn={sn} hw=BC02 fw=1.1.0 "))
    });
    let at = device.wait_line(
        at,
        "vesper: ota confirmed fw=1.1.0",
        Duration::from_secs(20),
    );

    // 1.2.0 boots but its radio never comes up (a broken build): after ota_confirm_s (8 s, NVS)
    // it gives way, and the board is back on 1.1.0, which says so on its status topic.
    let mut broken = vesper::demo::app_image(300_000, "1.2.0");
    broken.extend_from_slice(b"vesper-host-fault:no-network");
    publish_pio(
        &bench.app,
        &pio_build_with(bench.work.path(), &bench.app, "1.2.0", broken),
        "1.2.0",
    )
    .await;
    received(&mut events, Duration::from_millis(300)).await;
    publish(&owner, &mut events, &control, r#"{"cmd":"ota"}"#).await;
    let at = device.wait_line(at, "vesper: ota done fw=1.2.0", Duration::from_secs(30));
    let at = device.wait_line(
        at,
        "vesper: wifi failed reason=no ap found",
        Duration::from_secs(10),
    );
    let at = device.wait_line(
        at,
        "vesper: ota rollback fw=1.2.0 reason=no-mqtt",
        Duration::from_secs(20),
    );
    let at = device.wait_for(at, Duration::from_secs(10), "the old boot", |l| {
        l.starts_with(&format!("vesper: boot sn={sn} hw=BC02 fw=1.1.0 "))
    });
    device.wait_line(at, "vesper: heartbeat sent", Duration::from_secs(20));
    let statuses: Vec<String> = received(&mut events, Duration::from_millis(500))
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        statuses.last().map(String::as_str),
        Some(r#"{"online":true,"fw":"1.1.0"}"#),
        "{statuses:?}"
    );
    assert!(
        !device
            .console()
            .iter()
            .any(|l| l == "vesper: ota confirmed fw=1.2.0"),
        "{:?}",
        device.console()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_the_board_cannot_verify_are_refused_for_mqtt_and_for_updates() {
    // The update server presents a certificate the board's ota_ca did not sign.
    let bench = bench("", None, Some(ServerCert::new(None))).await;
    let (sn, args) = bench.board("24:0A:C4:00:01:04", "1.0.0", &[]).await;
    let (owner, mut events) = bench
        .owner(&sn, "uid-owner", &format!("vesper/{sn}/status"))
        .await;
    publish_pio(
        &bench.app,
        &pio_build(bench.work.path(), &bench.app, "1.1.0"),
        "1.1.0",
    )
    .await;
    let device = Device::start(&args);
    let at = device.wait_line(0, "vesper: heartbeat sent", Duration::from_secs(20));
    bench.wait_subscribed(&sn);
    publish(
        &owner,
        &mut events,
        &format!("vesper/{sn}/control"),
        r#"{"cmd":"ota"}"#,
    )
    .await;
    let at = device.wait_line(
        at,
        "vesper: error what=ota cannot fetch latest.json (http -1)",
        Duration::from_secs(20),
    );
    assert!(
        !device.console()[at..]
            .iter()
            .any(|l| l.contains("ota update"))
    );
    drop(device);

    // The broker on the same port with another certificate: the board never logs in.
    let Bench {
        app,
        broker,
        tls_port,
        nginx: _nginx,
        work: _work,
        broker_cert,
    } = bench;
    let port = broker.port;
    drop(broker);
    let other = ServerCert::new(None);
    assert_ne!(other.cert_pem, broker_cert.cert_pem);
    let _impostor = Mosquitto::start_tls(
        port,
        tls_port,
        app.auth_port(),
        &other.cert_pem,
        &other.key_pem,
    );
    let mut args = args;
    let flash = args.iter().position(|a| a == "--flash").unwrap() + 1;
    args[flash].push_str(".second");
    let device = Device::start(&args);
    device.wait_line(
        0,
        "vesper: error what=mqtt unreachable (ESP_ERR_MBEDTLS_SSL_HANDSHAKE_FAILED)",
        Duration::from_secs(20),
    );
    assert!(
        !device
            .console()
            .iter()
            .any(|l| l == "vesper: mqtt connected")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retained_reboot_is_ignored_and_a_slow_download_keeps_the_session() {
    let bench = bench("", Some("150k"), None).await;
    let (sn, args) = bench.board("24:0A:C4:00:01:05", "1.0.0", &[]).await;
    let (owner, mut events) = bench
        .owner(&sn, "uid-owner", &format!("vesper/{sn}/#"))
        .await;
    // An old reboot order left retained on the control topic.
    let control = format!("vesper/{sn}/control");
    owner
        .publish(
            &control,
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            true,
            r#"{"cmd":"reboot"}"#,
        )
        .await
        .unwrap();
    received(&mut events, Duration::from_millis(300)).await;
    let device = Device::start(&args);
    let at = device.wait_line(
        0,
        "vesper: control ignored reason=retained",
        Duration::from_secs(20),
    );
    device.wait_line(at, "vesper: heartbeat sent", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        device
            .console()
            .iter()
            .filter(|l| l.starts_with("vesper: boot "))
            .count(),
        1
    );
    assert!(!device.console().iter().any(|l| l == "vesper: reboot"));
    // Clear it, then a 1.5 MB release at 150 KB/s: about 10 s of download, during which the
    // session stays up (no will) and heartbeats go on.
    owner
        .publish(&control, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    let big = vesper::demo::app_image(1_500_000, "1.1.0");
    publish_pio(
        &bench.app,
        &pio_build_with(bench.work.path(), &bench.app, "1.1.0", big),
        "1.1.0",
    )
    .await;
    received(&mut events, Duration::from_millis(300)).await;
    publish(&owner, &mut events, &control, r#"{"cmd":"ota"}"#).await;
    let started = device.wait_line(
        0,
        "vesper: ota update from=1.0.0 to=1.1.0",
        Duration::from_secs(10),
    );
    let during = received(&mut events, Duration::from_secs(6)).await;
    assert!(
        !device.console()[started..]
            .iter()
            .any(|l| l.starts_with("vesper: ota done")),
        "the download was not slow: {:?}",
        device.console()
    );
    assert!(
        heartbeats(&during).len() >= 2,
        "heartbeats stopped during the download: {during:?}"
    );
    assert!(
        !during.iter().any(|(_, p)| p == r#"{"online":false}"#),
        "the broker published the will: {during:?}"
    );
    device.wait_line(
        started,
        "vesper: ota done fw=1.1.0",
        Duration::from_secs(40),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_board_offline_past_offline_restart_s_restarts_itself() {
    let bench = bench(
        "[[boards.nvs_extra]]\nkey = \"offline_reset_s\"\ntype = \"u32\"\nvalue = 4\n",
        None,
        None,
    )
    .await;
    let (sn, args) = bench.board("24:0A:C4:00:01:06", "1.0.0", &[]).await;
    // The broker is gone: the board cannot log in, and restarts after 4 s.
    let Bench { app, broker, .. } = bench;
    drop(broker);
    let device = Device::start(&args);
    let at = device.wait_line(0, "vesper: restart reason=offline", Duration::from_secs(15));
    device.wait_for(at, Duration::from_secs(10), "a new boot", |l| {
        l.starts_with(&format!("vesper: boot sn={sn} "))
    });
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrongly_typed_key_is_named_before_any_login() {
    // An NVS with every key but the Wi-Fi ones, and one whose mqtt_port is a u32.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("nvs.csv");
    let table = dir.path().join("table.csv");
    std::fs::copy(root().join("partitions/custom_4mb.csv"), &table).unwrap();
    let app = dir.path().join("app.bin");
    std::fs::write(&app, vesper::demo::app_image(100_000, "1.0.0")).unwrap();
    let table_bin = dir.path().join("table.bin");
    let parsed =
        vesper::partitions::PartitionTable::parse(&std::fs::read(&table).unwrap(), "table")
            .unwrap();
    std::fs::write(&table_bin, parsed.to_bin().unwrap()).unwrap();
    for (port_line, expected) in [
        (
            "mqtt_port,data,u16,8883\n",
            "vesper: error what=nvs wifi_ssid: missing; wifi_pass: missing",
        ),
        (
            "mqtt_port,data,u32,8883\nwifi_ssid,data,string,bench\nwifi_pass,data,string,pw\n",
            "vesper: error what=nvs mqtt_port: is a u32, not a u16",
        ),
    ] {
        std::fs::write(
            &csv,
            format!(
                "key,type,encoding,value\nvesper,namespace,,\nserial_number,data,string,PV-26A18-BC02R-X7KQA\n\
                 hw_type,data,string,BC\nhw_version,data,string,02\nmqtt_user,data,string,PV-26A18-BC02R-X7KQA\n\
                 mqtt_pass,data,string,25fd3d9acfa670d8cb7a309e440d2ef1\nmqtt_host,data,string,127.0.0.1\n{port_line}"
            ),
        )
        .unwrap();
        let nvs = dir.path().join("nvs.bin");
        let out = crate::support::vesper(
            dir.path(),
            &[
                "nvs",
                "generate",
                csv.to_str().unwrap(),
                nvs.to_str().unwrap(),
                "0x6000",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let flash = dir.path().join(format!("flash-{}", port_line.len()));
        let args: Vec<String> = [
            "--flash",
            flash.to_str().unwrap(),
            "--table",
            table_bin.to_str().unwrap(),
            "--nvs",
            nvs.to_str().unwrap(),
            "--app",
            app.to_str().unwrap(),
            "--wifi",
            "bench:pw",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let device = Device::start(&args);
        device.wait_line(0, expected, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(device.console(), [expected], "nothing else: no login");
    }
    let mut bad = Device::start(&["--flash".into()]);
    assert_eq!(bad.wait_exit(Duration::from_secs(10)), 2);
}
