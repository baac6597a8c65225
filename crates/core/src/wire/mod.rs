//! The API's requests and answers, shared by `vesper serve` and the typed client, so both sides
//! of a route agree by construction; the OpenAPI document is derived from them (`utoipa`).
//!
//! The records themselves ([`Device`], [`Batch`], [`Stats`], ...) are the model's; this module
//! holds what only the wire has: request bodies and query strings, envelopes around lists,
//! answers that add links, and the error body with its [`ConflictCode`].

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::firmware::Manifest;
use crate::model::{AuditEntry, Batch, BatchSummary, DEFAULT_OUTPUTS, DEFAULT_PLAN, Status};

/// What a 409 answer clashed with, for programs (the station tells a finished batch from a
/// refused claim by it, never by the wording of the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictCode {
    /// A status may only move forward (or to revoked).
    IllegalTransition,
    /// The device is revoked.
    Revoked,
    /// The MAC belongs to another device (a re-used board; `force` moves it).
    MacInUse,
    /// A token of that name exists.
    TokenExists,
    /// The batch has no device left to flash.
    BatchDone,
    /// The device is flashed already.
    AlreadyFlashed,
    /// Another station holds the device.
    ClaimedElsewhere,
    /// The device's board is not in the backend's configuration.
    UnknownBoard,
    /// The device is in a customer's hands: its credentials are in the field.
    DeviceInField,
    /// Any other clash with the record's state.
    Conflict,
}

/// Every error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words for the operator.
    pub error: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// 409 only: what clashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ConflictCode>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the registry cannot be read.
    pub status: String,
    /// `ok` or `unavailable`.
    #[serde(default)]
    pub registry: String,
    /// The heartbeat listener: `connected`, `disconnected` or `not configured`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub broker: String,
}

/// `POST /manufacturing/batch`: a new batch of one board, named or given by type and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Board name; or give `hw_type` and `hw_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hw_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hw_version: Option<String>,
    /// How many devices (1..=10000).
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: u32,
    #[serde(default = "default_plan")]
    #[schema(default = "standard")]
    pub subscription_plan: String,
    #[serde(default = "default_outputs")]
    #[schema(default = 8)]
    pub available_outputs: i64,
}

fn default_plan() -> String {
    DEFAULT_PLAN.into()
}

fn default_outputs() -> i64 {
    DEFAULT_OUTPUTS
}

/// A batch with its devices and, for convenience, their serial numbers in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchAnswer {
    #[serde(flatten)]
    pub batch: Batch,
    pub serial_numbers: Vec<String>,
}

impl From<Batch> for BatchAnswer {
    fn from(batch: Batch) -> Self {
        let serial_numbers = batch
            .serial_numbers()
            .into_iter()
            .map(String::from)
            .collect();
        Self {
            batch,
            serial_numbers,
        }
    }
}

/// `GET /manufacturing/batches`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchList {
    pub batches: Vec<BatchSummary>,
}

/// Paging of a list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Most rows (default 100).
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

/// `POST /manufacturing/devices/{sn}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub status: Status,
}

/// `POST .../claim`: a station slot takes a device to flash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Who takes the device, e.g. `bench-1/slot-2`.
    pub station: String,
    /// How long the claim holds if the station never reports (default 600 s, at most 3600 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
}

/// `POST /manufacturing/devices/{sn}/release`: a claimed device goes back to its batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub station: String,
}

/// `POST /manufacturing/devices/{sn}/assign`: the customer a device is sold to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `GET /manufacturing/devices/{sn}?wait=STATUS&timeout=SECONDS`: a long poll.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Answer once the device has reached this status (or is revoked); the header
    /// `x-wait-result` says `reached`, `timeout` or `revoked`.
    pub wait: Option<Status>,
    /// Seconds to wait (default 30, at most 600).
    #[param(maximum = 600)]
    pub timeout: Option<u64>,
}

/// How a long poll ended (the `x-wait-result` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitResult {
    Reached,
    Timeout,
    Revoked,
}

impl WaitResult {
    /// The header's name.
    pub const HEADER: &'static str = "x-wait-result";

    pub fn as_str(self) -> &'static str {
        match self {
            WaitResult::Reached => "reached",
            WaitResult::Timeout => "timeout",
            WaitResult::Revoked => "revoked",
        }
    }
}

/// `POST /manufacturing/batch/{id}/labels`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LabelQuery {
    /// Label stock (default: the configured one).
    pub stock: Option<String>,
    /// `pdf` (default) or `zpl`.
    pub format: Option<String>,
    /// Labels to leave blank at the start of the first sheet (a partly used sheet).
    pub skip: Option<u32>,
}

/// `GET /manufacturing/devices/{sn}/nvs.bin`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NvsQuery {
    /// An admin asks for the image of a device already in the field.
    #[serde(default)]
    pub reissue: bool,
}

/// `GET /manufacturing/firmware/{hw_type}/{hw_version}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A release (default: the latest).
    pub version: Option<String>,
}

/// A release of a board: its manifest with part paths as download URLs, and links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FirmwareRelease {
    #[serde(flatten)]
    pub manifest: Manifest,
    /// The application image (what OTA downloads).
    pub app_url: String,
    /// The manifest with relative part paths, as published.
    pub manifest_url: String,
}

/// `GET /manufacturing/audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Rows about this subject (a serial number, a batch, a token name).
    pub subject: Option<String>,
    /// Rows of this action, e.g. `device.flashed`.
    pub action: Option<String>,
    /// Rows with an id below this one (paging backwards from the newest).
    pub before_id: Option<i64>,
    /// Most rows (default 100).
    pub limit: Option<u32>,
}

/// `GET /manufacturing/audit`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
}

/// One server-sent event of `GET /manufacturing/devices/{sn}/events`, as a client parses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventFrame {
    /// `current` first, then `provisioned`, `seen`, `status`, `flashed`, `assigned`, `users`
    /// or `claimed`.
    pub event: String,
    /// The `DeviceEvent` as JSON: kind, serial_number, status, last_seen, provisioned_at,
    /// firmware_version.
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
}
