//! The flashing engine (espflash) against the simulated board on real pseudo-terminals: ROM and
//! stub, byte-for-byte results, every failure mode, several boards at once.

use std::sync::mpsc;
use std::time::Duration;

use vesper::config::Config;
use vesper::credentials::MasterSecret;
use vesper::demo::app_image;
use vesper::flashing::{self, Bundle, FlashError, FlashEvent, FlashOptions, FlashPlan};
use vesper::nvs;
use vesper::sim::{Fault, SimBoard, SimConfig, SimEvent};

pub const SECRET: &str = "vesper-test-secret-0123456789abcdef";

/// A configuration folder, a published release for bellcore-v2, and its bundle.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub config: Config,
    pub bundle: Bundle,
}

pub fn fixture(app_len: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in vesper::config::EXAMPLE_TABLES {
        std::fs::create_dir_all(dir.path().join(path).parent().unwrap()).unwrap();
        std::fs::write(dir.path().join(path), text).unwrap();
    }
    std::fs::write(dir.path().join("config.toml"), vesper::config::EXAMPLE).unwrap();
    let config = vesper::config::load(&dir.path().join("config.toml")).unwrap();
    let board = config.board("bellcore-v2").unwrap();
    vesper::demo::publish_release(
        &config.serve.ota_root,
        board,
        "1.0.1",
        app_image(app_len, "1.0.1"),
    )
    .unwrap();
    let bundle = Bundle::load(&config.serve.ota_root.join("bellcore-v2/v1.0.1")).unwrap();
    Fixture {
        _dir: dir,
        config,
        bundle,
    }
}

impl Fixture {
    /// The flash plan of one device: the bundle and its NVS image.
    pub fn plan(&self, sn: &str) -> FlashPlan {
        let board = self.config.board("bellcore-v2").unwrap();
        let secret = MasterSecret::new(SECRET, "test").unwrap();
        let nvs = vesper::demo::device_image(board, &secret, &sn.parse().unwrap());
        FlashPlan::new(board, &self.bundle, nvs).unwrap()
    }
}

pub fn pty_options(use_stub: bool) -> FlashOptions {
    FlashOptions {
        baud: 115_200,
        reset: false,
        use_stub,
        retries: 2,
        ..FlashOptions::default()
    }
}

fn run(
    board: &SimBoard,
    plan: &FlashPlan,
    options: &FlashOptions,
) -> (Result<flashing::FlashOutcome, FlashError>, Vec<FlashEvent>) {
    let (tx, rx) = mpsc::channel();
    let result = flashing::flash(
        board.path().to_str().unwrap(),
        plan,
        options,
        &tx,
        flashing::ANY_BOARD,
    );
    drop(tx);
    (result, rx.iter().collect())
}

#[test]
fn rom_and_stub_write_exactly_the_plan() {
    let f = fixture(300_000);
    for use_stub in [false, true] {
        let board = SimBoard::spawn(SimConfig {
            mac: [0x24, 0x0A, 0xC4, 0x12, 0x34, 0x56],
            ..SimConfig::default()
        })
        .unwrap();
        let plan = f.plan("PV-26A18-BC02R-X7KQA");
        let (result, events) = run(&board, &plan, &pty_options(use_stub));
        let outcome = result.unwrap_or_else(|e| panic!("stub={use_stub}: {e}"));
        assert_eq!(outcome.mac, "24:0A:C4:12:34:56");
        assert!(outcome.chip.starts_with("esp32"), "{}", outcome.chip);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, FlashEvent::Connected { .. }))
        );
        let parts: Vec<&str> = events
            .iter()
            .filter_map(|e| {
                if let FlashEvent::PartDone { part, .. } = e {
                    Some(part.as_str())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            parts,
            [
                "bootloader.bin",
                "partitions.bin",
                "nvs",
                "boot_app0.bin",
                "firmware.bin"
            ]
        );
        let flash = board.stop();
        let expected = plan.image(4 << 20);
        let diff = flash.iter().zip(&expected).position(|(a, b)| a != b);
        assert!(
            diff.is_none(),
            "stub={use_stub}: first difference at {diff:x?}"
        );
    }
}

#[test]
fn the_flashed_board_boots_what_was_written() {
    let f = fixture(100_000);
    let board = SimBoard::spawn(SimConfig::default()).unwrap();
    let (result, _) = run(&board, &f.plan("PV-26A18-BC02R-X7KQA"), &pty_options(true));
    result.unwrap();
    // The stub stays in charge until the host lets go of the port; closing it resets the board.
    let booted = board
        .wait_for(Duration::from_secs(5), |e| matches!(e, SimEvent::Booted(_)))
        .expect("a boot");
    let SimEvent::Booted(report) = booted else {
        unreachable!()
    };
    assert!(report.ok, "{report:?}");
    assert_eq!(report.serial_number(), Some("PV-26A18-BC02R-X7KQA"));
    assert_eq!(report.firmware_version.as_deref(), Some("1.0.1"));
    assert_eq!(report.app_offset, Some(0x20000));
    assert_eq!(
        report.nvs.get("mqtt_port").map(String::as_str),
        Some("1883")
    );
}

