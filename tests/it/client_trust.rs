//! The station's API client trusts only its backend (issue 25, finding 11): its bearer token goes
//! to the backend's own origin (scheme, host and port), never to a part URL a release manifest
//! names on another host or port. Two real HTTP servers record the Authorization header they got.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;

/// A server on a free loopback port that answers `part` to any GET and records each request's
/// Authorization header; its base URL.
async fn recording_server() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let sink = sink.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            sink.lock().unwrap().push(auth);
            "part"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_goes_to_the_backends_origin_only() {
    let (backend, backend_seen) = recording_server().await;
    let (elsewhere, elsewhere_seen) = recording_server().await;
    let client = vesper::client::ApiClient::new(&backend, "station-token-secret");

    let got = client
        .download(&format!("{backend}/ota/bellcore-v2/v1.0.0/firmware.bin"))
        .await;
    assert_eq!(got.unwrap(), b"part");
    assert_eq!(
        backend_seen.lock().unwrap().as_slice(),
        [Some("Bearer station-token-secret".to_owned())]
    );

    // The same host on another port is another origin; so is another scheme's default port.
    let got = client
        .download(&format!("{elsewhere}/cdn/firmware.bin"))
        .await;
    assert_eq!(got.unwrap(), b"part");
    let localhost = elsewhere.replace("127.0.0.1", "localhost");
    client
        .download(&format!("{localhost}/cdn/firmware.bin"))
        .await
        .unwrap();
    assert_eq!(elsewhere_seen.lock().unwrap().as_slice(), [None, None]);
}
