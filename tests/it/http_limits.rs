//! The API stays answerable under a connection flood (issue 25, finding 7): 1,000 idle sockets
//! and 1,000 slowloris sockets (a request head sent a byte a second) do not keep `/healthz` or a
//! batch creation from answering within 100 ms; both kinds are closed once the header-read
//! timeout passes; and one token holds at most 32 event streams and long polls (429 with
//! Retry-After past that), which another token does not feel.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::backend_support::App;

fn api_addr(app: &App) -> String {
    app.api.trim_start_matches("http://").to_owned()
}

/// How long `/healthz` and a batch of one take on fresh connections: the median of five of each
/// (the test suite runs other tests on the same two cores; one slow answer is theirs).
async fn answer_times(app: &App) -> (Duration, Duration) {
    let mut health = Vec::new();
    let mut batch = Vec::new();
    for _ in 0..5 {
        let client = reqwest::Client::new(); // a new connection each time
        let start = Instant::now();
        let r = client
            .get(format!("{}/healthz", app.api))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        health.push(start.elapsed());
        let start = Instant::now();
        let r = client
            .post(format!("{}/manufacturing/batch", app.api))
            .bearer_auth(&app.technician)
            .json(&json!({ "board": "bellcore-v2", "quantity": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        batch.push(start.elapsed());
    }
    health.sort();
    batch.sort();
    (health[2], batch[2])
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slowloris_floods_do_not_stop_the_api_and_are_closed_after_the_header_timeout() {
    let app = App::start().await;
    let addr = api_addr(&app);
    let (idle, slow) = tokio::task::spawn_blocking(move || {
        let open = |n: usize| -> Vec<TcpStream> {
            (0..n)
                .map(|_| {
                    let s = TcpStream::connect(&addr).expect("connect");
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    s
                })
                .collect()
        };
        let idle = open(1000);
        let mut slow = open(1000);
        for s in &mut slow {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        }
        (idle, slow)
    })
    .await
    .unwrap();
    // A byte a second on every slowloris socket while the API is measured.
    let dribble = {
        let mut slow: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            for _ in 0..4 {
                for s in &mut slow {
                    let _ = s.write_all(b"X");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let (health, batch) = answer_times(&app).await;
    assert!(
        health < Duration::from_millis(100),
        "/healthz took {health:?}"
    );
    assert!(batch < Duration::from_millis(100), "a batch took {batch:?}");
    dribble.join().unwrap();

    // After the header-read timeout (10 s), the server has closed both kinds.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let closed = tokio::task::spawn_blocking(move || {
        let mut closed = 0;
        for mut s in idle.into_iter().chain(slow) {
            let mut buf = [0u8; 512];
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            // EOF, or a 408 answer then EOF: either way the server let go.
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        closed += 1;
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        closed += 1;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        closed
    })
    .await
    .unwrap();
    assert_eq!(
        closed,
        2000,
        "sockets the server still holds: {}",
        2000 - closed
    );
    let (health, _) = answer_times(&app).await;
    assert!(
        health < Duration::from_millis(100),
        "/healthz took {health:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_token_holds_at_most_32_streams_and_long_polls() {
    let app = App::start().await;
    let (_, sns) = app.batch(1).await;
    let sn = &sns[0];
    let client = reqwest::Client::new();
    let stream = |token: &str| {
        client
            .get(format!("{}/manufacturing/devices/{sn}/events", app.api))
            .bearer_auth(token)
            .send()
    };
    let mut held = Vec::new();
    for _ in 0..32 {
        let r = stream(&app.viewer).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        held.push(r);
    }
    let r = stream(&app.viewer).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "5");
    let poll = client
        .get(format!(
            "{}/manufacturing/devices/{sn}?wait=provisioned&timeout=1",
            app.api
        ))
        .bearer_auth(&app.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        poll.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "long polls count too"
    );
    // Another token is not affected; a plain read of the same token is not a stream.
    assert_eq!(
        stream(&app.technician).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/manufacturing/devices/{sn}"), &app.viewer)
            .await
            .status(),
        StatusCode::OK
    );
    // A stream that ends gives its place back.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = stream(&app.viewer).await.unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the place was not given back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
