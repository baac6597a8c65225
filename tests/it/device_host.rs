//! The shipped firmware on the host board, for the tests: `vesper-device` (built by CMake with
//! the sanitizers), one running board with its console lines and a sanitizer check, and the bench
//! around it: a backend whose devices are told the broker's TLS port and CA, the OTA CA and the
//! Wi-Fi; mosquitto with the plugin; the shipped nginx site serving `/ota/` over HTTPS.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend_support::{App, user_token};
use crate::broker::{Mosquitto, connect, flashed, free_port, subscribe};
use crate::deploy_nginx::{Nginx, ServerCert};
use crate::support::{root, stderr};

/// The host build of the firmware, built by CMake as `scripts/test` does (and built here if it is
/// missing, under a lock, so tests run alone build it too).
pub fn firmware() -> PathBuf {
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

pub const WIFI_SSID: &str = "vesper-bench";
pub const WIFI_PASS: &str = "bench wifi 0123";

/// A running `vesper-device`: its console lines as they come (across its restarts: a restart
/// keeps the process id), stopped by its PID when dropped; any sanitizer report fails the test.
pub struct Device {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<String>>,
}

impl Device {
    pub fn start(args: &[String]) -> Device {
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
    pub fn console(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("vesper: "))
            .cloned()
            .collect()
    }

    pub fn all_lines(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until a console line after the first `from` ones equals `line`; returns its index.
    pub fn wait_line(&self, from: usize, line: &str, within: Duration) -> usize {
        self.wait_for(from, within, &format!("`{line}`"), |l| l == line)
    }

    pub fn wait_for(
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
    pub fn assert_clean(&self) {
        let errors = self.errors.lock().unwrap().clone();
        assert!(
            !errors.contains("Sanitizer") && !errors.contains("runtime error"),
            "a sanitizer reported:\n{errors}\nconsole:\n{}",
            self.all_lines()
        );
    }

    pub fn wait_exit(&mut self, within: Duration) -> i32 {
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
pub struct Bench {
    pub app: App,
    pub broker: Mosquitto,
    pub tls_port: u16,
    pub nginx: Nginx,
    pub work: tempfile::TempDir,
    pub broker_cert: ServerCert,
}

/// `nvs_extra`: TOML lines of `[[boards.nvs_extra]]` entries for bellcore-v2 (the optional keys).
pub async fn bench(nvs_extra: &str, ota_rate: Option<&str>, ota_cert: Option<ServerCert>) -> Bench {
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
    pub async fn board(&self, mac: &str, version: &str, extra: &[&str]) -> (String, Vec<String>) {
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

    /// Waits until the broker has answered the device's subscription to its control topic (its
    /// log says so), so a command published now reaches it.
    pub fn wait_subscribed(&self, sn: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .broker
            .log()
            .contains(&format!("Sending SUBACK to {sn}"))
        {
            assert!(
                Instant::now() < deadline,
                "{sn} never subscribed:\n{}",
                self.broker.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A client of the owner `uid`, subscribed to `filter`.
    pub async fn owner(
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
pub async fn nvs_file(app: &App, sn: &str, dir: &Path) -> PathBuf {
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

pub async fn device_json(app: &App, sn: &str) -> Value {
    app.get(&format!("/manufacturing/devices/{sn}"), &app.viewer)
        .await
        .json()
        .await
        .unwrap()
}

pub async fn wait_status(app: &App, sn: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while device_json(app, sn).await["status"] != status {
        assert!(Instant::now() < deadline, "{}", device_json(app, sn).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The heartbeats among `messages` (topic, payload), parsed.
pub fn heartbeats(messages: &[(String, String)]) -> Vec<Value> {
    messages
        .iter()
        .filter(|(t, _)| t.ends_with("/data"))
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .collect()
}
