//! The manufacturing API (`/manufacturing/...`), the OTA files (`/ota/...`), health and the
//! OpenAPI document.

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::timeout::TimeoutLayer;

use super::control::BrokerCommand;
use super::{ApiError, Caller, SharedState, db};
use crate::releases::{self, Manifest};
use vesper_core::model::Board;
use vesper_core::nvs::{self, DeviceNvs};
use vesper_core::serial::SerialNumber;
use vesper_store::{
    AuditQuery, DeviceEvent, DeviceFilter, DeviceUsers, FlashReport, NewBatch, Role, Status,
};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The API's routes. Every route but the waiting ones answers within `timeout` (else 503); a
/// long poll (`?wait=`, up to [`MAX_WAIT`] seconds) and an event stream bound their own time.
pub fn routes(timeout: std::time::Duration) -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/manufacturing/batch", post(create_batch))
        .route("/manufacturing/batch/{id}", get(batch))
        .route("/manufacturing/batch/{id}/labels", post(batch_labels))
        .route("/manufacturing/batch/{id}/claim", post(claim_next))
        .route("/manufacturing/batches", get(batches))
        .route("/manufacturing/devices", get(devices))
        .route("/manufacturing/devices/{sn}/status", post(set_status))
        .route("/manufacturing/devices/{sn}/assign", post(assign))
        .route("/manufacturing/devices/{sn}/claim", post(claim_device))
        .route("/manufacturing/devices/{sn}/release", post(release_device))
        .route("/manufacturing/devices/{sn}/flashed", post(flashed))
        .route("/manufacturing/devices/{sn}/users", post(set_users))
        .route("/manufacturing/devices/{sn}/nvs.bin", get(nvs_image))
        .route(
            "/manufacturing/devices/{sn}/firmware.bin",
            get(device_firmware),
        )
        .route(
            "/manufacturing/firmware/{hw_type}/{hw_version}",
            get(firmware_manifest),
        )
        .route("/manufacturing/audit", get(audit))
        .route("/manufacturing/stats", get(stats))
        .route("/ota/{board}/{file}", get(ota_file))
        .route("/ota/{board}/{release}/{file}", get(ota_release_file))
        .route_layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .route("/manufacturing/devices/{sn}", get(device))
        .route("/manufacturing/devices/{sn}/events", get(device_events))
}

/// A JSON body whose rejection is an [`ApiError`] (so every error answer has the same shape).
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Json::<T>::from_request(req, state).await?.0))
    }
}

/// Query parameters whose rejection is an [`ApiError`].
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await?
                .0,
        ))
    }
}

pub async fn healthz(State(state): State<SharedState>) -> Response {
    let broker = match (
        &state.config.serve.broker,
        state
            .broker_connected
            .load(std::sync::atomic::Ordering::Relaxed),
    ) {
        (None, _) => "not configured",
        (Some(_), true) => "connected",
        (Some(_), false) => "disconnected",
    };
    match db(&state, |r| r.ping()).await {
        Ok(()) => {
            Json(json!({ "status": "ok", "registry": "ok", "broker": broker })).into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "degraded", "registry": "unavailable" })),
        )
            .into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn serial(sn: &str) -> Result<SerialNumber, ApiError> {
    sn.parse()
        .map_err(|e: vesper_core::serial::ParseError| ApiError::BadRequest(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    board: Option<String>,
    hw_type: Option<String>,
    hw_version: Option<String>,
    quantity: u32,
    #[serde(default = "default_plan")]
    subscription_plan: String,
    #[serde(default = "default_outputs")]
    available_outputs: i64,
}

fn default_plan() -> String {
    vesper_store::DEFAULT_PLAN.into()
}

fn default_outputs() -> i64 {
    vesper_store::DEFAULT_OUTPUTS
}

fn board_of<'a>(state: &'a SharedState, req: &BatchRequest) -> Result<&'a Board, ApiError> {
    let config = &state.config;
    match (&req.board, &req.hw_type, &req.hw_version) {
        (Some(name), None, None) => config
            .board(name)
            .map_err(|e| ApiError::BadRequest(e.to_string())),
        (None, Some(t), Some(v)) => {
            let (t, v) = (
                t.parse().map_err(|e: vesper_core::serial::InputError| {
                    ApiError::BadRequest(e.to_string())
                })?,
                v.parse().map_err(|e: vesper_core::serial::InputError| {
                    ApiError::BadRequest(e.to_string())
                })?,
            );
            config.board_for(t, v).ok_or_else(|| {
                ApiError::BadRequest(format!("no board has hw_type {t} and hw_version {v}"))
            })
        }
        _ => Err(ApiError::BadRequest(
            "give either `board`, or `hw_type` and `hw_version`".into(),
        )),
    }
}

