//! A slow backend for the broker path's benchmark and tests (included with `#[path]` by
//! `benches/heartbeats.rs` and `tests/it/login_flood.rs`): an HTTP proxy on a free loopback port
//! in front of `vesper serve`'s auth listener that answers every request only after a delay, as
//! an overloaded backend would.

use std::time::Duration;

/// Starts the proxy in front of `target` (`http://127.0.0.1:PORT`); returns its port.
pub async fn slow_proxy(target: String, delay: Duration) -> u16 {
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (client, target) = (client.clone(), target.clone());
        async move {
            tokio::time::sleep(delay).await;
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut forward = client
                .request(parts.method, format!("{target}{path}"))
                .body(body);
            if let Some(kind) = parts.headers.get("content-type") {
                forward = forward.header("content-type", kind);
            }
            match forward.send().await {
                Ok(answer) => {
                    let status = answer.status();
                    (status, answer.bytes().await.unwrap_or_default()).into_response()
                }
                Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}