#[test]
fn each_failure_is_named_and_transient_ones_are_retried() {
    let f = fixture(60_000);
    let plan = f.plan("PV-26A18-BC02R-X7KQA");
    let mut no_retry = pty_options(true);
    no_retry.retries = 0;
    for (fault, expected) in [
        (Fault::NoSync, FlashError::NoSync),
        (Fault::WriteError(2), FlashError::WriteFailed),
        (Fault::Md5Mismatch, FlashError::VerifyMismatch),
        (Fault::Unplug(2), FlashError::PortVanished),
    ] {
        let board = SimBoard::spawn(SimConfig {
            faults: vec![fault],
            ..SimConfig::default()
        })
        .unwrap();
        let (result, events) = run(&board, &plan, &no_retry);
        assert_eq!(result.unwrap_err(), expected, "{fault:?}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, FlashEvent::Failed { .. }))
        );
        drop(board);
    }
    for fault in [Fault::WriteError(3), Fault::Md5Mismatch] {
        let board = SimBoard::spawn(SimConfig {
            faults: vec![fault],
            ..SimConfig::default()
        })
        .unwrap();
        let (result, events) = run(&board, &plan, &pty_options(true));
        let outcome = result.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(outcome.attempts, 2, "{fault:?}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, FlashEvent::Retrying { .. }))
        );
        assert_eq!(
            board.stop(),
            plan.image(4 << 20),
            "{fault:?}: the retry wrote everything"
        );
    }
}

#[test]
fn four_boards_in_parallel_each_with_its_own_serial_number() {
    let f = fixture(120_000);
    let sns = [
        "PV-26A18-BC02R-AAAAA",
        "PV-26A18-BC02R-BBBBB",
        "PV-26A18-BC02R-CCCCC",
        "PV-26A18-BC02R-DDDDD",
    ];
    let boards: Vec<SimBoard> = (0..4u8)
        .map(|i| {
            SimBoard::spawn(SimConfig {
                mac: [0x24, 0x0A, 0xC4, 0, 0, i],
                ..SimConfig::default()
            })
            .unwrap()
        })
        .collect();
    let plans: Vec<FlashPlan> = sns.iter().map(|sn| f.plan(sn)).collect();
    std::thread::scope(|s| {
        let jobs: Vec<_> = boards
            .iter()
            .zip(&plans)
            .map(|(board, plan)| s.spawn(move || run(board, plan, &pty_options(true)).0))
            .collect();
        for (i, job) in jobs.into_iter().enumerate() {
            let outcome = job.join().unwrap().unwrap();
            assert_eq!(outcome.mac, format!("24:0A:C4:00:00:{i:02X}"));
        }
    });
    for ((board, plan), sn) in boards.into_iter().zip(&plans).zip(sns) {
        let flash = board.stop();
        assert_eq!(flash, plan.image(4 << 20));
        let decoded = nvs::dump::decode(&flash[0x9000..0xF000]);
        assert!(decoded.items.iter().any(|i| i.key == "serial_number"
            && i.value == nvs::dump::ItemValue::Str(format!("{sn}\0").into_bytes())));
    }
}

#[test]
fn a_board_of_another_chip_or_with_a_bad_app_is_reported() {
    let f = fixture(40_000);
    let plan = f.plan("PV-26A18-BC02R-X7KQA");
    let board = SimBoard::spawn(SimConfig::default()).unwrap();
    let mut s3 = pty_options(true);
    s3.chip = espflash::target::Chip::Esp32s3;
    let (result, _) = run(&board, &plan, &s3);
    let err = result.unwrap_err();
    assert!(matches!(err, FlashError::WrongChip { .. }), "{err}");
    assert!(err.to_string().contains("wrong chip"), "{err}");
    drop(board);

    let board = SimBoard::spawn(SimConfig {
        faults: vec![Fault::BadApp],
        ..SimConfig::default()
    })
    .unwrap();
    run(&board, &plan, &pty_options(false)).0.unwrap();
    let event = board
        .wait_for(Duration::from_secs(5), |e| matches!(e, SimEvent::Booted(_)))
        .expect("the ROM loader reboots after FLASH_END");
    let SimEvent::Booted(report) = event else {
        unreachable!()
    };
    assert!(!report.ok);
    assert!(report.error.unwrap().contains("invalid magic byte"));
}

