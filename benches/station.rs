//! Benchmark: the station, headless (its real event loop core drawing into ratatui's
//! `TestBackend`) on `vesper demo`'s in-process backend, embedded broker and simulated boards.
//!
//! 1. Bench throughput: four slots, boards paced like real UARTs (115200 baud, then 921600 once
//!    the flasher switches), a 900 KiB app. Wall time from "batch of 15 created" to "15
//!    provisioned", and the station's own overhead per board: each board's time on its slot minus
//!    what the simulated hardware spends (bytes on the wire at the line's baud rate, boot to first
//!    heartbeat).
//! 2. Key presses with 100,000 devices in the registry: key to drawn frame on the Devices screen,
//!    key to drawn search results, and a page-down that fetches the next page.
//!
//! Run: `cargo bench --bench station`. Not a timed test.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use vesper::client::BatchOrder;
use vesper::demo::{Demo, DemoOptions};
use vesper::station::bench::SlotState;
use vesper::station::{Action, Screen, Station, StationOptions};

const BATCH: u32 = 15;
const SLOTS: usize = 4;
/// Most of the example board's 960 KiB app partition.
const APP: usize = 900 * 1024;
const DEVICES: u32 = 100_000;

fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// Waits for reports (or a tick) and handles them; draws after each round like the real loop.
async fn pump(station: &mut Station, terminal: &mut Terminal<TestBackend>) {
    let report = tokio::time::timeout(Duration::from_millis(250), station.next_report()).await;
    let action = report.ok().flatten().or(Some(Action::Tick));
    station.handle(action);
    station.draw(terminal).unwrap();
}

/// Pumps until `done` holds; panics after `limit`.
/// Presses `code` and draws: the time to that frame, and, when the key started a fetch of the
/// device list, the time until its rows are drawn.
async fn press_and_load(
    station: &mut Station,
    terminal: &mut Terminal<TestBackend>,
    code: KeyCode,
    what: &str,
) -> (Duration, Option<Duration>) {
    let t = Instant::now();
    station.handle(Some(key(code)));
    station.draw(terminal).unwrap();
    let frame = t.elapsed();
    if !station.app.devices.loading {
        return (frame, None);
    }
    pump_until(station, terminal, Duration::from_secs(10), what, |s| {
        !s.app.devices.loading
    })
    .await;
    (frame, Some(t.elapsed()))
}

async fn pump_until(
    station: &mut Station,
    terminal: &mut Terminal<TestBackend>,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&Station) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(station) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        pump(station, terminal).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Fewest samples a p99 is printed from: below that, the "p99" would be one of the last few
/// samples (the max of a handful), not a percentile.
const P99_SAMPLES: usize = 100;

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p99 = if samples.len() >= P99_SAMPLES {
        format!("{:>7.2} ms", ms(percentile(&samples, 0.99)))
    } else {
        format!("n/a (<{P99_SAMPLES} samples)")
    };
    println!(
        "{name:<40} n={:<4} p50 {:>7.2} ms  p99 {p99}  max {:>7.2} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(*samples.last().unwrap()),
    );
}

