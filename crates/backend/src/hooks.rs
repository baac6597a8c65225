//! The deploy webhook: `POST /hooks/gitea` takes a push event from Gitea (or Forgejo, or
//! GitHub), checks its HMAC-SHA256 signature in constant time, and for the configured branch runs
//! the deploy command: one run at a time, each delivery at most once, a push during a run queuing
//! exactly one more (the newest push wins), every run's output in its own log file and an audit
//! row when it ends. `GET /hooks/deploys` lists the runs (admins).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use vesper_core::config::Deploy;
use vesper_core::model::{DeployReceipt, DeployRun, DeployState, Role};
use vesper_core::wire::ConflictCode;

use crate::{ApiError, Caller, SharedState};

/// Most bytes of a push event (Gitea's list of commits is bounded by its own settings).
pub const MAX_EVENT: usize = 1024 * 1024;

/// The shortest webhook secret accepted: an HMAC key shorter than its 32-byte output is
/// guessable, and an empty one lets anybody sign a push.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why the deploy webhook cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HookSecretError {
    #[error("cannot read the deploy webhook secret {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the deploy webhook secret {path} has {len} bytes; it needs at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)"
    )]
    TooShort { path: PathBuf, len: usize },
}

/// The webhook secret in `path` (a trailing newline is not part of it), refused when shorter
/// than [`MIN_SECRET_BYTES`].
pub fn read_secret(path: &std::path::Path) -> Result<Vec<u8>, HookSecretError> {
    let secret = std::fs::read(path).map_err(|source| HookSecretError::Read {
        path: path.to_owned(),
        source,
    })?;
    let secret = String::from_utf8_lossy(&secret)
        .trim_end_matches(['\r', '\n'])
        .as_bytes()
        .to_vec();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(HookSecretError::TooShort {
            path: path.to_owned(),
            len: secret.len(),
        });
    }
    Ok(secret)
}

/// The webhook's secret and its one-at-a-time queue.
pub struct Deployer {
    secret: Vec<u8>,
    config: Deploy,
    log_dir: PathBuf,
    workdir: PathBuf,
    queue: Mutex<Queue>,
}

/// At most one run going and one waiting.
#[derive(Default)]
struct Queue {
    running: bool,
    waiting: Option<DeployRun>,
}

impl Deployer {
    /// The webhook, when `[deploy]` turns it on; its secret is read now.
    pub fn new(
        config: &Deploy,
        data_dir: &std::path::Path,
    ) -> Result<Option<Arc<Deployer>>, HookSecretError> {
        let Some(path) = config.secret_file.as_ref().filter(|_| config.enabled()) else {
            return Ok(None);
        };
        let secret = read_secret(path)?;
        Ok(Some(Arc::new(Deployer {
            secret,
            config: config.clone(),
            log_dir: config
                .log_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("deploy")),
            workdir: config
                .workdir
                .clone()
                .unwrap_or_else(|| data_dir.to_owned()),
            queue: Mutex::default(),
        })))
    }

    /// Whether `signature` (hex) is the HMAC-SHA256 of `body` under the secret (constant time).
    fn verify(&self, body: &[u8], signature: &str) -> bool {
        let Some(expected) = decode_hex(signature) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signature a request carries: Gitea's `X-Gitea-Signature` (hex), or GitHub's and
/// Forgejo's `X-Hub-Signature-256: sha256=<hex>`.
fn signature(headers: &HeaderMap) -> Option<&str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-gitea-signature")
        .or_else(|| header("x-forgejo-signature"))
        .or_else(|| header("x-hub-signature-256").and_then(|v| v.strip_prefix("sha256=")))
}

/// Receives a push event.
#[utoipa::path(post, path = "/hooks/gitea", tag = "deploy", security(()),
    request_body(content = String, description = "A push event, signed: `X-Gitea-Signature` = hex HMAC-SHA256 of the raw body with the shared secret (or `X-Hub-Signature-256: sha256=<hex>`)", content_type = "application/json"),
    responses(
        (status = 202, description = "A deploy run is queued or started (body: the run)", body = DeployRun),
        (status = 200, description = "This delivery was received before; nothing runs again"),
        (status = 409, description = "This signed body was received before under another delivery id: a replay; nothing runs", body = vesper_core::wire::ErrorBody),
        (status = 204, description = "A push to another ref, or another event: nothing runs"),
        (status = 400, description = "Not a push event, or no delivery id", body = vesper_core::wire::ErrorBody),
        (status = 403, description = "Missing or wrong signature: nothing runs", body = vesper_core::wire::ErrorBody),
        (status = 404, description = "The webhook is off (`[deploy]` has no secret_file and command)", body = vesper_core::wire::ErrorBody),
    ))]