/// A board with a real flash chip's times takes at least what its chip needs: the erase of every
/// region written (64 KB blocks where they fit, 4 KB sectors elsewhere) and a page program per
/// 256 bytes, from the W25Q32JV datasheet. Without the model the same flash takes far less.
#[test]
fn a_simulated_flash_chip_takes_its_datasheet_time() {
    use std::time::Instant;
    use vesper::sim::FlashTiming;
    let f = fixture(256 * 1024);
    let plan = f.plan("PV-26A18-BC02R-X7KQA");
    let chip = FlashTiming::W25Q32JV;
    let least: Duration = plan
        .parts
        .iter()
        .map(|p| chip.erase(p.offset as usize, p.data.len()) + chip.program(p.data.len()))
        .sum();
    assert!(least > Duration::from_millis(800), "{least:?}");
    let mut took = Vec::new();
    for timing in [Some(chip), None] {
        let board = SimBoard::spawn(SimConfig {
            flash_timing: timing,
            ..SimConfig::default()
        })
        .unwrap();
        let start = Instant::now();
        let (result, _) = run(&board, &plan, &pty_options(true));
        result.unwrap();
        took.push(start.elapsed());
    }
    assert!(
        took[0] >= least,
        "with the chip model the flash took {:?}, less than the chip's own {least:?}",
        took[0]
    );
    assert!(took[1] < took[0], "{took:?}");
}

/// Plain ESP Web Tools manifests (no size, no sha256, no `app`): planned like ours, their sums
/// checked when given, the app found by the board's table, and the one without an app, the one
/// for another chip and one with a wrong sum refused with the reason.
#[test]
fn plain_esp_web_tools_manifests_are_planned_and_their_mistakes_named() {
    let f = fixture(50_000);
    let board = f.config.board("bellcore-v2").unwrap();
    let nvs = vec![0xFF; board.nvs.size as usize];
    let plan_of = |manifest: serde_json::Value| {
        std::fs::write(f.bundle.dir.join("plain.json"), manifest.to_string()).unwrap();
        let bundle = Bundle::load(&f.bundle.dir.join("plain.json")).unwrap();
        FlashPlan::new(board, &bundle, nvs.clone()).map_err(|e| e.to_string())
    };
    let part = |path: &str, offset: u32| serde_json::json!({ "path": path, "offset": offset });
    let ours = f.plan("PV-26A18-BC02R-X7KQA");
    let plan = plan_of(serde_json::json!({ "name": "Any product", "builds": [
        { "chipFamily": "ESP32-S3", "parts": [part("firmware.bin", 0)] },
        { "chipFamily": "ESP32", "parts": [
            part("bootloader.bin", 0x1000), part("partitions.bin", 0x8000),
            part("boot_app0.bin", 0xF000), part("firmware.bin", 0x20000)] },
    ]}))
    .unwrap();
    let names = |p: &FlashPlan| -> Vec<(String, u32, usize)> {
        p.parts
            .iter()
            .filter(|x| x.name != "nvs")
            .map(|x| (x.name.clone(), x.offset, x.data.len()))
            .collect()
    };
    assert_eq!(names(&plan), names(&ours));
    assert_eq!(
        plan.firmware_version, "1.0.1",
        "read from the app's description"
    );

    let err = plan_of(
        serde_json::json!({ "builds": [{ "chipFamily": "ESP32", "parts": [
        part("bootloader.bin", 0x1000), part("partitions.bin", 0x8000)] }]}),
    )
    .unwrap_err();
    assert!(
        err.contains("no part at an app partition of board bellcore-v2 (0x20000, 0x200000)"),
        "{err}"
    );
    let err = plan_of(
        serde_json::json!({ "builds": [{ "chipFamily": "ESP32-C3", "parts": [
        part("firmware.bin", 0x20000)] }]}),
    )
    .unwrap_err();
    assert!(
        err.contains("the bundle is for ESP32-C3, but board bellcore-v2"),
        "{err}"
    );
    let err = plan_of(
        serde_json::json!({ "builds": [{ "chipFamily": "ESP32", "parts": [
        { "path": "firmware.bin", "offset": "0x20000", "sha256": "00".repeat(32) }] }]}),
    )
    .unwrap_err();
    assert!(err.contains("SHA-256 does not match"), "{err}");
    let err = plan_of(
        serde_json::json!({ "builds": [{ "chipFamily": "ESP32", "parts": [
        { "path": "firmware.bin", "offset": 0x20000, "size": 3 }] }]}),
    )
    .unwrap_err();
    assert!(err.contains("the manifest says 3"), "{err}");
}
