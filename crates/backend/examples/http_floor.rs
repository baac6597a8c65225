//! The HTTP floor of this machine, for `scripts/bench-auth`: a bare axum handler that answers
//! 200 to every POST and does no work, so the auth routes' figures can be read against what the
//! machine, the load generator and the HTTP stack alone allow.
//! Run: `cargo run --release -p vesper-backend --example http_floor -- PORT`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "18766".into());
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::OK });
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    axum::serve(listener, app).await
}
