//! The firmware that ships, run: `vesper-device` is `firmware/src/main.cpp` itself, linked with
//! the host board layer (firmware/host/) and built under AddressSanitizer and UBSan. It boots from
//! an `nvs.bin` fetched from a real `vesper serve`, logs in over TLS to Debian's mosquitto with
//! this project's plugin, is provisioned by its acknowledged QoS 1 heartbeat, updates itself over
//! HTTPS from the shipped nginx site, rolls back an update that cannot log in, refuses servers
//! it cannot verify, and restarts itself when offline too long. Every console line is checked as
//! DESIGN.md section 3 writes it, and a test fails if a sanitizer reports anything.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::{Value, json};

use crate::backend_support::{App, user_token};
use crate::broker::{Mosquitto, connect, flashed, free_port, publish, received, subscribe};
use crate::deploy_nginx::{Nginx, ServerCert};
use crate::support::{root, stderr, stdout, vesper_env};

/// The host build of the firmware, built by CMake as `scripts/test` does (and built here if it is
/// missing, under a lock, so tests run alone build it too).
fn firmware() -> PathBuf {
    let build = root().join("firmware/build");
    std::fs::create_dir_all(&build).unwrap();
    let lock = std::fs::File::create(build.join(".test-build.lock")).unwrap();
    fs4::FileExt::lock(&lock).unwrap();
    let binary = build.join("vesper-device");
    if !binary.exists() {
        for args in [
            vec!["-S", "firmware", "-B", "firmware/build"],
            vec!["--build", "firmware/build", "--target", "vesper-device"],
        ] {
            let out = Command::new("cmake")
                .args(&args)
                .current_dir(root())
                .output()
                .expect("cmake is not installed: ./scripts/test installs it");
            assert!(out.status.success(), "cmake {args:?}: {}", stderr(&out));
        }
    }
    binary
}

const WIFI_SSID: &str = "vesper-bench";
const WIFI_PASS: &str = "bench wifi 0123";

/// A running `vesper-device`: its console lines as they come (across its restarts: a restart
/// keeps the process id), stopped by its PID when dropped; any sanitizer report fails the test.
struct Device {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<String>>,
}

impl Device {
    fn start(args: &[String]) -> Device {
        let mut child = Command::new(firmware())
            .args(args)
            .env(
                "ASAN_OPTIONS",
                "detect_leaks=0:abort_on_error=0:exitcode=66",
            )
            .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vesper-device");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap()
                    .push(line.trim_end_matches('\r').to_owned());
            }
        });
        let errors = Arc::new(Mutex::new(String::new()));
        let err_sink = errors.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            err_sink.lock().unwrap().push_str(&text);
        });
        Device {
            child,
            lines,
            errors,
        }
    }

    /// The firmware's own console lines (`vesper: ...`), without the bootloader's and ESP-IDF's.
    fn console(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("vesper: "))
            .cloned()
            .collect()
    }

    fn all_lines(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until a console line after the first `from` ones equals `line`; returns its index.
    fn wait_line(&self, from: usize, line: &str, within: Duration) -> usize {
        self.wait_for(from, within, &format!("`{line}`"), |l| l == line)
    }

    fn wait_for(
        &self,
        from: usize,
        within: Duration,
        what: &str,
        test: impl Fn(&str) -> bool,
    ) -> usize {
        let deadline = Instant::now() + within;
        loop {
            self.assert_clean();
            if let Some(i) = self.console().iter().skip(from).position(|l| test(l)) {
                return from + i;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}; the board said:\n{}",
                self.all_lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// No sanitizer report so far, and the program has not died.
    fn assert_clean(&self) {
        let errors = self.errors.lock().unwrap().clone();
        assert!(
            !errors.contains("Sanitizer") && !errors.contains("runtime error"),
            "a sanitizer reported:\n{errors}\nconsole:\n{}",
            self.all_lines()
        );
    }

    fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "still running:\n{}",
                self.all_lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            std::thread::sleep(Duration::from_millis(50));
            self.assert_clean();
        }
    }
}

/// The bench: a backend whose devices are told the broker's TLS port and CA, the OTA CA and the
/// Wi-Fi; mosquitto with the plugin (plain listener for the backend's own heartbeat listener and
/// the test's clients, TLS for devices); the shipped nginx site serving `/ota/` over HTTPS.
struct Bench {
    app: App,
    broker: Mosquitto,
    tls_port: u16,
    nginx: Nginx,
    work: tempfile::TempDir,
    broker_cert: ServerCert,
}