async fn create_batch(
    State(state): State<SharedState>,
    caller: Caller,
    Body(req): Body<BatchRequest>,
) -> Result<Response, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let board = board_of(&state, &req)?.clone();
    let new_batch = move |r: &vesper_store::Registry| {
        r.create_batch(
            &NewBatch {
                board: &board,
                quantity: req.quantity,
                subscription_plan: req.subscription_plan,
                available_outputs: req.available_outputs,
            },
            &actor,
        )
    };
    let batch = db(&state, new_batch).await?;
    let mut body = serde_json::to_value(&batch).map_err(|_| ApiError::Internal)?;
    body["serial_numbers"] = json!(batch.serial_numbers());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn batch(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let mut batch = db(&state, move |r| r.batch(&id)).await?;
    batch.devices = all_visible(&caller, std::mem::take(&mut batch.devices));
    let mut body = serde_json::to_value(&batch).map_err(|_| ApiError::Internal)?;
    body["serial_numbers"] = json!(batch.serial_numbers());
    Ok(Json(body))
}

#[derive(Deserialize)]
struct LabelQuery {
    stock: Option<String>,
    format: Option<String>,
    skip: Option<u32>,
}

/// The labels of a batch: a PDF (or ZPL with `?format=zpl`) on the configured or given stock.
async fn batch_labels(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<LabelQuery>,
) -> Result<Response, ApiError> {
    caller.require(Role::Technician)?;
    let labels_config = &state.config.labels;
    let stock = vesper_labels::Stock::find(
        q.stock.as_deref().unwrap_or(&labels_config.stock),
        &labels_config.stocks,
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let format: vesper_labels::Format = q
        .format
        .as_deref()
        .unwrap_or("pdf")
        .parse()
        .map_err(ApiError::BadRequest)?;
    let batch = db(&state, move |r| r.batch(&id)).await?;
    let data: Vec<_> = batch
        .devices
        .iter()
        .map(vesper_labels::from_device)
        .collect();
    let skip = q.skip.unwrap_or(0).min(10_000);
    let (bytes, media) =
        tokio::task::spawn_blocking(move || vesper_labels::render(&data, &stock, format, skip))
            .await
            .map_err(|_| ApiError::Internal)?
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let extension = if format == vesper_labels::Format::Zpl {
        "zpl"
    } else {
        "pdf"
    };
    let disposition = format!(
        "attachment; filename=\"{}-labels.{extension}\"",
        batch.summary.batch_id
    );
    Ok((
        [
            (header::CONTENT_TYPE, media.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<u32>,
    offset: Option<u32>,
}

async fn batches(
    State(state): State<SharedState>,
    caller: Caller,
    Params(q): Params<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let list = db(&state, move |r| {
        r.batches(q.limit.unwrap_or(100), q.offset.unwrap_or(0))
    })
    .await?;
    Ok(Json(json!({ "batches": list })))
}

/// Whether the caller may see personal data (customers' e-mail addresses, user ids): technicians
/// assign devices to customers and admins manage users; a viewer sees devices without them.
fn sees_personal_data(caller: &Caller) -> bool {
    caller.require(Role::Technician).is_ok()
}

/// A device as this caller may see it.
fn visible(caller: &Caller, device: vesper_store::Device) -> vesper_store::Device {
    if sees_personal_data(caller) {
        device
    } else {
        device.without_personal_data()
    }
}

/// Devices as this caller may see them.
fn all_visible(caller: &Caller, devices: Vec<vesper_store::Device>) -> Vec<vesper_store::Device> {
    devices.into_iter().map(|d| visible(caller, d)).collect()
}

async fn devices(
    State(state): State<SharedState>,
    caller: Caller,
    Params(mut filter): Params<DeviceFilter>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    filter.personal = sees_personal_data(&caller);
    let mut page = db(&state, move |r| r.devices(&filter)).await?;
    page.devices = all_visible(&caller, std::mem::take(&mut page.devices));
    Ok(Json(
        serde_json::to_value(page).map_err(|_| ApiError::Internal)?,
    ))
}

#[derive(Deserialize)]
struct WaitQuery {
    /// Answer only once the device has reached this status (or is revoked), or `timeout` passed.
    wait: Option<Status>,
    /// Seconds to wait (default 30, at most 600).
    timeout: Option<u64>,
}

/// Longest long poll, in seconds (a station's verify timeout may be up to 600 s).
pub const MAX_WAIT: u64 = 600;

fn reached(status: Status, wanted: Status) -> bool {
    status == Status::Revoked || status >= wanted
}

async fn device(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Params(q): Params<WaitQuery>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let sn = serial(&sn)?;
    let Some(wanted) = q.wait else {
        let device = visible(&caller, db(&state, move |r| r.device(sn.as_str())).await?);
        return Ok(
            Json(serde_json::to_value(device).map_err(|_| ApiError::Internal)?).into_response(),
        );
    };
    // Subscribe before reading, so a change between the read and the wait is not missed.
    let mut events = state.events.subscribe();
    let mut stopping = state.stopping.clone();
    let load = |sn: SerialNumber| db(&state, move |r| r.device(sn.as_str()));
    let mut device = load(sn.clone()).await?;
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_secs(q.timeout.unwrap_or(30).min(MAX_WAIT));
    while !reached(device.status, wanted) {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) if e.serial_number == sn.as_str() && reached(e.status, wanted) => device = load(sn.clone()).await?,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => device = load(sn.clone()).await?,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = super::stopped(&mut stopping) => break,
        }
    }
    let result = match device.status {
        Status::Revoked if wanted != Status::Revoked => "revoked",
        s if reached(s, wanted) => "reached",
        _ => "timeout",
    };
    let body = serde_json::to_value(visible(&caller, device)).map_err(|_| ApiError::Internal)?;
    Ok((
        [(header::HeaderName::from_static("x-wait-result"), result)],
        Json(body),
    )
        .into_response())
}

/// Server-sent events of one device: its current state first, then every change
/// (`provisioned`, `seen`, `status`, `flashed`, `assigned`, `users`).
/// How often a running event stream checks that its token is still valid.
const TOKEN_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// What ends an event stream early.
enum StreamEnd {
    Event(Result<DeviceEvent, tokio::sync::broadcast::error::RecvError>),
    Recheck,
    Stopping,
}

async fn device_events(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
) -> Result<
    Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>,
    ApiError,
> {
    caller.require(Role::Viewer)?;
    let sn = serial(&sn)?;
    let events = state.events.subscribe();
    let device = {
        let sn = sn.clone();
        db(&state, move |r| r.device(sn.as_str())).await?
    };
    let first = sse_event(&DeviceEvent::of("current", &device));
    let token = caller.0.name.clone();
    let recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + TOKEN_RECHECK, TOKEN_RECHECK);
    let changes = futures_util::stream::unfold(
        (events, state.stopping.clone(), recheck, state.clone()),
        move |(mut events, mut stopping, mut recheck, state)| {
            let (sn, token) = (sn.clone(), token.clone());
            async move {
                loop {
                    let next = tokio::select! {
                        event = events.recv() => StreamEnd::Event(event),
                        _ = recheck.tick() => StreamEnd::Recheck,
                        _ = super::stopped(&mut stopping) => StreamEnd::Stopping,
                    };
                    match next {
                        StreamEnd::Event(Ok(e)) if e.serial_number == sn.as_str() => {
                            return Some((Ok(sse_event(&e)), (events, stopping, recheck, state)));
                        }
                        StreamEnd::Event(Ok(_))
                        | StreamEnd::Event(Err(
                            tokio::sync::broadcast::error::RecvError::Lagged(_),
                        )) => {}
                        StreamEnd::Recheck => {
                            // A revoked token (or an unreadable registry) ends the stream.
                            let name = token.clone();
                            if !matches!(db(&state, move |r| r.token_active(&name)).await, Ok(true))
                            {
                                tracing::info!(token = %token, "event stream ended: its token is no longer valid");
                                return None;
                            }
                        }
                        StreamEnd::Event(Err(tokio::sync::broadcast::error::RecvError::Closed))
                        | StreamEnd::Stopping => return None,
                    }
                }
            }
        },
    );
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok(first) }),
        changes,
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

fn sse_event(e: &DeviceEvent) -> SseEvent {
    SseEvent::default()
        .event(e.kind.clone())
        .data(serde_json::to_string(e).unwrap_or_default())
}

/// Tells event listeners about a change made through the API.
fn announce(state: &SharedState, kind: &str, device: &vesper_store::Device) {
    let _ = state.events.send(DeviceEvent::of(kind, device));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    status: Status,
}

async fn set_status(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(req): Body<StatusRequest>,
) -> Result<Json<Value>, ApiError> {
    let needed = if req.status == Status::Revoked {
        Role::Admin
    } else {
        Role::Technician
    };
    let actor = caller.require(needed)?.to_owned();
    let sn = serial(&sn)?;
    let device = db(&state, move |r| {
        r.set_status(sn.as_str(), req.status, &actor)
    })
    .await?;
    if device.status == Status::Revoked {
        state
            .broker_control
            .send(BrokerCommand::kick(&device.serial_number));
    }
    announce(&state, "status", &device);
    device_json(&device)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimRequest {
    /// Who takes the device, e.g. `bench-1/slot-2`.
    station: String,
    /// How long the claim holds if the station never reports (default 600 s, at most 3600 s).
    lease_seconds: Option<u64>,
}

impl ClaimRequest {
    fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_seconds.unwrap_or(600))
    }
}

