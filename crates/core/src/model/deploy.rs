//! Deploy runs: a signed push to the configured branch runs the deploy command once per
//! delivery, one run at a time. What a run is, and where it stands.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a deploy run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    /// Waiting for the run before it to end.
    Queued,
    Running,
    /// The command exited 0.
    Succeeded,
    /// The command exited otherwise, timed out, could not start, or the backend restarted.
    Failed,
    /// A newer push arrived while it waited: that one runs instead.
    Superseded,
}

impl DeployState {
    pub const ALL: [DeployState; 5] = [
        DeployState::Queued,
        DeployState::Running,
        DeployState::Succeeded,
        DeployState::Failed,
        DeployState::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Queued => "queued",
            DeployState::Running => "running",
            DeployState::Succeeded => "succeeded",
            DeployState::Failed => "failed",
            DeployState::Superseded => "superseded",
        }
    }
}

impl std::str::FromStr for DeployState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeployState::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a deploy state"))
    }
}

/// A push that asks for a deploy, as the webhook read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Push {
    /// `X-Gitea-Delivery` (or `X-GitHub-Delivery`): a run per delivery, at most.
    pub delivery: String,
    /// SHA-256 (hex) of the signed body: what is signed identifies a push, so a captured body
    /// re-posted under a new delivery header is a replay and runs nothing. Not shown.
    #[serde(skip)]
    pub body_sha256: String,
    /// `refs/heads/main`.
    pub git_ref: String,
    /// The pushed commit (`after`).
    pub commit: String,
    pub repository: Option<String>,
    pub pusher: Option<String>,
}

/// The parts of a push event the webhook reads (Gitea's, Forgejo's and GitHub's share them).
#[derive(Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    repository: Option<Named>,
    pusher: Option<Pusher>,
}

#[derive(Deserialize)]
struct Named {
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct Pusher {
    login: Option<String>,
    username: Option<String>,
    name: Option<String>,
}

/// Longest repository or pusher name kept from a push event, in characters.
const MAX_NAME: usize = 200;

/// Reads the body of a push event, already checked against its signature, into the push it
/// asks for. The commit must be a hex commit id of at most 64 digits; the repository and
/// pusher names are cut to 200 characters; anything else in the body is ignored. `Err` says
/// what is wrong (the webhook answers 400 with it).
pub fn read_push(body: &[u8], delivery: &str) -> Result<Push, String> {
    let event: PushEvent =
        serde_json::from_slice(body).map_err(|e| format!("not a push event: {e}"))?;
    if event.after.is_empty()
        || event.after.len() > 64
        || !event.after.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err("`after` is not a commit id".into());
    }
    let bounded = |text: Option<String>| text.map(|t| t.chars().take(MAX_NAME).collect());
    Ok(Push {
        delivery: delivery.to_owned(),
        body_sha256: crate::firmware::sha256_hex(body),
        git_ref: event.git_ref,
        commit: event.after,
        repository: bounded(event.repository.and_then(|r| r.full_name)),
        pusher: bounded(event.pusher.and_then(|p| p.login.or(p.username).or(p.name))),
    })
}

/// What recording a push found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployReceipt {
    /// A new push: its run, queued.
    Queued(Box<DeployRun>),
    /// This delivery was received before (the forge redelivered it): nothing runs again.
    Duplicate,
    /// The same signed body under another delivery id: a replay, refused.
    Replayed,
}

/// One deploy run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployRun {
    pub id: i64,
    pub push: Push,
    pub state: DeployState,
    pub received_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    /// Why it failed or was superseded, in words.
    pub detail: Option<String>,
    /// The run's log file (its output), inside `deploy.log_dir`.
    pub log: Option<String>,
}
