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