fn device_json(device: &vesper_store::Device) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(device).map_err(|_| ApiError::Internal)?,
    ))
}

/// Takes the batch's next device to flash for a bench slot; 409 when none is left.
async fn claim_next(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ClaimRequest>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let device = db(&state, move |r| {
        r.claim_next(&id, &req.station, req.lease(), &actor)
    })
    .await?;
    announce(&state, "claimed", &device);
    device_json(&device)
}

/// Takes one device (the wizard's pick); 409 while another station holds it.
async fn claim_device(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(req): Body<ClaimRequest>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let device = db(&state, move |r| {
        r.claim(sn.as_str(), &req.station, req.lease(), &actor)
    })
    .await?;
    announce(&state, "claimed", &device);
    device_json(&device)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    station: String,
}

/// Gives a claimed device back to its batch (a board set aside).
async fn release_device(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(req): Body<ReleaseRequest>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let device = db(&state, move |r| {
        r.release(sn.as_str(), &req.station, &actor)
    })
    .await?;
    device_json(&device)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignRequest {
    email: String,
    name: Option<String>,
}

async fn assign(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(req): Body<AssignRequest>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let device = db(&state, move |r| {
        r.assign(sn.as_str(), &req.email, req.name.as_deref(), &actor)
    })
    .await?;
    announce(&state, "assigned", &device);
    device_json(&device)
}

async fn flashed(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(report): Body<FlashReport>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let device = db(&state, move |r| r.flashed(sn.as_str(), &report, &actor)).await?;
    announce(&state, "flashed", &device);
    device_json(&device)
}

async fn set_users(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(users): Body<DeviceUsers>,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.require(Role::Admin)?.to_owned();
    let sn = serial(&sn)?;
    let (before, device) = db(&state, move |r| {
        let before = r.device(sn.as_str())?;
        Ok((before, r.set_users(sn.as_str(), &users, &actor)?))
    })
    .await?;
    // A user who lost this device loses its cached grants on the broker now.
    let now_allowed: Vec<&String> = device.owner.iter().chain(&device.users_list).collect();
    for gone in before
        .owner
        .iter()
        .chain(&before.users_list)
        .filter(|u| !now_allowed.contains(u))
    {
        state.broker_control.send(BrokerCommand::forget(gone));
    }
    announce(&state, "users", &device);
    device_json(&device)
}

fn board_named<'a>(state: &'a SharedState, name: &str) -> Result<&'a Board, ApiError> {
    state.config.board(name).map_err(|_| {
        tracing::error!(
            board = name,
            "a device's board is missing from the configuration"
        );
        ApiError::Conflict {
            code: "unknown_board",
            message: format!("board `{name}` is not in the backend's configuration"),
        }
    })
}

