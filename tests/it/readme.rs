//! The README's figures are generated from the files the long runs write: the benchmark table
//! from `benches/RESULTS.md` (only `scripts/bench` writes it, in one run), each cell a figure read
//! from that file, and the fuzzing table from `fuzz/RESULTS.md` (only a full `scripts/fuzz` run
//! writes it). The tests fail when a table is not what its file gives (`VESPER_BLESS=1` rewrites
//! them) or when a figure in the README's benchmark section is not in RESULTS.md.

use regex::Regex;

use crate::support::root;

const START: &str = "<!-- benchmark table: generated from benches/RESULTS.md -->";
const END: &str = "<!-- end of benchmark table -->";

/// The captures of `pattern` in RESULTS.md, or a message naming the pattern.
fn read(results: &str, pattern: &str) -> Vec<String> {
    let re = Regex::new(pattern).unwrap();
    let caps = re.captures(results).unwrap_or_else(|| {
        panic!("benches/RESULTS.md has no line matching `{pattern}`: run scripts/bench")
    });
    caps.iter()
        .skip(1)
        .map(|c| c.map_or(String::new(), |m| m.as_str().to_owned()))
        .collect()
}

fn number(text: &str) -> f64 {
    text.parse()
        .unwrap_or_else(|_| panic!("`{text}` is not a number"))
}

