//! Claims raced over real HTTP: eight bench slots on two stations (two technician tokens) take
//! serial numbers from one batch at the same time. Nobody gets a serial number someone else
//! holds, lapsed leases are taken again, and a batch with nothing left says `batch_done`.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend_support::App;

const SLOTS: usize = 8;
const BATCH: u32 = 200;
/// The leases of round 1: long enough for a round of 200 claims on a loaded machine (8.5 s was
/// seen beside a build), short enough to wait for.
const LEASE: std::time::Duration = std::time::Duration::from_secs(20);

/// Every slot claims until the batch says it has nothing left; returns each slot's claims and
/// the codes of the refusals that ended them.
async fn race(
    app: &App,
    batch: &str,
    tokens: &[String],
    lease_seconds: u64,
) -> Vec<(Vec<String>, String)> {
    let slots: Vec<_> = (0..SLOTS)
        .map(|slot| {
            let (client, api) = (app.client.clone(), app.api.clone());
            let token = tokens[slot % tokens.len()].clone();
            let url = format!("{api}/manufacturing/batch/{batch}/claim");
            let station = format!("bench-{}/slot-{}", slot % tokens.len() + 1, slot + 1);
            tokio::spawn(async move {
                let mut taken = Vec::new();
                loop {
                    let response = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({ "station": station, "lease_seconds": lease_seconds }))
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let body: Value = response.json().await.unwrap();
                    if status == StatusCode::OK {
                        assert_eq!(body["claimed_by"], station.as_str(), "{body}");
                        taken.push(body["serial_number"].as_str().unwrap().to_owned());
                        continue;
                    }
                    assert_eq!(status, StatusCode::CONFLICT, "{body}");
                    return (taken, body["code"].as_str().unwrap_or_default().to_owned());
                }
            })
        })
        .collect();
    let mut results = Vec::new();
    for slot in slots {
        results.push(slot.await.unwrap());
    }
    results
}

/// Every claim of a round: all serial numbers of the batch, each exactly once, and every slot
/// stopped by `batch_done`.
fn each_once(results: &[(Vec<String>, String)], all: &BTreeSet<String>) {
    let claimed: Vec<&String> = results.iter().flat_map(|(t, _)| t).collect();
    let distinct: BTreeSet<String> = claimed.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        claimed.len(),
        distinct.len(),
        "a serial number was handed out twice"
    );
    assert_eq!(&distinct, all, "every device of the batch is handed out");
    for (_, code) in results {
        assert_eq!(code, "batch_done");
    }
    let busy = results.iter().filter(|(t, _)| !t.is_empty()).count();
    assert!(
        busy >= SLOTS / 2,
        "the slots really raced: {busy} of {SLOTS} got work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_slots_on_two_stations_never_share_a_serial_number() {
    let app = App::start().await;
    let second = app
        .registry()
        .create_token(
            "bench-2-tech",
            vesper::registry::Role::Technician,
            "admin-1",
        )
        .unwrap();
    let tokens = [app.technician.clone(), second];

    // Round 1: the race over the batch of 200, with leases that nobody reports on (longer than
    // the round itself, so that none lapses while the slots still race). Every serial number
    // goes out once; while the leases run, the batch says it has nothing left.
    let (batch, sns) = app.batch(BATCH).await;
    let all: BTreeSet<String> = sns.into_iter().collect();
    let started = std::time::Instant::now();
    let first = race(&app, &batch, &tokens, LEASE.as_secs()).await;
    let raced = started.elapsed();
    assert!(
        raced < LEASE,
        "the round took {raced:?}, longer than its leases"
    );
    each_once(&first, &all);
    let path = format!("/manufacturing/batch/{batch}/claim");
    let body = app
        .conflict(
            &path,
            &app.technician,
            json!({ "station": "bench-3/slot-1" }),
        )
        .await;
    assert_eq!(body["code"], "batch_done", "{body}");

    // Round 2: once the leases lapse, every device of the same batch is taken again, once.
    tokio::time::sleep(LEASE + std::time::Duration::from_millis(300)).await;
    each_once(&race(&app, &batch, &tokens, 600).await, &all);
    app.stop().await;
}