pub async fn gitea(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let deployer = state.deployer.clone().ok_or_else(|| {
        ApiError::NotFound("the deploy webhook is off: set [deploy] secret_file and command".into())
    })?;
    if !signature(&headers).is_some_and(|s| deployer.verify(&body, s)) {
        tracing::warn!("deploy webhook: missing or wrong signature; nothing runs");
        return Err(ApiError::BadSignature);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let event = header("x-gitea-event")
        .or_else(|| header("x-forgejo-event"))
        .or_else(|| header("x-github-event"));
    if event.is_some_and(|e| e != "push") {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let delivery = header("x-gitea-delivery")
        .or_else(|| header("x-forgejo-delivery"))
        .or_else(|| header("x-github-delivery"))
        .filter(|d| !d.is_empty() && d.len() <= 128)
        .ok_or_else(|| ApiError::BadRequest("no X-Gitea-Delivery header".into()))?
        .to_owned();
    let push = vesper_core::model::read_push(&body, &delivery).map_err(ApiError::BadRequest)?;
    if push.git_ref != deployer.config.branch {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let run = match state.store.deploy_received(&push).await? {
        DeployReceipt::Queued(run) => *run,
        DeployReceipt::Duplicate => {
            return Ok((
                StatusCode::OK,
                Json(serde_json::json!({ "delivery": push.delivery, "state": "duplicate" })),
            )
                .into_response());
        }
        DeployReceipt::Replayed => {
            tracing::warn!(delivery = %push.delivery, "deploy webhook: a signed body received before, under another delivery id: replay refused");
            return Err(ApiError::Conflict {
                code: ConflictCode::Conflict,
                message: "this push was received before under another delivery id: a replay; nothing runs".into(),
            });
        }
    };
    tracing::info!(run = run.id, commit = %run.push.commit, "deploy webhook: push accepted");
    let answer = enqueue(&state, &deployer, run).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Starts the run now, or makes it the one waiting (superseding an older waiting one).
async fn enqueue(
    state: &SharedState,
    deployer: &Arc<Deployer>,
    run: DeployRun,
) -> Result<DeployRun, ApiError> {
    let superseded = {
        let mut queue = deployer.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.running {
            queue.waiting.replace(run.clone())
        } else {
            queue.running = true;
            tokio::spawn(run_queue(state.clone(), deployer.clone(), run.clone()));
            None
        }
    };
    if let Some(old) = superseded {
        let detail = format!("superseded by run {} (commit {})", run.id, run.push.commit);
        state
            .store
            .deploy_finished(old.id, DeployState::Superseded, None, Some(&detail))
            .await?;
    }
    Ok(run)
}

/// Runs `first`, then whatever waits, until nothing does.
async fn run_queue(state: SharedState, deployer: Arc<Deployer>, first: DeployRun) {
    let mut next = Some(first);
    while let Some(run) = next {
        execute(&state, &deployer, run).await;
        let mut queue = deployer.queue.lock().unwrap_or_else(|e| e.into_inner());
        next = queue.waiting.take();
        queue.running = next.is_some();
    }
}

/// One run: the command in its workdir, output to its log file, the outcome recorded.
async fn execute(state: &SharedState, deployer: &Deployer, run: DeployRun) {
    let id = run.id;
    let log_name = format!(
        "{id:05}-{}.log",
        &run.push.commit[..run.push.commit.len().min(12)]
    );
    let log_path = deployer.log_dir.join(&log_name);
    let name = log_name.clone();
    if let Err(e) = state.store.deploy_started(id, &name).await {
        tracing::error!(run = id, error = %e, "cannot record the deploy run's start");
    }
    let (state_now, code, detail) = match spawn(deployer, &run, &log_path).await {
        Ok(Some(0)) => (DeployState::Succeeded, Some(0), None),
        Ok(Some(code)) => (
            DeployState::Failed,
            Some(code),
            Some(format!("exit status {code}")),
        ),
        Ok(None) => (
            DeployState::Failed,
            None,
            Some("killed by a signal or timed out".to_owned()),
        ),
        Err(e) => (DeployState::Failed, None, Some(e)),
    };
    tracing::info!(
        run = id,
        result = state_now.as_str(),
        ?code,
        "deploy run ended"
    );
    let detail_text = detail;
    let recorded = state
        .store
        .deploy_finished(id, state_now, code, detail_text.as_deref())
        .await;
    if let Err(e) = recorded {
        tracing::error!(run = id, error = %e, "cannot record the deploy run");
    }
}

/// Starts the command and waits for it (bounded by `deploy.timeout`); `Ok(exit code)`.
async fn spawn(
    deployer: &Deployer,
    run: &DeployRun,
    log_path: &std::path::Path,
) -> Result<Option<i32>, String> {
    let id = run.id;
    tokio::fs::create_dir_all(&deployer.log_dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", deployer.log_dir.display()))?;
    let log = std::fs::File::create(log_path)
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let (program, args) = deployer.config.command.split_first().ok_or("no command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&deployer.workdir)
        .env("VESPER_DEPLOY_COMMIT", &run.push.commit)
        .env("VESPER_DEPLOY_REF", &run.push.git_ref)
        .env("VESPER_DEPLOY_DELIVERY", &run.push.delivery)
        .env("VESPER_DEPLOY_RUN", id.to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    match tokio::time::timeout(deployer.config.timeout, child.wait()).await {
        Ok(status) => Ok(status.map_err(|e| e.to_string())?.code()),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "timed out after {} s",
                deployer.config.timeout.as_secs()
            ))
        }
    }
}

/// The recent deploy runs, newest first (admins).
#[utoipa::path(get, path = "/hooks/deploys", tag = "deploy", security(("bearer" = [])),
    responses((status = 200, description = "The last 50 runs, newest first", body = [DeployRun]), crate::error::ApiErrors))]
pub async fn deploys(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Json<Vec<DeployRun>>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(state.store.deploy_runs(50).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_signatures_are_exactly_32_bytes() {
        assert_eq!(decode_hex(&"ab".repeat(32)).unwrap().len(), 32);
        for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(decode_hex(bad).is_none(), "{bad}");
        }
    }
}