/// `nvs_extra`: TOML lines of `[[boards.nvs_extra]]` entries for bellcore-v2 (the optional keys).
async fn bench(nvs_extra: &str, ota_rate: Option<&str>, ota_cert: Option<ServerCert>) -> Bench {
    let work = tempfile::tempdir().unwrap();
    let broker_cert = ServerCert::new(None);
    let ota_trusted = ServerCert::new(None);
    std::fs::write(work.path().join("broker-ca.pem"), &broker_cert.cert_pem).unwrap();
    std::fs::write(work.path().join("ota-ca.pem"), &ota_trusted.cert_pem).unwrap();
    std::fs::write(work.path().join("wifi.pass"), format!("{WIFI_PASS}\n")).unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let w = work.path().display();
    let app = App::start_replacing(
        &[
            (
                "host = \"mqtt.example.com\"\nport = 8883\n",
                format!("host = \"127.0.0.1\"\nport = {tls_port}\nca_file = \"{w}/broker-ca.pem\"\n"),
            ),
            (
                "ssid = \"vesper-bench\"\n",
                format!("ssid = \"{WIFI_SSID}\"\npassword_file = \"{w}/wifi.pass\"\n"),
            ),
            ("# [ota]\n", format!("[ota]\nca_file = \"{w}/ota-ca.pem\"\n")),
        ],
        &format!(
            "[serve.broker]\nhost = \"127.0.0.1\"\nport = {port}\n\n[[boards.nvs_extra]]\nkey = \"heartbeat_s\"\n\
             type = \"u32\"\nvalue = 2\n{nvs_extra}"
        ),
    )
    .await;
    let broker = Mosquitto::start_tls(
        port,
        tls_port,
        app.auth_port(),
        &broker_cert.cert_pem,
        &broker_cert.key_pem,
    );
    crate::broker::listener_connected(&app).await;
    let api_port: u16 = app.api.rsplit(':').next().unwrap().parse().unwrap();
    let ota_root = app.config().serve.ota_root.clone();
    std::fs::create_dir_all(&ota_root).unwrap();
    let nginx = Nginx::start_with(
        api_port,
        &ota_root,
        &ota_cert.unwrap_or(ota_trusted),
        ota_rate,
    );
    Bench {
        app,
        broker,
        tls_port,
        nginx,
        work,
        broker_cert,
    }
}

impl Bench {
    /// A flashed device's serial number, and the host board's options for a fresh board with
    /// the API's nvs.bin, the board's table and app `version`.
    async fn board(&self, mac: &str, version: &str, extra: &[&str]) -> (String, Vec<String>) {
        let (_, sns) = self.app.batch(1).await;
        let sn = sns[0].clone();
        flashed(&self.app, &sn, mac).await;
        let dir = self.work.path();
        let nvs = nvs_file(&self.app, &sn, dir).await;
        let board = self.app.config().board("bellcore-v2").unwrap();
        let table = dir.join("table.bin");
        std::fs::write(&table, board.table.to_bin().unwrap()).unwrap();
        let app = dir.join(format!("app-{version}.bin"));
        std::fs::write(&app, vesper::demo::app_image(300_000, version)).unwrap();
        let mut args: Vec<String> = [
            "--flash",
            dir.join(format!("{sn}.flash")).to_str().unwrap(),
            "--table",
            table.to_str().unwrap(),
            "--nvs",
            nvs.to_str().unwrap(),
            "--app",
            app.to_str().unwrap(),
            "--mac",
            mac,
            "--ota-base",
            &format!("https://127.0.0.1:{}", self.nginx.https_port),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--wifi".into());
        args.push(format!("{WIFI_SSID}:{WIFI_PASS}"));
        args.extend(extra.iter().map(|s| s.to_string()));
        (sn, args)
    }

    /// A client of the owner `uid`, subscribed to `filter`.
    async fn owner(
        &self,
        sn: &str,
        uid: &str,
        filter: &str,
    ) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
        self.app
            .post(
                &format!("/manufacturing/devices/{sn}/users"),
                &self.app.admin,
                json!({ "owner": uid }),
            )
            .await;
        let (client, mut events) = connect(
            self.broker.port,
            &format!("{uid}-phone"),
            uid,
            &user_token(uid, "test-key", json!({})),
        )
        .await
        .expect("the owner logs in");
        // `vesper/SN/#` would match the control topic, which the owner may not read: the two
        // readable topics one by one.
        let filters: Vec<String> = match filter.strip_suffix("/#") {
            Some(prefix) => vec![format!("{prefix}/data"), format!("{prefix}/status")],
            None => vec![filter.to_owned()],
        };
        for filter in &filters {
            assert!(subscribe(&client, &mut events, filter).await, "{filter}");
        }
        (client, events)
    }
}

