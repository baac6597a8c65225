//! The simulated board against peers and the rest of the system: Espressif's esptool (PyPI)
//! flashes `vesper sim` and reads its MAC; `vesper flash` and `vesper sim` as processes; and a
//! flashed board boots and its heartbeat provisions it through a real mosquitto and backend.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use vesper::flashing::{self, Bundle, FlashPlan};
use vesper::sim::{SimBoard, SimConfig, SimEvent};

use crate::backend_support::App;
use crate::broker::backend_and_broker;
use crate::flashing::{fixture, pty_options};
use crate::support;

/// `vesper sim` as a process: its pty path and the child (stopped with SIGTERM by PID).
struct SimProcess {
    child: Child,
    path: String,
}

impl SimProcess {
    fn start(args: &[&str]) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vesper"))
            .arg("sim")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let path = lines.next().unwrap().unwrap();
        assert!(path.starts_with("/dev/"), "first line is the port: {path}");
        std::thread::spawn(move || for _ in lines {});
        SimProcess { child, path }
    }

    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(
            exit.success(),
            "vesper sim exits cleanly on SIGTERM: {exit:?}"
        );
    }
}

fn esptool(args: &[&str]) -> std::process::Output {
    Command::new(support::python())
        .args(["-m", "esptool"])
        .args(args)
        .output()
        .expect("esptool (installed by ./scripts/test)")
}

