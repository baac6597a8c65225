//! Benchmark: the API under a connection flood, with and without it. `vesper serve` (SQLite, as
//! deployed) answers `/healthz` and creates batches of one on fresh connections, first alone,
//! then while 1,000 idle sockets and 1,000 slowloris sockets (a request head sent a byte a
//! second) are held open against it; `HTTP_FLOOD_REQUESTS` (default 200) of each. The peer is the
//! same server without the flood, in the same run. Not a timed test (`tests/it/http_limits.rs`
//! holds the 100 ms bound).

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use vesper::model::Role;

#[path = "support/backend.rs"]
mod backend;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "  {name:<44} p50 {:6.2} ms   p99 {:6.2} ms   max {:7.2} ms",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
}

/// `/healthz` and a batch of one, each on a fresh connection, `n` times: their latencies.
async fn measure(api: &str, token: &str, n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut health, mut batch) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let client = reqwest::Client::new();
        let start = Instant::now();
        let r = client.get(format!("{api}/healthz")).send().await.unwrap();
        assert!(r.status().is_success());
        health.push(start.elapsed().as_secs_f64() * 1000.0);
        let start = Instant::now();
        let r = client
            .post(format!("{api}/manufacturing/batch"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "board": "bellcore-v2", "quantity": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        batch.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    (health, batch)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("HTTP_FLOOD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let config = backend::example_config(dir.path());
    let running = backend::start(config, dir.path().join("data")).await;
    let token = running
        .state
        .store
        .create_token("bench", Role::Technician, "bench")
        .await
        .unwrap();
    let api = format!("http://{}", running.api_addr);

    let (health_alone, batch_alone) = measure(&api, &token, n).await;

    let addr = running.api_addr;
    let flood: Vec<TcpStream> = (0..2000)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 2 == 1 {
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
            }
            s
        })
        .collect();
    let dribble = {
        let mut slow: Vec<TcpStream> = flood
            .iter()
            .skip(1)
            .step_by(2)
            .map(|s| s.try_clone().unwrap())
            .collect();
        std::thread::spawn(move || {
            for _ in 0..8 {
                for s in &mut slow {
                    let _ = s.write_all(b"X");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let started = Instant::now();
    let (health_flood, batch_flood) = measure(&api, &token, n).await;
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the measurement outlasted the header-read timeout: lower HTTP_FLOOD_REQUESTS"
    );
    println!(
        "the API on fresh connections, {n} requests each, alone and under 1,000 idle + 1,000 slowloris sockets:"
    );
    summary("/healthz alone", health_alone);
    summary("/healthz under the flood", health_flood);
    summary("batch of one alone", batch_alone);
    summary("batch of one under the flood", batch_flood);
    dribble.join().unwrap();
    drop(flood);
    running.stop().await.unwrap();
}