/// The device's `nvs.bin` from the API, as the station flashes it, in `dir`.
async fn nvs_file(app: &App, sn: &str, dir: &Path) -> PathBuf {
    let r = app
        .get(
            &format!("/manufacturing/devices/{sn}/nvs.bin"),
            &app.technician,
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let path = dir.join(format!("{sn}.nvs.bin"));
    std::fs::write(&path, r.bytes().await.unwrap()).unwrap();
    path
}

/// A PlatformIO build folder (`.pio/build/bellcore-v2`) as `pio run` leaves it: bootloader,
/// partition table and app; boot_app0.bin is the framework's, not in the folder.
pub fn pio_build(dir: &Path, app: &App, version: &str) -> PathBuf {
    pio_build_with(dir, app, version, vesper::demo::app_image(300_000, version))
}

fn pio_build_with(dir: &Path, app: &App, version: &str, image: Vec<u8>) -> PathBuf {
    let board = app.config().board("bellcore-v2").unwrap();
    let build = dir.join(format!("pio-{version}/.pio/build/bellcore-v2"));
    std::fs::create_dir_all(&build).unwrap();
    let mut bootloader = vesper::demo::app_image(0x4200, "bootloader");
    bootloader[32..36].fill(0);
    std::fs::write(build.join("bootloader.bin"), bootloader).unwrap();
    std::fs::write(build.join("partitions.bin"), board.table.to_bin().unwrap()).unwrap();
    std::fs::write(build.join("firmware.bin"), image).unwrap();
    build
}

/// `vesper firmware publish bellcore-v2 VERSION --pio BUILD` on the backend's configuration, with
/// PlatformIO's core folder holding the Arduino framework's boot_app0.bin.
async fn publish_pio(app: &App, build: &Path, version: &str) {
    let core = build.parent().unwrap().join("platformio-core");
    let tools = core.join("packages/framework-arduinoespressif32/tools/partitions");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::write(tools.join("boot_app0.bin"), vec![0xFF; 0x2000]).unwrap();
    let (dir, build, version) = (app.dir().to_owned(), build.to_owned(), version.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        vesper_env(
            &dir,
            &[
                "firmware",
                "publish",
                "bellcore-v2",
                &version,
                "--pio",
                build.to_str().unwrap(),
            ],
            &[("PLATFORMIO_CORE_DIR", core.to_str().unwrap())],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

async fn device_json(app: &App, sn: &str) -> Value {
    app.get(&format!("/manufacturing/devices/{sn}"), &app.viewer)
        .await
        .json()
        .await
        .unwrap()
}

async fn wait_status(app: &App, sn: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while device_json(app, sn).await["status"] != status {
        assert!(Instant::now() < deadline, "{}", device_json(app, sn).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The heartbeats among `messages` (topic, payload), parsed.
fn heartbeats(messages: &[(String, String)]) -> Vec<Value> {
    messages
        .iter()
        .filter(|(t, _)| t.ends_with("/data"))
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .collect()
}

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

/// A `vesper sim` process: the pseudo-terminal it printed first, then its lines as they come.
struct Sim {
    child: Child,
    pty: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sim {
    fn start(broker_port: u16) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vesper"))
            .args(["sim", "--instant-flash", "--heartbeat-every", "60"])
            .args(["--broker", &format!("127.0.0.1:{broker_port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run vesper sim");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut pty = String::new();
        out.read_line(&mut pty).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Sim {
            child,
            pty: pty.trim().to_owned(),
            lines,
        }
    }

    /// The `vesper: ` lines from the `from`th line on, once `last` is among them.
    fn console_until(&self, from: usize, last: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines: Vec<String> = self.lines.lock().unwrap()[from..]
                .iter()
                .filter(|l| l.starts_with("vesper: "))
                .cloned()
                .collect();
            if lines.iter().any(|l| l == last) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "vesper sim printed:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vesper flash --no-reset` of one board with `bundle` and `nvs`, run where the backend's
/// configuration is; `env` adds variables.
async fn vesper_flash(app: &App, pty: &str, bundle: &Path, nvs: &Path, env: Vec<(String, String)>) {
    let dir = app.dir().to_owned();
    let args: Vec<String> = [
        "flash",
        "--no-reset",
        "--port",
        pty,
        "--board",
        "bellcore-v2",
        "--bundle",
        bundle.to_str().unwrap(),
        "--nvs",
        nvs.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        vesper_env(&dir, &args, &env)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// The console lines with the serial number and MAC taken out, to compare two devices.
fn anonymous(lines: &[String], sn: &str) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let l = l.replace(sn, "SN");
            match (l.find(" mac="), l.find(" chip=")) {
                (Some(a), Some(b)) => format!("{} mac=MAC{}", &l[..a], &l[b..]),
                _ => l,
            }
        })
        .collect()
}

/// `vesper sim` flashed by `vesper flash` from a plain ESP Web Tools manifest (path and offset
/// only, as ESPHome writes it) and from a PlatformIO build folder prints the very console lines
/// the firmware core prints for a device of the same batch.
#[tokio::test(flavor = "multi_thread")]
async fn vesper_sim_prints_the_firmwares_console_lines_from_plain_and_platformio_bundles() {
    let bench = bench("", None, None).await;
    let (sn0, device_args) = bench.board("24:0A:C4:00:01:07", "1.0.1", &[]).await;
    let firmware_lines = {
        let device = Device::start(&device_args);
        device.wait_line(0, "vesper: heartbeat sent", Duration::from_secs(20));
        anonymous(&device.console()[..4], &sn0)
    };
    assert_eq!(firmware_lines.len(), 4, "{firmware_lines:?}");
    let (app, broker) = (&bench.app, &bench.broker);
    let (_, sns) = app.batch(3).await;
    let work = tempfile::tempdir().unwrap();
    let build = pio_build(work.path(), app, "1.0.1");
    let core = work.path().join("platformio-core");
    let tools = core.join("packages/framework-arduinoespressif32/tools/partitions");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::write(tools.join("boot_app0.bin"), vec![0xFF; 0x2000]).unwrap();

    // A plain manifest beside copies of the build's files, offsets written by hand from
    // partitions/custom_4mb.csv.
    let plain = work.path().join("esphome-style");
    std::fs::create_dir_all(&plain).unwrap();
    for name in ["bootloader.bin", "partitions.bin", "firmware.bin"] {
        std::fs::copy(build.join(name), plain.join(name)).unwrap();
    }
    std::fs::copy(tools.join("boot_app0.bin"), plain.join("boot_app0.bin")).unwrap();
    let manifest = json!({
        "name": "Bellcore", "new_install_prompt_erase": true,
        "builds": [{ "chipFamily": "ESP32", "parts": [
            { "path": "bootloader.bin", "offset": 4096 },
            { "path": "partitions.bin", "offset": 32768 },
            { "path": "boot_app0.bin", "offset": 61440 },
            { "path": "firmware.bin", "offset": 131072 },
        ]}],
    });
    std::fs::write(plain.join("manifest.json"), manifest.to_string()).unwrap();

    let sim = Sim::start(broker.port);
    let nvs = nvs_file(app, &sns[1], work.path()).await;
    vesper_flash(app, &sim.pty, &plain.join("manifest.json"), &nvs, vec![]).await;
    let lines = sim.console_until(0, "vesper: heartbeat sent");
    assert_eq!(anonymous(&lines, &sns[1]), firmware_lines);

    let from = sim.lines.lock().unwrap().len();
    let nvs = nvs_file(app, &sns[2], work.path()).await;
    let core_env = vec![("PLATFORMIO_CORE_DIR".to_owned(), core.display().to_string())];
    vesper_flash(app, &sim.pty, &build, &nvs, core_env).await;
    let lines = sim.console_until(from, "vesper: heartbeat sent");
    assert_eq!(anonymous(&lines, &sns[2]), firmware_lines);
    drop(sim);
}

/// `publish --pio` names what is missing: the build itself, or boot_app0.bin (with where it
/// looked), and takes boot_app0.bin given with --boot-app0.
#[tokio::test(flavor = "multi_thread")]
async fn publish_from_a_platformio_build_names_what_is_missing() {
    let app = App::start().await;
    let work = tempfile::tempdir().unwrap();
    let build = pio_build(work.path(), &app, "2.0.0");
    let run = |args: Vec<String>| {
        let dir = app.dir().to_owned();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                vesper_env(&dir, &args, &[])
            })
            .await
            .unwrap()
        }
    };
    let publish = |extra: &[&str]| {
        let mut args: Vec<String> = ["firmware", "publish", "bellcore-v2", "2.0.0", "--pio"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(build.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let out = run(publish(&[])).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs boot_app0.bin; looked in")
            && stderr(&out).contains("(give it with --boot-app0 FILE)"),
        "{}",
        stderr(&out)
    );
    let boot_app0 = work.path().join("boot_app0.bin");
    std::fs::write(&boot_app0, vec![0xFF; 0x2000]).unwrap();
    let out = run(publish(&["--boot-app0", boot_app0.to_str().unwrap()])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(app.config().serve.ota_root.join("bellcore-v2/latest.json")).unwrap(),
    )
    .unwrap();
    let offsets: Vec<(&str, u64)> = manifest["builds"][0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["offset"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        offsets,
        [
            ("bootloader.bin", 0x1000),
            ("partitions.bin", 0x8000),
            ("boot_app0.bin", 0xF000),
            ("firmware.bin", 0x20000)
        ]
    );
    // What a device reads from latest.json: the app's size, sum and where it is.
    let app_bytes = std::fs::read(build.join("firmware.bin")).unwrap();
    assert_eq!(manifest["version"], "2.0.0");
    assert_eq!(manifest["size"], app_bytes.len());
    assert_eq!(manifest["url"], "v2.0.0.bin");
    assert_eq!(manifest["sha256"], crate::support::sha256_hex(&app_bytes));
    std::fs::remove_file(build.join("firmware.bin")).unwrap();
    let out = run(publish(&[])).await;
    assert!(
        stderr(&out).contains("firmware.bin is not in")
            && stderr(&out).contains("run `pio run -e bellcore-v2` first"),
        "{}",
        stderr(&out)
    );
    app.stop().await;
}

/// A release whose app says another version (its `esp_app_desc_t`) than the one published, or
/// another project than the board's releases so far, is refused before anything is written: every
/// board would download it and refuse it.
#[tokio::test(flavor = "multi_thread")]
async fn publish_refuses_an_app_whose_own_description_is_not_the_release() {
    let app = App::start().await;
    let work = tempfile::tempdir().unwrap();
    publish_pio(&app, &pio_build(work.path(), &app, "1.0.0"), "1.0.0").await;
    let run = |build: PathBuf, version: &str| {
        let core = build.parent().unwrap().join("platformio-core");
        let tools = core.join("packages/framework-arduinoespressif32/tools/partitions");
        std::fs::create_dir_all(&tools).unwrap();
        std::fs::write(tools.join("boot_app0.bin"), vec![0xFF; 0x2000]).unwrap();
        vesper_env(
            app.dir(),
            &[
                "firmware",
                "publish",
                "bellcore-v2",
                version,
                "--pio",
                build.to_str().unwrap(),
            ],
            &[("PLATFORMIO_CORE_DIR", core.to_str().unwrap())],
        )
    };
    // Built as 1.0.1, published as 1.0.2.
    let mislabelled = pio_build_with(
        work.path(),
        &app,
        "1.0.2",
        vesper::demo::app_image(300_000, "1.0.1"),
    );
    let out = run(mislabelled, "1.0.2");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "the app says it is version `1.0.1` (its esp_app_desc_t), not 1.0.2: boards refuse such an update; build it as 1.0.2"
        ),
        "{}",
        stderr(&out)
    );
    // Another project's app (its project_name field, byte 32 + 48 of the image).
    let mut foreign = vesper::demo::app_image(300_000, "1.0.3");
    foreign[80..80 + 12].copy_from_slice(b"other-board\0");
    let out = run(pio_build_with(work.path(), &app, "1.0.3", foreign), "1.0.3");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "the app is project `other-board`, but board bellcore-v2's releases are project `vesper-demo`"
        ),
        "{}",
        stderr(&out)
    );
    let ota = app.config().serve.ota_root.join("bellcore-v2");
    assert!(!ota.join("v1.0.2").exists() && !ota.join("v1.0.3").exists());
    let latest = std::fs::read_link(ota.join("latest")).unwrap();
    assert_eq!(latest, Path::new("v1.0.0"));
}