/// How many times faster (or more) the first figure is.
fn ratio(ours: f64, theirs: f64) -> String {
    let r = ours / theirs;
    if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

/// The table, row by row, from RESULTS.md.
fn table(results: &str) -> String {
    let r = |pattern: &str| read(results, pattern);
    let mut rows = vec![
        "| job | vesper | peer | ratio |".to_owned(),
        "|---|---|---|---|".to_owned(),
    ];
    let nvs = r(r"image only:\s+[\d.]+ ms total,\s+([\d.]+) us per image");
    let nvs_pw = r(r"with password derivation:\s+[\d.]+ ms total,\s+([\d.]+) us per image");
    let esp = r(r"10000 images in memory, best of 3: [\d.]+ ms total, ([\d.]+) us per image");
    let esp_csv = r(r"through a CSV file: ([\d.]+) us per image");
    rows.push(format!(
        "| 10,000 per-device NVS images (0x6000, namespace + 8 keys) in memory | **{} µs** per image ({} µs with the password derivation) | Espressif's generator, its in-memory functions: {} µs per image ({} µs through a CSV file) | {} |",
        nvs[0], nvs_pw[0], esp[0], esp_csv[0], ratio(number(&esp[0]), number(&nvs[0]))
    ));
    let labels = r(r"1000 labels on a4-l7160 \((\d+) pages, (\d+) KB\): ([\d.]+) s");
    let reportlab = r(r"reportlab \+ qrcode, 1000 labels on A4 L7160 \((\d+) KB\): ([\d.]+) s");
    rows.push(format!(
        "| 1,000 labels on `a4-l7160` to a PDF, vector QR codes | **{} s** ({} pages, {} KB) | reportlab + qrcode (the customer's plan), the same merged rectangles: {} s ({} KB) | {} |",
        labels[2], labels[0], labels[1], reportlab[1], reportlab[0], ratio(number(&reportlab[1]), number(&labels[2]))
    ));
    for (boards, what) in [("1", "one board"), ("8", "eight boards at once")] {
        let flash = r(&format!(
            r"\| {boards} \| ([\d.]+) s \| ([\d.]+) s \| ([\d.]+)x \|"
        ));
        rows.push(format!(
            "| flashing {what}: a 900 KiB app that deflates like a real one, 921600 baud, UART-paced simulated boards with the W25Q32JV's timing | **{} s** (`vesper flash`) | esptool, same boards, bundle and baud: {} s | {}x |",
            flash[0], flash[1], flash[2]
        ));
    }
    for route in ["user", "acl"] {
        let ours = r(&format!(
            r"vesper /mqtt/auth/{route}\s+([\d.]+) req/s\s+p99\s+([\d.]+)ms"
        ));
        let theirs = r(&format!(
            r"fastapi /mqtt/auth/{route}\s+([\d.]+) req/s\s+p99\s+([\d.]+)ms"
        ));
        rows.push(format!(
            "| `/mqtt/auth/{route}`, wrk 64 connections | **{} req/s**, p99 {} ms | FastAPI/uvicorn: {} req/s, p99 {} ms | {} |",
            ours[0], ours[1], theirs[0], theirs[1], ratio(number(&ours[0]), number(&theirs[0]))
        ));
    }
    let mail = r(
        r"vesper serve's worker: ([\d.]+) s from its start to the last recorded sent \((\d+) messages/s\)",
    );
    let smtplib =
        r(r"one connection per message \(inline in the request\): ([\d.]+) s \((\d+) messages/s\)");
    rows.push(format!(
        "| 1,000 invitations to an SMTP server on loopback (aiosmtpd), text + HTML | **{} s** ({} messages/s), every outcome committed with its audit row | Python's `smtplib` inline, recording nothing: {} s ({} messages/s) | {} |",
        mail[0], mail[1], smtplib[0], smtplib[1], ratio(number(&mail[1]), number(&smtplib[1]))
    ));
    let device = r(
        r"vesper-device \(the shipped firmware, src/main.cpp\)\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms",
    );
    let pub_ = r(r"mosquitto_pub -q 1 --cafile \(Eclipse's client\)\s+p50\s+([\d.]+) ms");
    let device_start = r(r"vesper-device --help\s+p50\s+([\d.]+) ms");
    rows.push(format!(
        "| a device's first login and heartbeat over TLS until provisioned, the shipped firmware on the host board, one process per device | **{} ms** p50 (p99 {} ms; {} ms of it process start) | `mosquitto_pub -q 1 --cafile` (TLS, login, one publish): {} ms p50 | |",
        device[0], device[1], device_start[0], pub_[0]
    ));
    let flooded = r(r"/healthz under the flood\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms");
    let alone = r(r"/healthz alone\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms");
    rows.push(format!(
        "| `/healthz` on fresh connections while 1,000 idle and 1,000 slowloris sockets are held open | **{} ms** p50 (p99 {} ms) | the same API without the flood: {} ms p50 (p99 {} ms) | |",
        flooded[0], flooded[1], alone[0], alone[1]
    ));
    let storm =
        r(r"connected and heartbeat acknowledged: ([\d.]+) s \((\d+) logins/s\); (\d+) timed out");
    let provisioned = r(r"all provisioned in the registry:\s+([\d.]+) s");
    let ceiling =
        r(r"Ceiling[^\n]*\n\s+connected and heartbeat acknowledged: ([\d.]+) s \((\d+) logins/s\)");
    let heard = r(r"every heartbeat at the subscriber:\s+([\d.]+) s");
    rows.push(format!(
        "| 10,000 devices reconnecting within 3 s through mosquitto + plugin + `vesper serve`: connected, heartbeat acknowledged, provisioned | **{} s** ({} logins/s, {} timed out), all provisioned at {} s | mosquitto with a password file and the same subscriber: {} s ({} logins/s), every heartbeat received at {} s | |",
        storm[0], storm[1], storm[2], provisioned[0], ceiling[0], ceiling[1], heard[0]
    ));
    let same_instant = |name: &str| {
        r(&format!(
            r"{name}: connected and acknowledged ([\d.]+) s \((\d+) of (\d+), (\d+) failed\).*listen overflows \+(\d+)"
        ))
    };
    let (straight, behind) = (same_instant("straight"), same_instant("behind-haproxy"));
    rows.push(format!(
        "| {} devices reconnecting in the same instant (a broker restart) through HAProxy (`deploy/haproxy.cfg`) + mosquitto + plugin + `vesper serve`: connected, heartbeat acknowledged | **{} s** ({} of {}, {} failed; listen overflows +{}) | the same storm straight to mosquitto + plugin, whose backlog is 100: {} s ({} failed; listen overflows +{}) | {} |",
        behind[2], behind[0], behind[1], behind[2], behind[3], behind[4], straight[0], straight[3], straight[4],
        ratio(number(&straight[0]), number(&behind[0]))
    ));
    let slow = r(
        r"unknown logins/s \((\d+) sent\): (\d+) messages, p50 ([\d.]+) ms p99 ([\d.]+) ms max ([\d.]+) ms; (\d+) lost",
    );
    let quiet =
        r(r"alone: (\d+) messages, p50 ([\d.]+) ms p99 ([\d.]+) ms max ([\d.]+) ms; (\d+) lost");
    rows.push(format!(
        "| a connected device's messages (QoS 1, every 20 ms) to a subscriber while 1,000 unknown logins per second arrive and every backend answer takes 2 s | **max {} ms** (p99 {} ms, {} lost) | the same device without the flood: max {} ms (p99 {} ms) | |",
        slow[4], slow[3], slow[5], quiet[3], quiet[2]
    ));
    let sqlite = r(
        r"sqlite: auth checks \(user \+ acl\), wrk -c64\s+([\d.]+) checks/s\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms",
    );
    let postgres = r(
        r"postgres: auth checks \(user \+ acl\), wrk -c64\s+([\d.]+) checks/s\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms",
    );
    rows.push(format!(
        "| the broker's auth checks with **1,000,000 devices** in the registry, wrk 64 connections | **SQLite: {} checks/s**, p99 {} ms | the same backend on PostgreSQL 15 (same machine): {} checks/s, p99 {} ms | {} |",
        sqlite[0], sqlite[2], postgres[0], postgres[2], ratio(number(&sqlite[0]), number(&postgres[0]))
    ));
    let sqlite_search =
        r(r"sqlite: search, all queries\s+n\s+(\d+)\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms");
    let pg_search =
        r(r"postgres: search, all queries\s+n\s+(\d+)\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms");
    rows.push(format!(
        "| the Devices search with **1,000,000 devices**, {} queries, 50 rows over HTTP | **SQLite: p99 {} ms** (p50 {} ms) | PostgreSQL: p99 {} ms (p50 {} ms) | |",
        sqlite_search[0], sqlite_search[2], sqlite_search[1], pg_search[2], pg_search[1]
    ));
    let station =
        r(r"wall time, batch created -> 15 provisioned\s+([\d.]+) s \(([\d.]+) s per board\)");
    let overhead = r(r"claim \+ plan \+ verify ([\d.]+) s");
    let keys =
        r(r"key -> frame \(Down/Up in a page\)\s+n=\d+\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms");
    rows.push(format!(
        "| the station: a batch of 15 on 4 slots, simulated boards real in time | **{} s** ({} s per board; the station's own claim + plan + verify {} s a board) | key press to frame with 100,000 devices: p99 {} ms | |",
        station[0], station[1], overhead[0], keys[1]
    ));
    rows.join("\n")
}

const FUZZ_START: &str = "<!-- fuzz table: generated from fuzz/RESULTS.md -->";
const FUZZ_END: &str = "<!-- end of fuzz table -->";

/// The table `scripts/fuzz` wrote between its markers in fuzz/RESULTS.md.
fn fuzz_table(results: &str) -> String {
    let (_, rest) = results
        .split_once("<!-- fuzz table -->\n")
        .expect("fuzz/RESULTS.md has no table: run scripts/fuzz");
    let (table, _) = rest
        .split_once(FUZZ_END)
        .expect("fuzz/RESULTS.md's table has no end marker");
    table.trim_end().to_owned()
}

/// `text` with the part between `start` and `end` replaced by `generated`.
fn with_generated(text: &str, start: &str, end: &str, generated: &str) -> String {
    let (before, rest) = text
        .split_once(start)
        .unwrap_or_else(|| panic!("the README's marker `{start}`"));
    let (_, after) = rest
        .split_once(end)
        .unwrap_or_else(|| panic!("the README's marker `{end}`"));
    format!("{before}{start}\n{generated}\n{end}{after}")
}

/// Compares the README with what it should be, and rewrites it under `VESPER_BLESS`.
fn check_generated(path: &std::path::Path, text: &str, expected: &str, what: &str) {
    if std::env::var_os("VESPER_BLESS").is_some() {
        std::fs::write(path, expected).unwrap();
    }
    assert!(
        text == expected,
        "README.md's {what} is not what its results file gives; rewrite it with \
         `VESPER_BLESS=1 cargo nextest run --test it readme` and review the diff"
    );
}

fn readme() -> (std::path::PathBuf, String) {
    let path = root().join("README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

#[test]
fn the_readme_table_is_the_one_results_gives() {
    let results = std::fs::read_to_string(root().join("benches/RESULTS.md")).unwrap();
    let (path, text) = readme();
    let expected = with_generated(&text, START, END, &table(&results));
    check_generated(&path, &text, &expected, "benchmark table");
}

#[test]
fn the_readme_fuzz_table_is_the_one_the_long_fuzz_run_gives() {
    let results = std::fs::read_to_string(root().join("fuzz/RESULTS.md"))
        .expect("fuzz/RESULTS.md, written by a full scripts/fuzz run");
    let table = fuzz_table(&results);
    // Every target of scripts/fuzz has its row, and the run found nothing.
    let script = std::fs::read_to_string(root().join("scripts/fuzz")).unwrap();
    let targets = Regex::new(r"(?s)TARGETS=\(([^)]*)\)")
        .unwrap()
        .captures(&script)
        .unwrap()[1]
        .split_whitespace()
        .map(str::to_owned)
        .chain(["firmware_core".to_owned()])
        .collect::<Vec<_>>();
    for target in &targets {
        let row = table
            .lines()
            .find(|line| line.starts_with(&format!("| `{target}` |")))
            .unwrap_or_else(|| panic!("fuzz/RESULTS.md has no row for {target}"));
        assert!(
            row.ends_with("| 0 |"),
            "{target} crashed in the long run: {row}"
        );
    }
    let (path, text) = readme();
    let expected = with_generated(&text, FUZZ_START, FUZZ_END, &table);
    check_generated(&path, &text, &expected, "fuzzing table");
}

#[test]
fn every_figure_of_the_readme_benchmarks_is_in_results() {
    let results = std::fs::read_to_string(root().join("benches/RESULTS.md")).unwrap();
    let (_, text) = readme();
    let section = text
        .split_once("## Benchmarks")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(section, _)| section)
        .expect("a Benchmarks section");
    // A figure: a decimal number with its unit (ratios are computed, not read).
    let figure = Regex::new(r"(\d[\d,]*\.\d+) ?(µs|ms|s|req/s|checks/s|KB)\b").unwrap();
    let numbers: std::collections::BTreeSet<&str> = Regex::new(r"\d+\.\d+")
        .unwrap()
        .find_iter(&results)
        .map(|m| m.as_str())
        .collect();
    let missing: Vec<String> = figure
        .captures_iter(section)
        .map(|c| c[1].replace(',', ""))
        .filter(|n| !numbers.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "figures in the README that benches/RESULTS.md does not have: {missing:?}"
    );
}
