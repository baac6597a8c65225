//! Benchmark: `vesper flash` against Espressif's `esptool` (pinned in tests/requirements.txt, from
//! the test venv) on the same simulated boards, the same bundle and the same baud, in one run.
//!
//! The boards are real in time: their serial lines are paced like a UART (115200 baud until the
//! flasher switches to 921600) and their flash chip takes the W25Q32JV datasheet's erase and
//! program times. The bundle is a bootloader, the partition table, `boot_app0`, a 900 KiB app
//! that deflates like a real one, and each board's own NVS image. One board, then eight at once
//! (`vesper flash` with eight ports against eight esptool processes). Every board's flash is
//! checked against the plan after each run. Run: `cargo bench --bench flash_peers`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vesper::credentials::MasterSecret;
use vesper::flashing::{Bundle, FlashPlan};
use vesper::sim::{FlashTiming, SimBoard, SimConfig};

const APP: usize = 900 * 1024;
const BAUD: &str = "921600";

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    bundle: PathBuf,
    plans: Vec<(PathBuf, FlashPlan)>,
}

fn setup(boards: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in vesper::config::EXAMPLE_TABLES {
        std::fs::create_dir_all(dir.path().join(path).parent().unwrap()).unwrap();
        std::fs::write(dir.path().join(path), text).unwrap();
    }
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, vesper::config::EXAMPLE).unwrap();
    let config = vesper::config::load(&config_path).unwrap();
    let board = config.board("bellcore-v2").unwrap();
    vesper::demo::publish_release(
        &config.serve.ota_root,
        board,
        "1.0.1",
        vesper::sim::realistic_app(APP, "1.0.1"),
    )
    .unwrap();
    let bundle_dir = config.serve.ota_root.join("bellcore-v2/v1.0.1");
    let bundle = Bundle::load(&bundle_dir).unwrap();
    let secret = MasterSecret::new("bench-secret-0123456789abcdef0123456789", "bench").unwrap();
    let mut plans = Vec::new();
    for i in 0..boards {
        let sn: vesper::serial::SerialNumber = format!(
            "PV-26A18-BC02R-X7KQ{}",
            ["A", "C", "D", "E", "F", "G", "H", "J"][i]
        )
        .parse()
        .unwrap();
        let image = vesper::demo::device_image(board, &secret, &sn);
        let path = dir.path().join(format!("nvs-{i}.bin"));
        std::fs::write(&path, &image).unwrap();
        plans.push((path, FlashPlan::new(board, &bundle, image).unwrap()));
    }
    Setup {
        config: config_path,
        bundle: bundle_dir,
        plans,
        dir,
    }
}

fn boards(count: usize) -> Vec<SimBoard> {
    (0..count)
        .map(|i| {
            SimBoard::spawn(SimConfig {
                baud: Some(115_200),
                flash_timing: Some(FlashTiming::W25Q32JV),
                mac: [0x24, 0x0A, 0xC4, 0x00, 0x10, i as u8],
                ..SimConfig::default()
            })
            .unwrap()
        })
        .collect()
}

fn check(boards: &[SimBoard], setup: &Setup, who: &str) {
    for (board, (_, plan)) in boards.iter().zip(&setup.plans) {
        assert!(
            board.flash() == plan.image(4 << 20),
            "{who}: a board's flash differs from the plan"
        );
    }
}

fn vesper_flash(setup: &Setup, boards: &[SimBoard]) -> Duration {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vesper"));
    cmd.arg("--config").arg(&setup.config).args([
        "flash",
        "--board",
        "bellcore-v2",
        "--no-reset",
        "--baud",
        BAUD,
        "--json",
    ]);
    cmd.arg("--bundle").arg(&setup.bundle);
    for (board, (nvs, _)) in boards.iter().zip(&setup.plans) {
        cmd.arg("--port").arg(board.path()).arg("--nvs").arg(nvs);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn python() -> PathBuf {
    std::env::var_os("VESPER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

fn esptool(setup: &Setup, boards: &[SimBoard]) -> Duration {
    let parts_dir = setup.dir.path().join("esptool");
    std::fs::create_dir_all(&parts_dir).unwrap();
    let commands: Vec<Command> = boards
        .iter()
        .zip(&setup.plans)
        .enumerate()
        .map(|(i, (board, (_, plan)))| {
            let mut cmd = Command::new(python());
            cmd.args(["-m", "esptool", "--chip", "esp32", "--baud", BAUD])
                .arg("--port")
                .arg(board.path())
                .args([
                    "--before",
                    "no-reset",
                    "--after",
                    "no-reset",
                    "write-flash",
                    "-z",
                ]);
            for part in &plan.parts {
                let file = parts_dir.join(format!("{i}-{}", part.name));
                std::fs::write(&file, &part.data).unwrap();
                cmd.arg(format!("0x{:x}", part.offset)).arg(file);
            }
            cmd.stdout(std::process::Stdio::null());
            cmd
        })
        .collect();
    let start = Instant::now();
    let children: Vec<_> = commands
        .into_iter()
        .map(|mut c| {
            c.spawn()
                .expect("esptool from the test venv (./scripts/test makes it)")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "esptool failed");
    }
    start.elapsed()
}

fn main() {
    println!(
        "vesper flash vs esptool: same simulated boards (UART-paced, W25Q32JV timing), same bundle ({} KiB app), {BAUD} baud",
        APP / 1024
    );
    println!("| boards | vesper flash | esptool | esptool / vesper |");
    println!("|---|---|---|---|");
    for count in [1, 8] {
        let setup = setup(count);
        let ours = {
            let boards = boards(count);
            let took = vesper_flash(&setup, &boards);
            check(&boards, &setup, "vesper flash");
            took
        };
        let theirs = {
            let boards = boards(count);
            let took = esptool(&setup, &boards);
            check(&boards, &setup, "esptool");
            took
        };
        println!(
            "| {count} | {:.2} s | {:.2} s | {:.2}x |",
            ours.as_secs_f64(),
            theirs.as_secs_f64(),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
