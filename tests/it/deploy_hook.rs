//! The deploy webhook over real HTTP with Gitea's documented push payload, signed as Gitea
//! signs it (hex HMAC-SHA256 of the raw body; GitHub's `X-Hub-Signature-256` too): good, bad,
//! missing, replayed, another branch, a command that fails, and pushes during a slow deploy.
//! What ran is read from the files the command itself wrote, not from the backend's say-so.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit as _, Mac as _};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;

use crate::backend_support::App;
use crate::support::{root, settled};

const SECRET: &str = "hook-secret-7f3a9c-0123456789abcdef-xyz";

/// The backend with `[deploy]` running `script` (sh) in `dir`, logs in `dir/logs`.
async fn app_running(dir: &Path, script: &str) -> App {
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    App::start_with(&format!(
        "\n[deploy]\nsecret_file = '{}'\ncommand = ['sh', '-c', '{script}']\nworkdir = '{}'\nlog_dir = '{}'\n",
        secret.display(),
        dir.display(),
        dir.join("logs").display()
    ))
    .await
}

/// What the deploy command writes: one line per run, its commit.
const RECORD: &str = "echo deploying $VESPER_DEPLOY_COMMIT; echo $VESPER_DEPLOY_COMMIT >> ran.txt";

fn ran(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ran.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Gitea's documented push event with `ref` and `after` set.
fn push_event(git_ref: &str, after: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/gitea/push.json")).unwrap();
    let mut event: Value = serde_json::from_str(&text).unwrap();
    event["ref"] = git_ref.into();
    event["after"] = after.into();
    serde_json::to_vec_pretty(&event).unwrap()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a delivery is signed.
enum Signature {
    Gitea(String),
    Hub(String),
    Missing,
}

async fn deliver(
    app: &App,
    body: &[u8],
    delivery: &str,
    signature: Signature,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/hooks/gitea", app.api))
        .header("content-type", "application/json")
        .header("x-gitea-event", "push")
        .header("x-gitea-delivery", delivery)
        .header("x-github-delivery", delivery)
        .body(body.to_vec());
    request = match signature {
        Signature::Gitea(s) => request.header("x-gitea-signature", s),
        Signature::Hub(s) => request.header("x-hub-signature-256", format!("sha256={s}")),
        Signature::Missing => request,
    };
    request.send().await.unwrap()
}

fn commit(n: u8) -> String {
    format!("{n:02x}").repeat(20)
}

async fn signed_push(app: &App, n: u8, delivery: &str) -> reqwest::Response {
    let body = push_event("refs/heads/main", &commit(n));
    deliver(app, &body, delivery, Signature::Gitea(sign(SECRET, &body))).await
}

async fn runs(app: &App) -> Vec<Value> {
    let r = app.get("/hooks/deploys", &app.admin).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Waits until `n` runs have ended (not queued or running).
async fn ended(app: &App, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let all = runs(app).await;
        let done = all
            .iter()
            .filter(|r| !["queued", "running"].contains(&r["state"].as_str().unwrap()))
            .count();
        if done >= n {
            return all;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `deploy.run` audit rows, newest first.
fn deploy_audit(app: &App) -> Vec<vesper::model::AuditEntry> {
    app.registry()
        .audit(&vesper::model::AuditQuery {
            action: Some("deploy.run".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
}

fn log_of(dir: &Path, run: &Value) -> String {
    let path: PathBuf = dir.join("logs").join(run["log"].as_str().unwrap());
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_push_to_main_runs_the_command_once_with_its_log_and_audit_row() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_running(dir.path(), RECORD).await;
    let r = signed_push(&app, 1, "f6266f16-1bf3-46a5-9ea4-602e06ead473").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let run: Value = r.json().await.unwrap();
    assert_eq!(run["push"]["commit"], commit(1));
    assert_eq!(run["push"]["pusher"], "gitea");
    assert_eq!(run["push"]["repository"], "gitea/webhooks");
    let all = ended(&app, 1).await;
    assert_eq!(all[0]["state"], "succeeded");
    assert_eq!(all[0]["exit_code"], 0);
    assert_eq!(ran(dir.path()), [commit(1)]);
    assert_eq!(
        log_of(dir.path(), &all[0]),
        format!("deploying {}\n", commit(1))
    );

    // The same delivery again (Gitea's "redeliver", or a replay): nothing runs again.
    let r = signed_push(&app, 1, "f6266f16-1bf3-46a5-9ea4-602e06ead473").await;
    assert_eq!(r.status(), StatusCode::OK);
    let said: Value = r.json().await.unwrap();
    assert_eq!(said["state"], "duplicate");
    // GitHub's and Forgejo's header is read too.
    let body = push_event("refs/heads/main", &commit(2));
    let r = deliver(
        &app,
        &body,
        "delivery-2",
        Signature::Hub(sign(SECRET, &body)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    ended(&app, 2).await;
    assert_eq!(ran(dir.path()), [commit(1), commit(2)]);

    let audit = deploy_audit(&app);
    assert_eq!(audit.len(), 2);
    let first = audit.last().unwrap().after.clone().unwrap();
    assert_eq!(first["commit"], commit(1));
    assert_eq!(first["result"], "succeeded");
    assert_eq!(first["delivery"], "f6266f16-1bf3-46a5-9ea4-602e06ead473");
    assert_eq!(
        app.get("/hooks/deploys", &app.technician).await.status(),
        StatusCode::FORBIDDEN,
        "the runs are for admins"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_or_missing_signature_is_403_another_branch_204_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_running(dir.path(), RECORD).await;
    let body = push_event("refs/heads/main", &commit(1));
    let wrong_key = sign("not-the-secret", &body);
    let other_body = sign(SECRET, &push_event("refs/heads/main", &commit(9)));
    for (signature, what) in [
        (Signature::Gitea(wrong_key.clone()), "another key"),
        (Signature::Hub(wrong_key), "another key, GitHub header"),
        (Signature::Gitea(other_body), "another body"),
        (Signature::Gitea("zz".repeat(32)), "not hex"),
        (
            Signature::Gitea(sign(SECRET, &body)[..40].to_owned()),
            "cut short",
        ),
        (Signature::Missing, "none"),
    ] {
        let r = deliver(&app, &body, "d-bad", signature).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
        let said: Value = r.json().await.unwrap();
        assert!(
            said["error"].as_str().unwrap().contains("signature"),
            "{said}"
        );
    }
    let develop = push_event("refs/heads/develop", &commit(3));
    let r = deliver(
        &app,
        &develop,
        "d-develop",
        Signature::Gitea(sign(SECRET, &develop)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let started = settled(
        || async { runs(&app).await.len() },
        Duration::from_millis(500),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(started, 0, "no run for another branch");
    assert!(ran(dir.path()).is_empty(), "nothing ran");
    // A delivery refused for its signature is not spent: signed properly, it runs.
    let r = deliver(&app, &body, "d-bad", Signature::Gitea(sign(SECRET, &body))).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    ended(&app, 1).await;
    assert_eq!(ran(dir.path()), [commit(1)]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_command_is_a_failed_run_with_its_exit_code_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_running(dir.path(), "echo building; echo cargo: error >&2; exit 3").await;
    assert_eq!(
        signed_push(&app, 1, "d-1").await.status(),
        StatusCode::ACCEPTED
    );
    let all = ended(&app, 1).await;
    assert_eq!(all[0]["state"], "failed");
    assert_eq!(all[0]["exit_code"], 3);
    assert_eq!(all[0]["detail"], "exit status 3");
    let log = log_of(dir.path(), &all[0]);
    assert!(
        log.contains("building") && log.contains("cargo: error"),
        "{log}"
    );
    let audit = deploy_audit(&app);
    assert_eq!(audit[0].after.as_ref().unwrap()["result"], "failed");
    assert_eq!(audit[0].after.as_ref().unwrap()["exit_code"], 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_during_a_slow_deploy_queue_exactly_one_more_run_with_the_newest_commit() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_running(dir.path(), &format!("{RECORD}; sleep 2")).await;
    assert_eq!(
        signed_push(&app, 1, "d-1").await.status(),
        StatusCode::ACCEPTED
    );
    // Wait until the first run is going, then push twice more.
    let start = Instant::now();
    while ran(dir.path()).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second: Value = signed_push(&app, 2, "d-2").await.json().await.unwrap();
    let third: Value = signed_push(&app, 3, "d-3").await.json().await.unwrap();
    assert_eq!(second["state"], "queued");
    assert_eq!(third["state"], "queued");
    let all = ended(&app, 3).await;
    let state_of = |c: String| {
        all.iter().find(|r| r["push"]["commit"] == c).unwrap()["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(state_of(commit(1)), "succeeded");
    assert_eq!(state_of(commit(2)), "superseded");
    assert_eq!(state_of(commit(3)), "succeeded");
    assert_eq!(
        ran(dir.path()),
        [commit(1), commit(3)],
        "one at a time, one more"
    );
    app.stop().await;
}

/// Issue 25, finding 3: deduplication keys on what is signed. A captured, validly signed body
/// re-posted under a new delivery header is 409 and runs nothing; the forge's own redelivery
/// (same delivery, same body) stays an idempotent 200.
#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_body_under_a_new_delivery_id_is_409_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_running(dir.path(), RECORD).await;
    assert_eq!(
        signed_push(&app, 1, "first").await.status(),
        StatusCode::ACCEPTED
    );
    ended(&app, 1).await;
    for delivery in ["replay-1", "replay-2"] {
        let r = signed_push(&app, 1, delivery).await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "{delivery}");
        let said: Value = r.json().await.unwrap();
        assert!(
            said["error"]
                .as_str()
                .unwrap()
                .contains("a replay; nothing runs"),
            "{said}"
        );
    }
    let r = signed_push(&app, 1, "first").await;
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(ran(dir.path()), [commit(1)], "ran once");
    assert_eq!(runs(&app).await.len(), 1);
    // Another push (another body) still runs.
    assert_eq!(
        signed_push(&app, 2, "second").await.status(),
        StatusCode::ACCEPTED
    );
    ended(&app, 2).await;
    assert_eq!(ran(dir.path()), [commit(1), commit(2)]);
    app.stop().await;
}

/// Issue 25, finding 2: an empty or short secret is refused when the backend starts (a push
/// signed with the empty key used to run the deploy).
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_secret_shorter_than_32_bytes_stops_the_backend_from_starting() {
    for hook_secret in ["", "\n", "hook-secret-7f3a9c", &"x".repeat(31)] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook.secret"), hook_secret).unwrap();
        let config_text = format!(
            "{}\n[deploy]\nsecret_file = 'hook.secret'\ncommand = ['true']\n",
            vesper::config::EXAMPLE
        );
        for (path, text) in vesper::config::EXAMPLE_TABLES {
            let target = dir.path().join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, text).unwrap();
        }
        std::fs::write(dir.path().join("config.toml"), config_text).unwrap();
        let config = vesper::config::load(&dir.path().join("config.toml")).unwrap();
        let options = vesper::server::ServeOptions {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            auth_listen: "127.0.0.1:0".parse().unwrap(),
        };
        let secret =
            vesper::credentials::MasterSecret::new(crate::backend_support::SECRET, "test").unwrap();
        let Err(e) = vesper::server::start(config, secret, &options).await else {
            panic!("started with the webhook secret {hook_secret:?}");
        };
        let said = e.to_string();
        let len = hook_secret.trim_end_matches('\n').len();
        assert!(
            said.contains(&format!("has {len} bytes; it needs at least 32")),
            "{said}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_deploy_configured_the_webhook_is_404() {
    let app = App::start().await;
    let body = push_event("refs/heads/main", &commit(1));
    let r = deliver(&app, &body, "d-1", Signature::Gitea(sign(SECRET, &body))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}