/// `?reissue=true`: an admin asks for the image of a device already in the field.
#[derive(Deserialize)]
struct NvsQuery {
    #[serde(default)]
    reissue: bool,
}

/// A device's NVS image holds its MQTT password, so every download is audited, and once a
/// device is in a customer's hands (`sold`, `claimed`, `active`) only an admin may have it again,
/// asking for it on purpose (`?reissue=true`, audited as a reissue).
async fn nvs_image(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Params(q): Params<NvsQuery>,
) -> Result<Response, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let record = {
        let sn = sn.clone();
        db(&state, move |r| r.device(sn.as_str())).await?
    };
    if record.status == Status::Revoked {
        return Err(ApiError::Conflict {
            code: "revoked",
            message: format!("device {sn} is revoked"),
        });
    }
    let in_field = matches!(
        record.status,
        Status::Sold | Status::Claimed | Status::Active
    );
    if in_field && !q.reissue {
        return Err(ApiError::Conflict {
            code: "device_in_field",
            message: format!(
                "device {sn} is {}: its credentials are in the field; an admin may reissue them with ?reissue=true",
                record.status.as_str()
            ),
        });
    }
    if in_field {
        caller.require(Role::Admin)?;
    }
    let action = if in_field {
        "device.nvs_reissued"
    } else {
        "device.nvs_downloaded"
    };
    {
        let (sn, status) = (sn.as_str().to_owned(), record.status.as_str());
        db(&state, move |r| {
            r.record(
                &actor,
                action,
                Some(&sn),
                &serde_json::json!({ "status": status }),
            )
        })
        .await?;
    }
    let board = board_named(&state, &record.board)?;
    let password = state.secret.device_password(&sn);
    let device = DeviceNvs {
        serial_number: &sn,
        hw_type: &record.hw_type,
        hw_version: &record.hw_version,
        mqtt_pass: &password,
        mqtt_host: &state.config.mqtt.host,
        mqtt_port: state.config.mqtt.port,
        extra: &board.nvs_extra,
    };
    let image = nvs::device_image(u64::from(board.nvs.size), &device).map_err(|e| {
        tracing::error!(error = %e, "cannot build an NVS image");
        ApiError::Internal
    })?;
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{sn}.nvs.bin\""),
        ),
        (
            header::HeaderName::from_static("x-nvs-offset"),
            format!("0x{:x}", board.nvs.offset),
        ),
        (header::CACHE_CONTROL, "no-store".to_owned()),
    ];
    Ok((headers, image).into_response())
}