#[test]
fn esptool_flashes_the_simulator_and_reads_its_mac() {
    let f = fixture(200_000);
    let plan = f.plan("PV-26A18-BC02R-X7KQA");
    let work = tempfile::tempdir().unwrap();
    let dump = work.path().join("dump.bin");
    let sim = SimProcess::start(&[
        "--mac",
        "24:0A:C4:AB:CD:EF",
        "--dump",
        dump.to_str().unwrap(),
    ]);

    let mac = esptool(&[
        "--port", &sim.path, "--before", "no-reset", "--after", "no-reset", "read-mac",
    ]);
    assert!(
        mac.status.success(),
        "{}",
        String::from_utf8_lossy(&mac.stderr)
    );
    assert!(
        String::from_utf8_lossy(&mac.stdout).contains("MAC:                24:0a:c4:ab:cd:ef"),
        "{}",
        String::from_utf8_lossy(&mac.stdout)
    );

    let mut args = vec![
        "--port".to_owned(),
        sim.path.clone(),
        "--before".into(),
        "no-reset".into(),
        "--after".into(),
        "no-reset".into(),
        "write-flash".into(),
    ];
    for part in &plan.parts {
        let file = work.path().join(&part.name);
        std::fs::write(&file, &part.data).unwrap();
        args.push(format!("0x{:x}", part.offset));
        args.push(file.to_str().unwrap().to_owned());
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = esptool(&arg_refs);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Hash of data verified"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    sim.stop();
    let image = std::fs::read(&dump).unwrap();
    let expected = plan.image(4 << 20);
    assert!(
        image == expected,
        "first difference at {:x?}",
        image.iter().zip(&expected).position(|(a, b)| a != b)
    );
}

#[test]
fn vesper_flash_flashes_two_simulators_from_the_command_line() {
    let f = fixture(80_000);
    let work = tempfile::tempdir().unwrap();
    let sims = [
        SimProcess::start(&[]),
        SimProcess::start(&["--mac", "24:0A:C4:00:00:02"]),
    ];
    let mut args: Vec<String> = vec![
        "--config".into(),
        f.config.path.to_str().unwrap().into(),
        "flash".into(),
    ];
    for (i, (sim, sn)) in sims
        .iter()
        .zip(["PV-26A18-BC02R-AAAAA", "PV-26A18-BC02R-BBBBB"])
        .enumerate()
    {
        let nvs = work.path().join(format!("{i}.bin"));
        std::fs::write(
            &nvs,
            &f.plan(sn)
                .parts
                .iter()
                .find(|p| p.name == "nvs")
                .unwrap()
                .data,
        )
        .unwrap();
        args.extend([
            "--port".into(),
            sim.path.clone(),
            "--nvs".into(),
            nvs.to_str().unwrap().into(),
        ]);
    }
    args.extend(
        [
            "--board",
            "bellcore-v2",
            "--no-reset",
            "--baud",
            "115200",
            "--json",
        ]
        .map(String::from),
    );
    args.extend([
        "--bundle".into(),
        f.config
            .serve
            .ota_root
            .join("bellcore-v2/v1.0.1")
            .to_str()
            .unwrap()
            .into(),
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_vesper"))
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "done").collect();
    assert_eq!(done.len(), 2, "{events:?}");
    assert!(done.iter().any(|e| e["mac"] == "24:0A:C4:00:00:02"));

    // One identity is never written to two boards.
    let same = Command::new(env!("CARGO_BIN_EXE_vesper"))
        .args([
            "--config",
            f.config.path.to_str().unwrap(),
            "flash",
            "--port",
            &sims[0].path,
            "--port",
            &sims[1].path,
        ])
        .args([
            "--nvs",
            work.path().join("0.bin").to_str().unwrap(),
            "--board",
            "bellcore-v2",
            "--no-reset",
        ])
        .args([
            "--bundle",
            f.config
                .serve
                .ota_root
                .join("bellcore-v2/v1.0.1")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&same.stderr).contains("give --nvs once per --port"),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    for sim in sims {
        sim.stop();
    }
}

#[test]
fn plans_refuse_what_would_brick_a_board() {
    let f = fixture(50_000);
    let board = f.config.board("bellcore-v2").unwrap();
    let v1 = f.config.board("bellcore-v1").unwrap();
    let nvs = f
        .plan("PV-26A18-BC02R-X7KQA")
        .parts
        .into_iter()
        .find(|p| p.name == "nvs")
        .unwrap()
        .data;
    assert!(
        FlashPlan::new(board, &f.bundle, nvs[..0x4000].to_vec())
            .unwrap_err()
            .to_string()
            .contains("NVS image is 16384 bytes")
    );
    let err = FlashPlan::new(v1, &f.bundle, vec![0xFF; 0x4000])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a release of bellcore-v2, not of board bellcore-v1"),
        "{err}"
    );
    let mut relabelled = f.bundle.clone();
    relabelled.manifest.name = Some("bellcore-v1".into());
    let err = FlashPlan::new(v1, &relabelled, vec![0xFF; 0x4000])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("puts `nvs` at 0x9000+0x6000, but board bellcore-v1 has it at 0x9000+0x4000"),
        "{err}"
    );
    let mut s3 = board.clone();
    s3.chip = vesper::config::Chip::Esp32s3;
    assert!(
        FlashPlan::new(&s3, &f.bundle, nvs.clone())
            .unwrap_err()
            .to_string()
            .contains("is for ESP32")
    );
    let mut tampered = Bundle::load(&f.config.serve.ota_root.join("bellcore-v2/v1.0.1")).unwrap();
    std::fs::write(tampered.dir.join("firmware.bin"), b"\xE9corrupt").unwrap();
    assert!(
        FlashPlan::new(board, &tampered, nvs.clone())
            .unwrap_err()
            .to_string()
            .contains("bytes, the manifest says")
    );
    tampered.manifest.builds[0]
        .parts
        .retain(|p| p.path != "firmware.bin");
    assert!(FlashPlan::new(board, &tampered, nvs).is_ok());
}

/// The plan a station would flash for `sn`: the backend's `nvs.bin` and a bundle whose app is
/// `app_len` bytes.
async fn station_plan(app: &App, sn: &str, app_len: usize) -> FlashPlan {
    let nvs = app
        .get(
            &format!("/manufacturing/devices/{sn}/nvs.bin"),
            &app.technician,
        )
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let f = fixture(app_len);
    FlashPlan::new(f.config.board("bellcore-v2").unwrap(), &f.bundle, nvs).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flashed_simulator_boots_and_its_heartbeat_provisions_it() {
    let (app, broker) = backend_and_broker(30).await;
    let (_, sns) = app.batch(1).await;
    let sn = sns[0].clone();
    // The image the station would fetch from the backend.
    let plan = station_plan(&app, &sn, 60_000).await;
    let board = SimBoard::spawn(SimConfig {
        broker: Some(("127.0.0.1".into(), broker.port)),
        heartbeat_every: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .unwrap();
    let port = board.path().to_str().unwrap().to_owned();
    let outcome = tokio::task::spawn_blocking(move || {
        let (tx, _rx) = std::sync::mpsc::channel();
        flashing::flash(&port, &plan, &pty_options(true), &tx, flashing::ANY_BOARD)
    })
    .await
    .unwrap()
    .unwrap();
    let report = json!({ "chip": outcome.chip, "mac": outcome.mac, "firmware_version": "1.0.1", "station": "bench-1" });
    assert!(
        app.post(
            &format!("/manufacturing/devices/{sn}/flashed"),
            &app.technician,
            report
        )
        .await
        .status()
        .is_success()
    );
    let r = app
        .get(
            &format!("/manufacturing/devices/{sn}?wait=provisioned&timeout=20"),
            &app.viewer,
        )
        .await;
    assert_eq!(
        r.headers()["x-wait-result"],
        "reached",
        "events: {:?}",
        board.events()
    );
    let device: serde_json::Value = r.json().await.unwrap();
    assert_eq!(device["status"], "provisioned");
    assert!(
        board.events().iter().any(
            |e| matches!(e, SimEvent::HeartbeatSent { serial_number } if *serial_number == sn)
        )
    );
    drop(board);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_board_with_a_wrong_password_or_no_heartbeat_never_provisions() {
    let (app, broker) = backend_and_broker(0).await;
    let (_, sns) = app.batch(2).await;
    for (sn, fault) in sns.iter().zip([
        vesper::sim::Fault::WrongPassword,
        vesper::sim::Fault::NoHeartbeat,
    ]) {
        let plan = station_plan(&app, sn, 40_000).await;
        let board = SimBoard::spawn(SimConfig {
            broker: Some(("127.0.0.1".into(), broker.port)),
            heartbeat_every: Duration::from_millis(200),
            faults: vec![fault],
            ..SimConfig::default()
        })
        .unwrap();
        let port = board.path().to_str().unwrap().to_owned();
        tokio::task::spawn_blocking(move || {
            let (tx, _rx) = std::sync::mpsc::channel();
            flashing::flash(&port, &plan, &pty_options(true), &tx, flashing::ANY_BOARD)
        })
        .await
        .unwrap()
        .unwrap();
        let report = json!({ "chip": "esp32", "mac": format!("24:0A:C4:00:01:{:02X}", sn.len() % 7), "firmware_version": "1.0.1", "station": "bench-1", "force": true });
        app.post(
            &format!("/manufacturing/devices/{sn}/flashed"),
            &app.technician,
            report,
        )
        .await;
        let r = app
            .get(
                &format!("/manufacturing/devices/{sn}?wait=provisioned&timeout=2"),
                &app.viewer,
            )
            .await;
        assert_eq!(r.headers()["x-wait-result"], "timeout", "{fault:?}");
        if fault == vesper::sim::Fault::WrongPassword {
            assert!(
                board
                    .wait_for(Duration::from_secs(5), |e| matches!(
                        e,
                        SimEvent::MqttRefused { .. }
                    ))
                    .is_some()
            );
        }
    }
    app.stop().await;
}

/// What the simulated board holds after a flash, read by Espressif's own tool: `esptool
/// image-info` on the app read back from the board's flash finds a valid image (checksum and
/// SHA-256) with the release's version, the same version the board's own boot reader reports.
#[test]
fn esptool_reads_the_app_a_simulated_board_was_flashed_with() {
    let f = fixture(300_000);
    let plan = f.plan("PV-26A18-BC02R-X7KQA");
    let board = SimBoard::spawn(SimConfig::default()).unwrap();
    let (tx, _rx) = std::sync::mpsc::channel();
    vesper::flashing::flash(
        board.path().to_str().unwrap(),
        &plan,
        &pty_options(true),
        &tx,
        vesper::flashing::ANY_BOARD,
    )
    .unwrap();
    let app = plan
        .parts
        .iter()
        .find(|p| p.data.len() == 300_000)
        .expect("the app part");
    let flash = board.flash();
    let read_back = &flash[app.offset as usize..app.offset as usize + app.data.len()];
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("app-read-back.bin");
    std::fs::write(&file, read_back).unwrap();
    let out = esptool(&["--chip", "esp32", "image-info", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", support::stderr(&out));
    assert!(
        text.contains("Checksum: ") && text.contains("(valid)"),
        "{text}"
    );
    assert!(text.contains("Validation hash: "), "{text}");
    assert!(!text.contains("invalid"), "{text}");
    assert!(text.contains("App version: 1.0.1"), "{text}");
    let (report, _) = vesper::sim::boot(&flash, [0x24, 0x0A, 0xC4, 0, 0, 1], false);
    assert_eq!(report.firmware_version.as_deref(), Some("1.0.1"));
}