#[tokio::main]
async fn main() {
    let demo = Demo::start(DemoOptions {
        keep: None,
        boards: SLOTS,
        paced: true,
        swap_after: Duration::ZERO,
        app_size: APP,
    })
    .await
    .expect("demo");
    let client = demo.client();
    let mut station = Station::start(
        demo.config.clone(),
        client.clone(),
        StationOptions {
            start: Screen::Bench,
            labels_dir: demo.dir.clone(),
        },
    );
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    pump_until(
        &mut station,
        &mut terminal,
        Duration::from_secs(20),
        "the boards in their slots",
        |s| s.app.bench.slots.iter().all(|slot| slot.port.is_some()),
    )
    .await;

    // 1. Fifteen boards on four slots.
    let batch = client
        .create_batch(&BatchOrder::of(&demo.config.boards[0].name, BATCH))
        .await
        .expect("batch");
    let started = Instant::now();
    station.handle(Some(Action::UseBatch(batch.summary.clone())));
    let mut on_slot = Vec::new();
    let mut flashing = HashMap::new();
    let mut seen = HashSet::new();
    pump_until(
        &mut station,
        &mut terminal,
        Duration::from_secs(600),
        "15 provisioned",
        |s| {
            for (i, slot) in s.app.bench.slots.iter().enumerate() {
                if let SlotState::Verifying { flash_seconds, .. } = slot.state {
                    flashing.insert((i, slot.job), flash_seconds);
                }
                if let SlotState::Done { seconds } = slot.state
                    && seen.insert((i, slot.job))
                {
                    on_slot.push(seconds);
                }
            }
            s.app.bench.done >= BATCH
        },
    )
    .await;
    let wall = started.elapsed();
    assert_eq!(station.app.bench.failed, 0, "no board may fail");
    // The feeder records a board when it pulls it out, just after its heartbeat.
    let deadline = Instant::now() + Duration::from_secs(10);
    while demo.feeder.stats().boards.len() < BATCH as usize && Instant::now() < deadline {
        pump(&mut station, &mut terminal).await;
    }
    let boards = demo.feeder.stats().boards;
    assert_eq!(
        boards.len(),
        BATCH as usize,
        "every board sent its heartbeat"
    );
    let line: f64 = boards.iter().map(|b| b.line.line_time.as_secs_f64()).sum();
    let boot: f64 = boards
        .iter()
        .map(|b| b.boot_to_heartbeat.as_secs_f64())
        .sum();
    let slot_time: f64 = on_slot.iter().sum();
    let flash_time: f64 = flashing.values().sum();
    let n = f64::from(BATCH);
    let registry = client.batch_record(&batch.summary.batch_id).await.unwrap();
    let provisioned = registry
        .devices
        .iter()
        .filter(|d| d.status.as_str() == "provisioned")
        .count();
    assert_eq!(provisioned, BATCH as usize);
    println!(
        "bench: {BATCH} boards on {SLOTS} slots, {} KiB app, 921600 baud",
        APP / 1024
    );
    println!(
        "  wall time, batch created -> {BATCH} provisioned   {:>6.1} s ({:.1} s per board)",
        wall.as_secs_f64(),
        wall.as_secs_f64() / n
    );
    println!(
        "  per board: on its slot {:.3} s = serial line {:.3} s + boot to heartbeat {:.3} s + station {:.3} s",
        slot_time / n,
        line / n,
        boot / n,
        (slot_time - line - boot) / n
    );
    println!(
        "  of which flashing {:.3} s (serial line {:.3} s), claim + plan + verify {:.3} s",
        flash_time / n,
        line / n,
        (slot_time - flash_time) / n
    );

    // 2. Key presses with 100,000 devices.
    let start = Instant::now();
    let mut made = 0;
    while made < DEVICES {
        let quantity = (DEVICES - made).min(10_000);
        client
            .create_batch(&BatchOrder::of(&demo.config.boards[0].name, quantity))
            .await
            .expect("batch of 10,000");
        made += quantity;
    }
    println!(
        "devices: {DEVICES} created in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    station.handle(Some(key(KeyCode::Char('d'))));
    pump_until(
        &mut station,
        &mut terminal,
        Duration::from_secs(30),
        "the first page",
        |s| s.app.devices.page.is_some() && !s.app.devices.loading,
    )
    .await;
    let page = station.app.devices.page.as_ref().unwrap();
    // Counts stop at 10,000 (the list says "10000+"): a full page, and the cap reported.
    assert!(
        page.total >= i64::from(DEVICES) || (page.total_capped && page.total >= 10_000),
        "{} devices listed",
        page.total
    );

    // Moving within the loaded page: the answer is the next frame.
    let mut frames = Vec::new();
    for i in 0..300 {
        let code = if (i / 50) % 2 == 0 {
            KeyCode::Down
        } else {
            KeyCode::Up
        };
        let t = Instant::now();
        station.handle(Some(key(code)));
        station.draw(&mut terminal).unwrap();
        frames.push(t.elapsed());
    }
    report("key -> frame (Down/Up in a page)", frames);

    // Paging across page boundaries: key -> frame, and key -> the fetched rows drawn. One press
    // in ten crosses into a page not yet loaded; at either end of the list the direction turns
    // (PgDn, then PgUp back), until 100 presses have fetched.
    let (mut pgdn_frame, mut pgdn_rows) = (Vec::new(), Vec::new());
    let mut direction = KeyCode::PageDown;
    while pgdn_rows.len() < P99_SAMPLES {
        assert!(pgdn_frame.len() < 20_000, "paging stopped fetching");
        let before = station.app.devices.selected;
        let (frame, rows) =
            press_and_load(&mut station, &mut terminal, direction, "the next page").await;
        pgdn_frame.push(frame);
        pgdn_rows.extend(rows);
        if station.app.devices.selected == before {
            direction = match direction {
                KeyCode::PageDown => KeyCode::PageUp,
                _ => KeyCode::PageDown,
            };
        }
    }
    report("key -> frame (PgDn/PgUp)", pgdn_frame);
    report("key -> next page drawn (paging, fetch)", pgdn_rows);

    // Typing a search: every key restarts the query; the frame answers at once, results follow.
    station.handle(Some(key(KeyCode::Char('/'))));
    let (mut type_frame, mut type_rows) = (Vec::new(), Vec::new());
    let prefix = batch.devices[0].serial_number.clone();
    // 20 rounds of 6 to 10 characters: 160 keys, each a new query.
    for round in 0..20 {
        let typed = 6 + round % 5;
        for c in prefix.chars().take(typed) {
            let (frame, rows) = press_and_load(
                &mut station,
                &mut terminal,
                KeyCode::Char(c),
                "search results",
            )
            .await;
            type_frame.push(frame);
            type_rows.extend(rows);
        }
        for _ in 0..typed {
            station.handle(Some(key(KeyCode::Backspace)));
        }
    }
    report("key -> frame (typing a search)", type_frame);
    report("key -> search results drawn", type_rows);

    drop(station);
    demo.stop().await;
}
