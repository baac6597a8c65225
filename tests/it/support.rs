//! Shared helpers: paths to vectors, the `vesper` binary, and the Python tools from the venv.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/vectors/<kind>`.
pub fn vectors(kind: &str) -> PathBuf {
    root().join("tests/vectors").join(kind)
}

/// Rows of a vectors manifest (tab-separated, header skipped), as maps from column to value.
pub fn manifest(kind: &str) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(vectors(kind).join("manifest.tsv")).expect("manifest.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            header
                .iter()
                .map(|h| h.to_string())
                .zip(l.split('\t').map(str::to_owned))
                .collect()
        })
        .collect()
}

/// Runs the `vesper` binary with arguments in a folder, with a clean environment for config.
pub fn vesper(dir: &Path, args: &[&str]) -> Output {
    vesper_env(dir, args, &[])
}

/// Runs `vesper` with extra environment variables.
pub fn vesper_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vesper"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("MQTT_SECRET")
        .env_remove("VESPER_CONFIG")
        .env("XDG_CONFIG_HOME", dir.join(".no-user-config"))
        .env("HOME", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run vesper")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The Python interpreter of the test venv (`VESPER_PYTHON`, else `.venv/bin/python`).
///
/// Never skipped: without it the test fails and says how to install it.
pub fn python() -> PathBuf {
    let path = std::env::var_os("VESPER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test (it creates the venv with esp-idf-nvs-partition-gen)",
        path.display()
    );
    path
}

/// The demo's backend, embedded broker and `boards` simulated boards, unpaced, with a small app,
/// and boards that stay in their slots (nobody swaps them in a test).
pub async fn quiet_demo(boards: usize) -> vesper::demo::Demo {
    vesper::demo::Demo::start(vesper::demo::DemoOptions {
        boards,
        paced: false,
        swap_after: std::time::Duration::from_secs(3600),
        app_size: 64 * 1024,
        ..vesper::demo::DemoOptions::default()
    })
    .await
    .unwrap()
}

/// HMAC-SHA256(secret, message) as hex, first 32 characters: the design's formula, computed
/// here with the `hmac` crate directly rather than the product's credentials module.
pub fn expected_password(secret: &str, message: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    mac.finalize().into_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The SHA-256 of bytes, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An absence check that waits on what it watches instead of sleeping blind: polls `count`
/// until it has not changed for `quiet` after its last change (at most `limit` in all), and
/// returns it. A late duplicate arriving within `quiet` of the last event restarts the wait, so
/// it is seen; a count that never settles fails the test.
pub async fn settled<F, Fut>(
    mut count: F,
    quiet: std::time::Duration,
    limit: std::time::Duration,
) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let started = std::time::Instant::now();
    let mut last = count().await;
    let mut since = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        let now = count().await;
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        } else if since.elapsed() >= quiet {
            return now;
        }
        assert!(
            started.elapsed() < limit,
            "still changing after {limit:?} (now {now})"
        );
    }
}
