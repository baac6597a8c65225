//! The firmware's own logic through the real broker path: `vesper-device` (firmware/host: the
//! C++ core linked with libmosquitto and libcurl) boots from an `nvs.bin` fetched from a real
//! `vesper serve`, logs in to Debian's mosquitto with this project's plugin, is provisioned by its
//! heartbeat, takes an OTA release published with `vesper firmware publish --pio`, refuses a
//! corrupted or overlong one, and is cut off at once when revoked. Every console line is
//! checked as DESIGN.md section 3 writes it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::{Value, json};

use crate::backend_support::{App, user_token};
use crate::broker::{
    Mosquitto, backend_and_broker, connect, flashed, publish, received, subscribe,
};
use crate::support::{root, stderr, stdout, vesper_env};

/// The host runner, built by CMake as `scripts/test` does (and built here if it is missing, under
/// a lock, so tests run alone build it too).
fn runner() -> PathBuf {
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

/// A running `vesper-device`: its console lines as they come, stopped by its PID when dropped.
struct Device {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Device {
    fn start(args: &[&str]) -> Device {
        let mut child = Command::new(runner())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vesper-device");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Device { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line after the first `from` lines equals `line`; returns its index.
    fn wait_line(&self, from: usize, line: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.lines().iter().skip(from).position(|l| l == line) {
                return from + i;
            }
            assert!(
                Instant::now() < deadline,
                "no `{line}` within {within:?}; the console said:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end; its exit code.
    fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "vesper-device still runs after {within:?}:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let board = app.config().board("bellcore-v2").unwrap();
    let build = dir.join(format!("pio-{version}/.pio/build/bellcore-v2"));
    std::fs::create_dir_all(&build).unwrap();
    let mut bootloader = vesper::demo::app_image(0x4200, "bootloader");
    bootloader[32..36].fill(0);
    std::fs::write(build.join("bootloader.bin"), bootloader).unwrap();
    std::fs::write(build.join("partitions.bin"), board.table.to_bin().unwrap()).unwrap();
    std::fs::write(
        build.join("firmware.bin"),
        vesper::demo::app_image(300_000, version),
    )
    .unwrap();
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

fn device_args<'a>(nvs: &'a Path, broker: &'a str) -> Vec<&'a str> {
    vec!["--nvs", nvs.to_str().unwrap(), "--broker", broker]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_firmware_core_boots_from_the_api_nvs_and_is_provisioned_by_its_heartbeat() {
    let (app, broker) = backend_and_broker(5).await;
    crate::broker::listener_connected(&app).await;
    let (_, sns) = app.batch(1).await;
    let sn = &sns[0];
    flashed(&app, sn, "24:0A:C4:00:01:01").await;
    let dir = tempfile::tempdir().unwrap();
    let nvs = nvs_file(&app, sn, dir.path()).await;
    let address = format!("127.0.0.1:{}", broker.port);

    let mut args = device_args(&nvs, &address);
    args.extend(["--fw", "1.0.0", "--once"]);
    let mut device = Device::start(&args);
    assert_eq!(device.wait_exit(Duration::from_secs(30)), 0);
    assert_eq!(
        device.lines(),
        [
            format!("vesper: boot sn={sn} hw=BC02 fw=1.0.0"),
            "vesper: wifi connected ip=127.0.0.1".into(),
            "vesper: mqtt connected".into(),
            "vesper: heartbeat sent".into(),
        ]
    );
    // Provisioned by that heartbeat, through the real broker and the backend's listener.
    let deadline = Instant::now() + Duration::from_secs(10);
    while device_json(&app, sn).await["status"] != "provisioned" {
        assert!(Instant::now() < deadline, "{}", device_json(&app, sn).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(device_json(&app, sn).await["last_seen"].is_string());
    drop(broker);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_or_foreign_nvs_is_refused_before_any_login() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = root().join("tests/vectors/nvs/p06_two_namespaces.bin");
    let mut device = Device::start(&["--nvs", foreign.to_str().unwrap(), "--once"]);
    assert_eq!(device.wait_exit(Duration::from_secs(10)), 3);
    let said = device.lines().join("\n");
    assert!(
        said.starts_with("vesper: error what=nvs hw_type: missing; hw_version: missing; mqtt_user: missing; mqtt_pass: missing; mqtt_host: missing; mqtt_port: missing (a u16)"),
        "{said}"
    );
    let empty = dir.path().join("blank.bin");
    std::fs::write(&empty, vec![0xFF; 0x6000]).unwrap();
    let mut device = Device::start(&["--nvs", empty.to_str().unwrap()]);
    assert_eq!(device.wait_exit(Duration::from_secs(10)), 3);
    assert_eq!(
        device.lines(),
        ["vesper: error what=nvs has no namespace vesper"]
    );
    let mut device = Device::start(&["--broker", "nowhere"]);
    assert_eq!(device.wait_exit(Duration::from_secs(10)), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn ota_on_command_takes_a_higher_release_refuses_a_corrupt_one_and_revocation_cuts_it_off() {
    let (app, broker) = backend_and_broker(5).await;
    crate::broker::listener_connected(&app).await;
    let (_, sns) = app.batch(1).await;
    let sn = sns[0].clone();
    flashed(&app, &sn, "24:0A:C4:00:01:02").await;
    app.post(
        &format!("/manufacturing/devices/{sn}/users"),
        &app.admin,
        json!({ "owner": "uid-owner" }),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let nvs = nvs_file(&app, &sn, work.path()).await;
    publish_pio(&app, &pio_build(work.path(), &app, "1.0.1"), "1.0.1").await;

    let address = format!("127.0.0.1:{}", broker.port);
    let mut args = device_args(&nvs, &address);
    args.extend(["--fw", "1.0.0", "--api", &app.api, "--board", "bellcore-v2"]);
    let device = Device::start(&args);
    let at = device.wait_line(0, "vesper: heartbeat sent", Duration::from_secs(20));

    // The owner asks for an update: the device fetches latest.json, streams v1.0.1, checks it and
    // reboots into it.
    let (owner, mut owner_loop) = connect(
        broker.port,
        "uid-owner-phone",
        "uid-owner",
        &user_token("uid-owner", "test-key", json!({})),
    )
    .await
    .expect("the owner logs in");
    // Its retained status says it is online with its version.
    let status = format!("vesper/{sn}/status");
    assert!(subscribe(&owner, &mut owner_loop, &status).await);
    assert_eq!(
        received(&mut owner_loop, Duration::from_millis(500)).await,
        [(status.clone(), r#"{"online":true,"fw":"1.0.0"}"#.to_owned())]
    );
    let control = format!("vesper/{sn}/control");
    let ota = r#"{"cmd":"ota"}"#;
    assert!(matches!(
        publish(&owner, &mut owner_loop, &control, ota).await,
        PubAckReason::Success
    ));
    let at = device.wait_line(
        at,
        "vesper: ota update from=1.0.0 to=1.0.1",
        Duration::from_secs(10),
    );
    let at = device.wait_line(at, "vesper: ota done fw=1.0.1", Duration::from_secs(20));
    let at = device.wait_line(at, "vesper: reboot", Duration::from_secs(5));
    let at = device.wait_line(
        at,
        &format!("vesper: boot sn={sn} hw=BC02 fw=1.0.1"),
        Duration::from_secs(5),
    );
    let at = device.wait_line(at, "vesper: heartbeat sent", Duration::from_secs(20));
    // The reboot dropped the connection: the broker published the last will, then the new
    // firmware said it is online.
    assert_eq!(
        received(&mut owner_loop, Duration::from_millis(500)).await,
        [
            (status.clone(), r#"{"online":false}"#.to_owned()),
            (status.clone(), r#"{"online":true,"fw":"1.0.1"}"#.to_owned()),
        ]
    );

    // v1.0.2 published, then its image damaged on the server (same size): refused after the
    // download, and the device keeps running v1.0.1.
    publish_pio(&app, &pio_build(work.path(), &app, "1.0.2"), "1.0.2").await;
    let served = app
        .config()
        .serve
        .ota_root
        .join("bellcore-v2/v1.0.2/ota.bin");
    let mut bytes = std::fs::read(&served).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&served, &bytes).unwrap();
    publish(&owner, &mut owner_loop, &control, ota).await;
    let at = device.wait_line(
        at,
        "vesper: ota update from=1.0.1 to=1.0.2",
        Duration::from_secs(10),
    );
    let at = device.wait_line(
        at,
        "vesper: error what=ota sha256 mismatch",
        Duration::from_secs(20),
    );
    // Longer than latest.json says: stopped at the announced size.
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&served, &bytes).unwrap();
    publish(&owner, &mut owner_loop, &control, ota).await;
    let at = device.wait_line(
        at,
        "vesper: error what=ota size mismatch (longer than announced)",
        Duration::from_secs(20),
    );
    assert!(
        !device.lines()[at..]
            .iter()
            .any(|l| l.starts_with("vesper: reboot") || l.contains("ota done")),
        "{:?}",
        device.lines()
    );

    // Revoked: the plugin disconnects it at once, and its next login is refused.
    let revoked = Instant::now();
    let r = app
        .post(
            &format!("/manufacturing/devices/{sn}/status"),
            &app.admin,
            json!({ "status": "revoked" }),
        )
        .await;
    assert!(r.status().is_success());
    let cut = device.wait_line(
        at,
        "vesper: error what=mqtt disconnected (The connection was lost.)",
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
        Duration::from_secs(10),
    );
    drop(device);
    let _: &Mosquitto = &broker;
    app.stop().await;
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

/// The console lines with the serial number taken out, to compare two devices.
fn anonymous(lines: &[String], sn: &str) -> Vec<String> {
    lines.iter().map(|l| l.replace(sn, "SN")).collect()
}

/// `vesper sim` flashed by `vesper flash` from a plain ESP Web Tools manifest (path and offset
/// only, as ESPHome writes it) and from a PlatformIO build folder prints the very console lines
/// the firmware core prints for a device of the same batch.
#[tokio::test(flavor = "multi_thread")]
async fn vesper_sim_prints_the_firmwares_console_lines_from_plain_and_platformio_bundles() {
    let (app, broker) = backend_and_broker(5).await;
    crate::broker::listener_connected(&app).await;
    let (_, sns) = app.batch(3).await;
    let work = tempfile::tempdir().unwrap();
    let build = pio_build(work.path(), &app, "1.0.1");
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

    let firmware_lines = {
        let nvs = nvs_file(&app, &sns[0], work.path()).await;
        let address = format!("127.0.0.1:{}", broker.port);
        let mut args = device_args(&nvs, &address);
        args.extend(["--fw", "1.0.1", "--once"]);
        let mut device = Device::start(&args);
        assert_eq!(device.wait_exit(Duration::from_secs(30)), 0);
        anonymous(&device.lines(), &sns[0])
    };
    assert_eq!(firmware_lines.len(), 4, "{firmware_lines:?}");

    let sim = Sim::start(broker.port);
    let nvs = nvs_file(&app, &sns[1], work.path()).await;
    vesper_flash(&app, &sim.pty, &plain.join("manifest.json"), &nvs, vec![]).await;
    let lines = sim.console_until(0, "vesper: heartbeat sent");
    assert_eq!(anonymous(&lines, &sns[1]), firmware_lines);

    let from = sim.lines.lock().unwrap().len();
    let nvs = nvs_file(&app, &sns[2], work.path()).await;
    let core_env = vec![("PLATFORMIO_CORE_DIR".to_owned(), core.display().to_string())];
    vesper_flash(&app, &sim.pty, &build, &nvs, core_env).await;
    let lines = sim.console_until(from, "vesper: heartbeat sent");
    assert_eq!(anonymous(&lines, &sns[2]), firmware_lines);
    drop(sim);
    app.stop().await;
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
