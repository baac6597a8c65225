//! Benchmark: the registry at scale, on SQLite and on PostgreSQL, in one run on this machine.
//! `SCALE_DEVICES` devices (default 1,000,000: 100 batches of 10,000 made by the registry
//! itself, one in ten then flashed with a MAC and a bench station) in a SQLite registry, moved
//! to a throwaway Debian PostgreSQL cluster with `vesper migrate`'s copy. Against each engine, a
//! real `vesper serve` (release, in this process) answers over HTTP on loopback:
//!
//! - the broker's auth checks (`/mqtt/auth/user` and `/mqtt/auth/acl` for 20,000 devices drawn
//!   at random from the million, under wrk with 64 connections for 10 s, as
//!   `scripts/bench-auth`): checks per second, p50 and p99;
//! - the Devices screen's search (`/manufacturing/devices?text=...`, 50 rows), 100 queries drawn
//!   at random for each class: serial-number and MAC fragments, a station, a prefix every device
//!   has, and the plain first page.
//!
//! Not a timed test; `scripts/bench` runs it.

use std::sync::Arc;

use rand::Rng as _;
use std::time::Instant;

use vesper::config::{Config, Database};
use vesper::model::{NewBatch, Role};
use vesper::registry::{PgStore, Registry, migrate};

#[path = "support/backend.rs"]
mod backend;

#[path = "../crates/store/tests/support/pg.rs"]
#[allow(dead_code)]
mod pg;

const BATCH: u32 = 10_000;

/// Queries of each search class (a p99 needs at least 100 samples).
const SEARCHES: usize = 100;