/// Base URL for download links: the configured public URL, else the request's Host.
fn base_url(state: &SharedState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.serve.public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.serve.listen.to_string());
    format!("http://{host}")
}

/// A manifest whose part paths are absolute download URLs.
fn with_urls(mut manifest: Manifest, base: &str) -> Value {
    let release = format!("{base}/ota/{}/v{}", manifest.name, manifest.version);
    for build in &mut manifest.builds {
        for part in &mut build.parts {
            part.path = format!("{release}/{}", part.path);
        }
    }
    let mut body = serde_json::to_value(&manifest).unwrap_or(Value::Null);
    body["app_url"] = json!(format!(
        "{base}/ota/{}/v{}.bin",
        manifest.name, manifest.version
    ));
    body["manifest_url"] = json!(format!("{release}/manifest.json"));
    body
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<String>,
}

async fn firmware_manifest(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    Path((hw_type, hw_version)): Path<(String, String)>,
    Params(q): Params<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let t = hw_type
        .parse()
        .map_err(|e: vesper_core::serial::InputError| ApiError::BadRequest(e.to_string()))?;
    let v = hw_version
        .parse()
        .map_err(|e: vesper_core::serial::InputError| ApiError::BadRequest(e.to_string()))?;
    let board = state.config.board_for(t, v).ok_or_else(|| {
        ApiError::NotFound(format!("no board has hw_type {t} and hw_version {v}"))
    })?;
    let manifest = releases::manifest(
        &state.config.serve.ota_root,
        &board.name,
        q.version.as_deref(),
    )?;
    Ok(Json(with_urls(manifest, &base_url(&state, &headers))))
}

