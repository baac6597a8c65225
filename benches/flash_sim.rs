//! Benchmark: flash a 1.5 MB app + bootloader + partition table + NVS into simulated boards whose
//! serial lines are paced like a real UART at 921600 baud (115200 until the host switches), to
//! one board and to eight at once. Prints the times and the line-rate bound of the bytes actually
//! sent (compressed by the stub). Run: `cargo bench --bench flash_sim`. Not a timed test.

use std::time::{Duration, Instant};

use vesper::config::{Board, Chip, FlashMode};
use vesper::firmware::{Build, Manifest, Part};
use vesper::flashing::{self, Bundle, FlashOptions, FlashPlan};
use vesper::sim::{SimBoard, SimConfig};

const APP: usize = 1_500_000;

/// A 1.5 MB app from the simulator's one realistic generator (deflates to about 60 %).
fn app() -> Vec<u8> {
    vesper::sim::realistic_app(APP, "1.0.1")
}

fn board(dir: &std::path::Path) -> Board {
    let table_path = dir.join("t.csv");
    std::fs::write(&table_path, vesper::config::EXAMPLE_TABLES[0].1).unwrap();
    let table = vesper::files::partition_table(&table_path).unwrap();
    let nvs = table.nvs("nvs").unwrap();
    Board {
        name: "bench".into(),
        hw_type: "BC".parse().unwrap(),
        hw_version: "02".parse().unwrap(),
        chip: Chip::Esp32,
        flash_size: 4 << 20,
        flash_mode: FlashMode::Dio,
        partition_table: table_path,
        table,
        nvs_name: "nvs".into(),
        nvs,
        nvs_extra: vec![],
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let board = board(dir.path());
    let mut bootloader = vec![0x11u8; 0x4000];
    bootloader[0] = 0xE9;
    let files = [
        ("bootloader.bin", 0x1000, bootloader),
        ("partitions.bin", 0x8000, board.table.to_bin().unwrap()),
        ("firmware.bin", 0x20000, app()),
    ];
    let mut parts = Vec::new();
    for (name, offset, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        parts.push(Part {
            path: (*name).into(),
            offset: *offset,
            size: bytes.len() as u64,
            sha256: String::new(),
        });
    }
    let bundle = Bundle {
        manifest: Manifest {
            name: "bench".into(),
            version: "1".into(),
            builds: vec![Build {
                chip_family: "ESP32".into(),
                parts,
            }],
            app: "firmware.bin".into(),
            size: 0,
            sha256: String::new(),
            url: String::new(),
        }
        .into(),
        dir: dir.path().to_owned(),
        elsewhere: Vec::new(),
    };
    let plan = FlashPlan::new(&board, &bundle, vec![0xFF; board.nvs.size as usize]).unwrap();
    let options = FlashOptions {
        baud: 921_600,
        reset: false,
        use_stub: true,
        retries: 0,
        ..FlashOptions::default()
    };
    let paced = SimConfig {
        baud: Some(115_200),
        flash_timing: Some(vesper::sim::FlashTiming::W25Q32JV),
        ..SimConfig::default()
    };

    let run = |count: usize| -> (Duration, Vec<vesper::sim::LineStats>) {
        let boards: Vec<SimBoard> = (0..count)
            .map(|_| SimBoard::spawn(paced.clone()).unwrap())
            .collect();
        let start = Instant::now();
        std::thread::scope(|s| {
            for b in &boards {
                let (plan, options) = (&plan, &options);
                s.spawn(move || {
                    let (tx, _rx) = std::sync::mpsc::channel();
                    flashing::flash(
                        b.path().to_str().unwrap(),
                        plan,
                        options,
                        &tx,
                        flashing::ANY_BOARD,
                    )
                    .unwrap();
                });
            }
        });
        let elapsed = start.elapsed();
        (elapsed, boards.iter().map(|b| b.line_stats()).collect())
    };
    let (one, stats) = run(1);
    let bound = stats[0].line_time;
    let (eight, _) = run(8);
    println!(
        "flash {} bytes (bootloader + table + NVS + 1.5 MB app) over a paced 921600-baud line:",
        plan.total_bytes()
    );
    println!(
        "  bytes on the wire: {} to the board, {} back",
        stats[0].bytes_in, stats[0].bytes_out
    );
    println!("  line-rate bound:   {:.2} s", bound.as_secs_f64());
    println!(
        "  one board:         {:.2} s ({:.2}x the bound)",
        one.as_secs_f64(),
        one.as_secs_f64() / bound.as_secs_f64()
    );
    println!(
        "  eight boards:      {:.2} s ({:.2}x one board)",
        eight.as_secs_f64(),
        eight.as_secs_f64() / one.as_secs_f64()
    );
}