/// The serial numbers of `count` devices drawn at random from the SQLite registry in `data`
/// (by row id, with repetition).
fn random_devices(data: &std::path::Path, devices: u32, count: usize) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        data.join(vesper::registry::DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = conn
        .prepare("SELECT serial_number FROM devices WHERE rowid = ?1")
        .unwrap();
    let mut rng = rand::rng();
    (0..count)
        .map(|_| {
            let rowid = rng.random_range(1..=i64::from(devices));
            statement.query_row([rowid], |r| r.get(0)).unwrap()
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn line(name: &str, mut ms: Vec<f64>, seconds: Option<f64>) {
    ms.sort_by(f64::total_cmp);
    let rate = seconds
        .map(|s| format!("   {:8.0} /s", ms.len() as f64 / s))
        .unwrap_or_default();
    println!(
        "  {name:<40} n {:6}   p50 {:7.2} ms   p99 {:7.2} ms{rate}",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
    );
}

/// The registry: `devices` made by the registry in batches, then one in ten flashed.
fn fill(data: &std::path::Path, config: &Config, devices: u32) -> Registry {
    let registry = Registry::open(data).unwrap();
    let board = &config.boards[0];
    let start = Instant::now();
    let mut made = 0;
    while made < devices {
        let quantity = BATCH.min(devices - made);
        registry
            .create_batch(
                &NewBatch {
                    board,
                    quantity,
                    subscription_plan: "standard".into(),
                    available_outputs: 8,
                },
                "bench",
            )
            .unwrap();
        made += quantity;
    }
    let conn = rusqlite::Connection::open(data.join(vesper::registry::DB_FILE)).unwrap();
    conn.execute_batch(
        "UPDATE devices SET status = 'flashed', chip = 'ESP32', firmware_version = '1.0.0',
            flashed_at = created_at, station = 'bench-' || (rowid % 8 + 1),
            mac = printf('24:0A:C4:%02X:%02X:%02X', (rowid >> 16) & 255, (rowid >> 8) & 255, rowid & 255)
         WHERE rowid % 10 = 0",
    )
    .unwrap();
    println!(
        "  registry filled: {devices} devices in {:.1} s (one in ten flashed)",
        start.elapsed().as_secs_f64()
    );
    registry
}

struct Engine {
    name: &'static str,
    running: vesper::server::Running,
    token: String,
}

async fn start(
    name: &'static str,
    mut config: Config,
    data: std::path::PathBuf,
    database: Option<Database>,
) -> Engine {
    config.serve.database = database;
    let running = backend::start(config, data).await;
    let token = running
        .state
        .store
        .create_token(&format!("bench-{name}"), Role::Admin, "bench")
        .await
        .unwrap();
    Engine {
        name,
        running,
        token,
    }
}

/// A wrk script: each request a login or an ACL check (alternately) of a random device.
fn wrk_script(sample: &[(String, String)]) -> String {
    let devices: Vec<String> = sample
        .iter()
        .map(|(sn, pw)| format!("{{\"{sn}\",\"{pw}\"}}"))
        .collect();
    format!(
        r#"local devices = {{{}}}
local n = 0
request = function()
  n = n + 1
  local d = devices[math.random(#devices)]
  if n % 2 == 0 then
    return wrk.format("POST", "/mqtt/auth/user", {{["Content-Type"] = "application/json"}},
      string.format('{{"username":"%s","password":"%s","clientid":"%s"}}', d[1], d[2], d[1]))
  end
  return wrk.format("POST", "/mqtt/auth/acl", {{["Content-Type"] = "application/json"}},
    string.format('{{"username":"%s","clientid":"%s","topic":"vesper/%s/data","acc":2}}', d[1], d[1], d[1]))
end
"#,
        devices.join(",")
    )
}

/// A wrk latency figure (`850.00us`, `3.21ms`, `1.02s`) in milliseconds.
fn wrk_ms(text: &str) -> f64 {
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        _ => n,
    }
}

/// The broker's auth checks for random devices of the sample under wrk (64 connections, 10 s),
/// as `scripts/bench-auth` loads them; every answer must be 200.
async fn auth_load(engine: &Engine, script: &std::path::Path) {
    let url = format!("http://{}", engine.running.auth_addr);
    let script = script.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("wrk")
            .args(["-t2", "-c64", "-d10s", "--latency", "-s"])
            .arg(&script)
            .arg(&url)
            .output()
            .expect("wrk is not installed: apt-get install wrk")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("Non-2xx"), "{text}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no `{prefix}` in wrk's output:\n{text}"))
    };
    println!(
        "  {:<40} {:>10} checks/s   p50 {:7.2} ms   p99 {:7.2} ms",
        format!("{}: auth checks (user + acl), wrk -c64", engine.name),
        field("Requests/sec:"),
        wrk_ms(&field("50%")),
        wrk_ms(&field("99%")),
    );
}

/// The Devices screen's search, each query once.
async fn search(engine: &Engine, queries: &[(&'static str, String)]) {
    let url = format!("http://{}/manufacturing/devices", engine.running.api_addr);
    let client = reqwest::Client::new();
    let mut all = Vec::new();
    let mut by_class: Vec<(&str, Vec<f64>)> = Vec::new();
    for (class, text) in queries {
        {
            let start = Instant::now();
            // The fragments are letters, digits, `-` and `:`: nothing to escape in a query.
            let address = if text.is_empty() {
                format!("{url}?limit=50")
            } else {
                format!("{url}?limit=50&text={text}")
            };
            let request = client.get(address).bearer_auth(&engine.token);
            let page: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            assert!(
                page["total"].as_i64().unwrap() >= 1,
                "{class} `{text}`: {page}"
            );
            all.push(ms);
            match by_class.iter_mut().find(|(c, _)| c == class) {
                Some((_, v)) => v.push(ms),
                None => by_class.push((class, vec![ms])),
            }
        }
    }
    for (class, ms) in by_class {
        line(&format!("{}: search, {class}", engine.name), ms, None);
    }
    line(&format!("{}: search, all queries", engine.name), all, None);
}

#[tokio::main]
async fn main() {
    let devices: u32 = std::env::var("SCALE_DEVICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let config = backend::example_config(dir.path());
    let sqlite_data = dir.path().join("sqlite");
    let registry = Arc::new(tokio::task::block_in_place(|| {
        fill(&sqlite_data, &config, devices)
    }));

    // 20,000 devices drawn at random (by row) for the checks, and what the search looks for:
    // SEARCHES queries a class, each drawn at random, so that every p99 has 100 samples.
    let secret = backend::secret();
    let sampled = random_devices(&sqlite_data, devices, 20_000);
    let sample: Vec<(String, String)> = sampled
        .iter()
        .map(|sn| {
            let password = secret
                .device_password(&sn.parse().unwrap())
                .expose()
                .to_owned();
            (sn.clone(), password)
        })
        .collect();
    let script = dir.path().join("auth.lua");
    std::fs::write(&script, wrk_script(&sample)).unwrap();
    let mut rng = rand::rng();
    let mut queries: Vec<(&'static str, String)> = Vec::new();
    for sn in sampled.iter().take(SEARCHES) {
        // What a label's reader types: the random part, and the last two groups.
        queries.push(("serial number, random part", sn[15..].to_lowercase()));
        queries.push(("serial number, last two groups", sn[9..].to_owned()));
    }
    for _ in 0..SEARCHES {
        // A flashed device's MAC (one in ten rows is flashed), its last two bytes.
        let rowid = rng.random_range(1..=devices.max(10) / 10) * 10;
        queries.push((
            "MAC fragment",
            format!("{:02X}:{:02X}", (rowid >> 8) & 255, rowid & 255),
        ));
        // Flashed rows are multiples of ten: their stations are bench-1, -3, -5 and -7.
        queries.push((
            "station",
            format!("bench-{}", 2 * rng.random_range(0..4) + 1),
        ));
        queries.push(("a prefix every device has", "PV-2".into()));
        queries.push(("first page, no text", String::new()));
    }

    let sqlite = start("sqlite", config.clone(), sqlite_data.clone(), None).await;
    println!("SQLite ({devices} devices):");
    auth_load(&sqlite, &script).await;
    search(&sqlite, &queries).await;
    sqlite.running.stop().await.unwrap();

    let cluster = tokio::task::block_in_place(pg::PgCluster::start);
    let url = cluster.create_database("scale");
    let target = PgStore::connect(&url).await.unwrap();
    let start_copy = Instant::now();
    let checks = migrate::sqlite_to_postgres(registry.clone(), &target, &|_, _| {})
        .await
        .unwrap();
    assert!(checks.iter().all(|c| c.matches()), "{checks:#?}");
    println!(
        "PostgreSQL ({devices} devices; vesper migrate copied and verified them in {:.1} s):",
        start_copy.elapsed().as_secs_f64()
    );
    let postgres = start(
        "postgres",
        config.clone(),
        dir.path().join("pg-data"),
        Some(Database::Postgres(url)),
    )
    .await;
    auth_load(&postgres, &script).await;
    search(&postgres, &queries).await;
    postgres.running.stop().await.unwrap();
}