async fn device_firmware(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let sn = serial(&sn)?;
    let record = db(&state, move |r| r.device(sn.as_str())).await?;
    let board = board_named(&state, &record.board)?;
    let manifest = releases::manifest(&state.config.serve.ota_root, &board.name, None)?;
    let path = releases::board_dir(&state.config.serve.ota_root, &board.name)
        .join(format!("v{}.bin", manifest.version));
    send_file(
        &state,
        &path,
        &format!("{}-v{}.bin", board.name, manifest.version),
    )
    .await
}

async fn audit(
    State(state): State<SharedState>,
    caller: Caller,
    Params(q): Params<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin)?;
    let query = AuditQuery {
        subject: q.subject,
        action: q.action,
        before_id: q.before_id,
        limit: q.limit.unwrap_or(100),
    };
    let entries = db(&state, move |r| r.audit(&query)).await?;
    Ok(Json(json!({ "entries": entries })))
}

#[derive(Deserialize)]
struct AuditParams {
    subject: Option<String>,
    action: Option<String>,
    before_id: Option<i64>,
    limit: Option<u32>,
}

async fn stats(State(state): State<SharedState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Viewer)?;
    let mut stats = db(&state, |r| r.stats()).await?;
    if caller.require(Role::Admin).is_err() {
        // Below admin, recent activity says who did what to which device, and nothing more:
        // no token rows, and no before/after states (they hold e-mail addresses and user ids).
        stats.recent.retain(|e| !e.action.starts_with("token."));
        for entry in &mut stats.recent {
            entry.before = None;
            entry.after = None;
        }
    }
    Ok(Json(
        serde_json::to_value(stats).map_err(|_| ApiError::Internal)?,
    ))
}

/// A path segment that cannot leave its folder.
fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

async fn ota_file(
    State(state): State<SharedState>,
    Path((board, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !safe_segment(&board) || !safe_segment(&file) {
        return Err(ApiError::NotFound("no such file".into()));
    }
    let path = releases::board_dir(&state.config.serve.ota_root, &board).join(&file);
    send_file(&state, &path, &file).await
}

async fn ota_release_file(
    State(state): State<SharedState>,
    Path((board, release, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    if !safe_segment(&board)
        || !safe_segment(&release)
        || !release.starts_with('v')
        || !safe_segment(&file)
    {
        return Err(ApiError::NotFound("no such file".into()));
    }
    let path = releases::board_dir(&state.config.serve.ota_root, &board)
        .join(&release)
        .join(&file);
    send_file(&state, &path, &file).await
}

/// Most firmware downloads served at once; beyond that a client gets 503 with `Retry-After`
/// (a fleet told to update at once must not exhaust the backend's file handles and memory).
pub const MAX_DOWNLOADS: usize = 64;

/// Streams a firmware file from disk (never read whole into memory), holding a download slot
/// until the last byte is sent.
async fn send_file(
    state: &SharedState,
    path: &std::path::Path,
    name: &str,
) -> Result<Response, ApiError> {
    let slot = state
        .downloads
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy)?;
    let opened = async {
        let file = tokio::fs::File::open(path).await?;
        let meta = file.metadata().await?;
        if meta.is_dir() {
            return Err(std::io::Error::from(std::io::ErrorKind::IsADirectory));
        }
        Ok((file, meta.len()))
    };
    match opened.await {
        Ok((file, length)) => {
            let kind = if name.ends_with(".json") {
                "application/json"
            } else {
                "application/octet-stream"
            };
            let stream = tokio_util::io::ReaderStream::new(file);
            let body =
                axum::body::Body::from_stream(futures_util::StreamExt::map(stream, move |chunk| {
                    let _held = &slot;
                    chunk
                }));
            Ok((
                [
                    (header::CONTENT_TYPE, kind.to_owned()),
                    (header::CONTENT_LENGTH, length.to_string()),
                ],
                body,
            )
                .into_response())
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::IsADirectory =>
        {
            Err(ApiError::NotFound("no such file".into()))
        }
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot read a firmware file");
            Err(ApiError::Internal)
        }
    }
}
