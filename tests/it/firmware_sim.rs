//! `vesper sim` against the shipped firmware: flashed by `vesper flash`, it prints the very
//! console lines `vesper-device` (src/main.cpp on the host board) prints.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::backend_support::App;
use crate::device_host::{Device, bench, nvs_file};
use crate::firmware_publish::pio_build;
use crate::support::{stderr, stdout, vesper_env};

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
