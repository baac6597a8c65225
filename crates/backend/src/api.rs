//! The manufacturing API (`/manufacturing/...`), the OTA files (`/ota/...`), health and the
//! OpenAPI document.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::Router;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::control::BrokerCommand;
use super::error::ApiErrors;
use super::{ApiError, Caller, SharedState};
use crate::releases::{self, Manifest};
use vesper_core::model::{
    AuditEntry, Batch, BatchSummary, Board, Device, DevicePage, DeviceSort, Stats, StatusCounts,
};
use vesper_core::nvs::{self, DeviceNvs};
use vesper_core::serial::SerialNumber;
use vesper_core::wire::{
    AssignRequest, AuditPage, AuditParams, BatchAnswer, BatchList, BatchRequest, ClaimRequest,
    ConflictCode, ErrorBody, FirmwareRelease, Health, LabelQuery, NvsQuery, PageQuery,
    ReleaseRequest, StatusRequest, VersionQuery, WaitQuery, WaitResult,
};
use vesper_store::{
    AuditQuery, DeviceEvent, DeviceFilter, DeviceUsers, FailureReport, FlashReport, NewBatch, Role,
    Status,
};

/// The document's frame: title, security scheme, the schemas no route names directly.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Vesper Station backend",
        description = "Device registry, manufacturing API and MQTT auth answers for Vesper Station. Admin routes need `Authorization: Bearer <token>` (`vesper token create NAME --role admin|technician|viewer`); the token's name is the audit actor."
    ),
    modifiers(&BearerScheme),
    components(schemas(
        ErrorBody,
        ConflictCode,
        StatusCounts,
        AuditEntry,
        DeviceEvent,
        DeviceSort,
        WaitResult,
        vesper_core::eol::report::ReportFormat,
        vesper_core::goauth::JsonAnswer
    ))
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the routes name.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The API's routes and their OpenAPI description, from the same declarations. Every route but
/// the waiting ones answers within `timeout` (else 503); a long poll (`?wait=`, up to
/// [`MAX_WAIT`] seconds) and an event stream bound their own time.
pub fn routes(timeout: std::time::Duration) -> (Router<SharedState>, utoipa::openapi::OpenApi) {
    let (timed, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(openapi))
        .routes(routes!(create_batch))
        .routes(routes!(batch))
        .routes(routes!(batch_labels))
        .routes(routes!(claim_next))
        .routes(routes!(batches))
        .routes(routes!(devices))
        .routes(routes!(set_status))
        .routes(routes!(assign))
        .routes(routes!(claim_device))
        .routes(routes!(release_device))
        .routes(routes!(flashed))
        .routes(routes!(failed))
        .routes(routes!(crate::eol::record_test, crate::eol::test_records))
        .routes(routes!(crate::eol::batch_report))
        .routes(routes!(set_users))
        .routes(routes!(nvs_image))
        .routes(routes!(device_firmware))
        .routes(routes!(firmware_manifest))
        .routes(routes!(audit))
        .routes(routes!(stats))
        .routes(routes!(ota_file))
        .routes(routes!(ota_release_file))
        .split_for_parts();
    // The webhook takes larger bodies than the API (a push event lists its commits).
    let (hooks, hooks_doc) = OpenApiRouter::new()
        .routes(routes!(crate::hooks::gitea))
        .routes(routes!(crate::hooks::deploys))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::hooks::MAX_EVENT,
        ))
        .split_for_parts();
    doc.merge(hooks_doc);
    // Firmware uploads carry whole releases. The route shares its path with the release lookup
    // (GET .../{hw_type}/{hw_version}), so the router takes those names; the document says
    // {board}/{version}, what the upload means.
    let (_, uploads_doc) = OpenApiRouter::<SharedState>::new()
        .routes(routes!(crate::publish::upload))
        .split_for_parts();
    doc.merge(uploads_doc);
    let uploads = Router::new()
        .route(
            "/manufacturing/firmware/{hw_type}/{hw_version}",
            axum::routing::post(crate::publish::upload),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::publish::MAX_UPLOAD,
        ));
    let timed = timed.merge(hooks).merge(uploads);
    let (waiting, waiting_doc) = OpenApiRouter::new()
        .routes(routes!(device))
        .routes(routes!(device_events))
        .split_for_parts();
    doc.merge(waiting_doc);
    let router = timed
        .route_layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .merge(waiting);
    (router, doc)
}

/// The whole OpenAPI document: the API's routes and the broker-facing auth routes.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = routes(std::time::Duration::from_secs(60));
    doc.merge(super::mqtt::document());
    doc
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

/// Health of the registry and the heartbeat listener.
#[utoipa::path(get, path = "/healthz", tag = "system", security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Registry unavailable", body = Health),
    ))]
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
    match state.store.ping().await {
        Ok(()) => Json(Health {
            status: "ok".into(),
            registry: "ok".into(),
            broker: broker.into(),
        })
        .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "degraded".into(),
                registry: "unavailable".into(),
                broker: String::new(),
            }),
        )
            .into_response(),
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| document().to_pretty_json().expect("document serializes"));
    ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

pub(crate) fn serial(sn: &str) -> Result<SerialNumber, ApiError> {
    sn.parse()
        .map_err(|e: vesper_core::serial::ParseError| ApiError::BadRequest(e.to_string()))
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

/// Creates a batch of serial numbers for one board, whole or not at all.
#[utoipa::path(post, path = "/manufacturing/batch", tag = "batches", security(("bearer" = [])),
    request_body = BatchRequest,
    responses((status = 201, description = "The batch, its devices and serial numbers", body = BatchAnswer), ApiErrors))]
async fn create_batch(
    State(state): State<SharedState>,
    caller: Caller,
    Body(req): Body<BatchRequest>,
) -> Result<(StatusCode, Json<BatchAnswer>), ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let board = board_of(&state, &req)?.clone();
    let new_batch = NewBatch {
        board: &board,
        quantity: req.quantity,
        subscription_plan: req.subscription_plan,
        available_outputs: req.available_outputs,
    };
    let batch = state.store.create_batch(&new_batch, &actor).await?;
    Ok((StatusCode::CREATED, Json(batch.into())))
}

/// A batch with its devices.
#[utoipa::path(get, path = "/manufacturing/batch/{id}", tag = "batches", security(("bearer" = [])),
    params(("id" = String, Path, description = "Batch name, e.g. B-0042")),
    responses((status = 200, description = "The batch", body = BatchAnswer), ApiErrors))]
async fn batch(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BatchAnswer>, ApiError> {
    caller.require(Role::Viewer)?;
    let mut batch: Batch = state.store.batch(&id).await?;
    batch.devices = all_visible(&caller, std::mem::take(&mut batch.devices));
    Ok(Json(batch.into()))
}

/// The labels of a batch: a PDF (or ZPL with `?format=zpl`) on the configured or given stock.
#[utoipa::path(post, path = "/manufacturing/batch/{id}/labels", tag = "batches", security(("bearer" = [])),
    params(("id" = String, Path, description = "Batch name"), LabelQuery),
    responses(
        (status = 200, description = "The labels", content(("application/pdf"), ("application/zpl"))),
        ApiErrors))]
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
    let batch = state.store.batch(&id).await?;
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

/// The newest batches first, without their devices.
#[utoipa::path(get, path = "/manufacturing/batches", tag = "batches", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "Batches", body = BatchList), ApiErrors))]
async fn batches(
    State(state): State<SharedState>,
    caller: Caller,
    Params(q): Params<PageQuery>,
) -> Result<Json<BatchList>, ApiError> {
    caller.require(Role::Viewer)?;
    let batches: Vec<BatchSummary> = state
        .store
        .batches(q.limit.unwrap_or(100), q.offset.unwrap_or(0))
        .await?;
    Ok(Json(BatchList { batches }))
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

/// Devices by filter, one page.
#[utoipa::path(get, path = "/manufacturing/devices", tag = "devices", security(("bearer" = [])),
    params(DeviceFilter),
    responses((status = 200, description = "A page of devices", body = DevicePage), ApiErrors))]
async fn devices(
    State(state): State<SharedState>,
    caller: Caller,
    Params(mut filter): Params<DeviceFilter>,
) -> Result<Json<DevicePage>, ApiError> {
    caller.require(Role::Viewer)?;
    filter.personal = sees_personal_data(&caller);
    let mut page = state.store.devices(&filter).await?;
    page.devices = all_visible(&caller, std::mem::take(&mut page.devices));
    Ok(Json(page))
}

/// Longest long poll, in seconds (a station's verify timeout may be up to 600 s).
pub const MAX_WAIT: u64 = 600;

fn reached(status: Status, wanted: Status) -> bool {
    status == Status::Revoked || status >= wanted
}

/// One device with its history; with `?wait=STATUS`, a long poll.
#[utoipa::path(get, path = "/manufacturing/devices/{sn}", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number PV-YYMDD-BBTTR-XXXXX"), WaitQuery),
    responses((status = 200, description = "The device (a long poll says how it ended in `x-wait-result`)", body = Device,
        headers(("x-wait-result" = WaitResult, description = "Long polls only: reached, timeout or revoked"))), ApiErrors))]
async fn device(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Params(q): Params<WaitQuery>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let sn = serial(&sn)?;
    let Some(wanted) = q.wait else {
        let device = visible(&caller, state.store.device(sn.as_str()).await?);
        return Ok(Json(device).into_response());
    };
    let _slot = state.streams.take(&caller.0.name)?;
    // Subscribe before reading, so a change between the read and the wait is not missed.
    let mut events = state.events.subscribe();
    let mut stopping = state.stopping.clone();
    let mut device = state.store.device(sn.as_str()).await?;
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_secs(q.timeout.unwrap_or(30).min(MAX_WAIT));
    while !reached(device.status, wanted) {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) if e.serial_number == sn.as_str() && reached(e.status, wanted) => device = state.store.device(sn.as_str()).await?,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => device = state.store.device(sn.as_str()).await?,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = super::stopped(&mut stopping) => break,
        }
    }
    let result = match device.status {
        Status::Revoked if wanted != Status::Revoked => WaitResult::Revoked,
        s if reached(s, wanted) => WaitResult::Reached,
        _ => WaitResult::Timeout,
    };
    Ok((
        [(
            header::HeaderName::from_static(WaitResult::HEADER),
            result.as_str(),
        )],
        Json(visible(&caller, device)),
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

#[utoipa::path(get, path = "/manufacturing/devices/{sn}/events", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")),
    responses((status = 200, description = "Server-sent events: `current` first, then one per change of the device (`provisioned`, `seen`, `status`, `flashed`, `assigned`, `users`; data: a DeviceEvent as JSON); the stream ends at shutdown or when the token is revoked",
        content_type = "text/event-stream", body = vesper_core::wire::EventFrame), ApiErrors))]
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
    let slot = state.streams.take(&caller.0.name)?;
    let events = state.events.subscribe();
    let device = {
        let sn = sn.clone();
        state.store.device(sn.as_str()).await?
    };
    let first = sse_event(&DeviceEvent::of("current", &device));
    let token = caller.0.name.clone();
    let recheck =
        tokio::time::interval_at(tokio::time::Instant::now() + TOKEN_RECHECK, TOKEN_RECHECK);
    // The slot lives in the stream's state: given back when the stream ends or the client goes.
    let changes = futures_util::stream::unfold(
        (events, state.stopping.clone(), recheck, state.clone(), slot),
        move |(mut events, mut stopping, mut recheck, state, slot)| {
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
                            return Some((
                                Ok(sse_event(&e)),
                                (events, stopping, recheck, state, slot),
                            ));
                        }
                        StreamEnd::Event(Ok(_))
                        | StreamEnd::Event(Err(
                            tokio::sync::broadcast::error::RecvError::Lagged(_),
                        )) => {}
                        StreamEnd::Recheck => {
                            // A revoked token (or an unreadable registry) ends the stream.
                            let name = token.clone();
                            if !matches!(state.store.token_active(&name).await, Ok(true)) {
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

/// Tells event listeners (of every instance) about a change made through the API.
async fn announce(state: &SharedState, kind: &str, device: &vesper_store::Device) {
    crate::announce(state, vec![DeviceEvent::of(kind, device)]).await;
}

/// Moves a device's status forward (or to revoked, admins only).
#[utoipa::path(post, path = "/manufacturing/devices/{sn}/status", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")), request_body = StatusRequest,
    responses((status = 200, description = "The device", body = Device), ApiErrors))]
async fn set_status(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(req): Body<StatusRequest>,
) -> Result<Json<Device>, ApiError> {
    let needed = if req.status == Status::Revoked {
        Role::Admin
    } else {
        Role::Technician
    };
    let actor = caller.require(needed)?.to_owned();
    let sn = serial(&sn)?;
    let device = state
        .store
        .set_status(sn.as_str(), req.status, &actor)
        .await?;
    if device.status == Status::Revoked {
        state
            .broker_control
            .send(BrokerCommand::kick(&device.serial_number));
    }
    announce(&state, "status", &device).await;
    Ok(Json(device))
}

/// How long a claim holds if the station never reports.
fn lease(req: &ClaimRequest) -> std::time::Duration {
    std::time::Duration::from_secs(req.lease_seconds.unwrap_or(600))
}

/// Takes the batch's next device to flash for a bench slot; 409 `batch_done` when none is left.
#[utoipa::path(post, path = "/manufacturing/batch/{id}/claim", tag = "batches", security(("bearer" = [])),
    params(("id" = String, Path, description = "Batch name")), request_body = ClaimRequest,
    responses((status = 200, description = "The claimed device", body = Device), ApiErrors))]
async fn claim_next(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ClaimRequest>,
) -> Result<Json<Device>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let device = state
        .store
        .claim_next(&id, &req.station, lease(&req), &actor)
        .await?;
    announce(&state, "claimed", &device).await;
    Ok(Json(device))
}

/// Takes one device (the wizard's pick); 409 while another station holds it.
#[utoipa::path(post, path = "/manufacturing/devices/{sn}/claim", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")), request_body = ClaimRequest,
    responses((status = 200, description = "The claimed device", body = Device), ApiErrors))]
async fn claim_device(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(req): Body<ClaimRequest>,
) -> Result<Json<Device>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let device = state
        .store
        .claim(sn.as_str(), &req.station, lease(&req), &actor)
        .await?;
    announce(&state, "claimed", &device).await;
    Ok(Json(device))
}

/// Gives a claimed device back to its batch (a board set aside).
#[utoipa::path(post, path = "/manufacturing/devices/{sn}/release", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")), request_body = ReleaseRequest,
    responses((status = 200, description = "The device", body = Device), ApiErrors))]
async fn release_device(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(req): Body<ReleaseRequest>,
) -> Result<Json<Device>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let device = state
        .store
        .release(sn.as_str(), &req.station, &actor)
        .await?;
    Ok(Json(device))
}

/// Assigns a device to a customer (an invitation goes to the outbox).
#[utoipa::path(post, path = "/manufacturing/devices/{sn}/assign", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")), request_body = AssignRequest,
    responses((status = 200, description = "The device", body = Device), ApiErrors))]
async fn assign(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(req): Body<AssignRequest>,
) -> Result<Json<Device>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let device = state
        .store
        .assign(sn.as_str(), &req.email, req.name.as_deref(), &actor)
        .await?;
    state.mail_wake.notify_one();
    announce(&state, "assigned", &device).await;
    Ok(Json(device))
}

/// A station's report of a failed flash or verification (an audit row; repeats raise an alert).
#[utoipa::path(post, path = "/manufacturing/devices/{sn}/failed", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")), request_body = FailureReport,
    responses((status = 200, description = "The device (its status unchanged)", body = Device), ApiErrors))]
async fn failed(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(report): Body<FailureReport>,
) -> Result<Json<Device>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let device = state.store.failed(sn.as_str(), &report, &actor).await?;
    Ok(Json(device))
}

/// The station's report of a flashed board (chip, MAC, firmware).
#[utoipa::path(post, path = "/manufacturing/devices/{sn}/flashed", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")), request_body = FlashReport,
    responses((status = 200, description = "The device", body = Device), ApiErrors))]
async fn flashed(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(report): Body<FlashReport>,
) -> Result<Json<Device>, ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let device = state.store.flashed(sn.as_str(), &report, &actor).await?;
    announce(&state, "flashed", &device).await;
    Ok(Json(device))
}

/// Sets the owner and the users of a device (admins); a user who lost it is cut off at once.
#[utoipa::path(post, path = "/manufacturing/devices/{sn}/users", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")), request_body = DeviceUsers,
    responses((status = 200, description = "The device", body = Device), ApiErrors))]
async fn set_users(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(users): Body<DeviceUsers>,
) -> Result<Json<Device>, ApiError> {
    let actor = caller.require(Role::Admin)?.to_owned();
    let sn = serial(&sn)?;
    let before = state.store.device(sn.as_str()).await?;
    let device = state.store.set_users(sn.as_str(), &users, &actor).await?;
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
    announce(&state, "users", &device).await;
    Ok(Json(device))
}

fn board_named<'a>(state: &'a SharedState, name: &str) -> Result<&'a Board, ApiError> {
    state.config.board(name).map_err(|_| {
        tracing::error!(
            board = name,
            "a device's board is missing from the configuration"
        );
        ApiError::Conflict {
            code: ConflictCode::UnknownBoard,
            message: format!("board `{name}` is not in the backend's configuration"),
        }
    })
}

/// A device's NVS image holds its MQTT password, so every download is audited, and once a
/// device is in a customer's hands (`sold`, `claimed`, `active`) only an admin may have it again,
/// asking for it on purpose (`?reissue=true`, audited as a reissue).
#[utoipa::path(get, path = "/manufacturing/devices/{sn}/nvs.bin", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number"), NvsQuery),
    responses((status = 200, description = "The device's NVS partition image (header x-nvs-offset: where it goes)",
        content_type = "application/octet-stream"), ApiErrors))]
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
        state.store.device(sn.as_str()).await?
    };
    if record.status == Status::Revoked {
        return Err(ApiError::Conflict {
            code: ConflictCode::Revoked,
            message: format!("device {sn} is revoked"),
        });
    }
    let in_field = matches!(
        record.status,
        Status::Sold | Status::Claimed | Status::Active
    );
    if in_field && !q.reissue {
        return Err(ApiError::Conflict {
            code: ConflictCode::DeviceInField,
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
        state
            .store
            .record(
                &actor,
                action,
                Some(&sn),
                &serde_json::json!({ "status": status }),
            )
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
        network: state.config.network.nvs(),
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

/// A manifest whose part paths are absolute download URLs, with its links.
fn with_urls(mut manifest: Manifest, base: &str) -> FirmwareRelease {
    let release = format!("{base}/ota/{}/v{}", manifest.name, manifest.version);
    for build in &mut manifest.builds {
        for part in &mut build.parts {
            part.path = format!("{release}/{}", part.path);
        }
    }
    let app_url = format!("{base}/ota/{}/v{}.bin", manifest.name, manifest.version);
    if !manifest.url.is_empty() {
        manifest.url = app_url.clone();
    }
    FirmwareRelease {
        app_url,
        manifest_url: format!("{release}/manifest.json"),
        manifest,
    }
}

/// A board's release (the latest unless `version` is given), with download links.
#[utoipa::path(get, path = "/manufacturing/firmware/{hw_type}/{hw_version}", tag = "firmware", security(("bearer" = [])),
    params(("hw_type" = String, Path, description = "Hardware type, e.g. BC"),
        ("hw_version" = String, Path, description = "Hardware version, e.g. 02"), VersionQuery),
    responses((status = 200, description = "The release", body = FirmwareRelease), ApiErrors))]
async fn firmware_manifest(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    Path((hw_type, hw_version)): Path<(String, String)>,
    Params(q): Params<VersionQuery>,
) -> Result<Json<FirmwareRelease>, ApiError> {
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

/// The latest application image of a device's board.
#[utoipa::path(get, path = "/manufacturing/devices/{sn}/firmware.bin", tag = "firmware", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")),
    responses((status = 200, description = "The application image", content_type = "application/octet-stream"), ApiErrors))]
async fn device_firmware(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let sn = serial(&sn)?;
    let record = state.store.device(sn.as_str()).await?;
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

/// The audit log, newest first (admins).
#[utoipa::path(get, path = "/manufacturing/audit", tag = "audit", security(("bearer" = [])),
    params(AuditParams),
    responses((status = 200, description = "Audit rows", body = AuditPage), ApiErrors))]
async fn audit(
    State(state): State<SharedState>,
    caller: Caller,
    Params(q): Params<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Role::Admin)?;
    let query = AuditQuery {
        subject: q.subject,
        action: q.action,
        before_id: q.before_id,
        limit: q.limit.unwrap_or(100),
    };
    let entries = state.store.audit(&query).await?;
    Ok(Json(AuditPage { entries }))
}

/// Dashboard figures.
#[utoipa::path(get, path = "/manufacturing/stats", tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "Counts, today's provisioning, recent activity", body = Stats), ApiErrors))]
async fn stats(State(state): State<SharedState>, caller: Caller) -> Result<Json<Stats>, ApiError> {
    caller.require(Role::Viewer)?;
    let mut stats = state.store.stats().await?;
    if caller.require(Role::Admin).is_err() {
        // Below admin, recent activity says who did what to which device, and nothing more:
        // no token rows, and no before/after states (they hold e-mail addresses and user ids).
        stats.recent.retain(|e| !e.action.starts_with("token."));
        for entry in &mut stats.recent {
            entry.before = None;
            entry.after = None;
        }
    }
    Ok(Json(stats))
}

/// A path segment that cannot leave its folder.
fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// An OTA file of a board: `latest.bin`, `latest.json`, `v{version}.bin`.
#[utoipa::path(get, path = "/ota/{board}/{file}", tag = "firmware", security(()),
    params(("board" = String, Path, description = "Board name"), ("file" = String, Path, description = "File name")),
    responses(
        (status = 200, description = "The file", content(("application/octet-stream"), ("application/json"))),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 503, description = "Too many downloads at once (Retry-After)", body = ErrorBody)))]
async fn ota_file(
    State(state): State<SharedState>,
    Path((board, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !safe_segment(&board) || !safe_segment(&file) {
        return Err(ApiError::NotFound("no such file".into()));
    }
    let path = releases::board_dir(&state.config.serve.ota_root, &board).join(&file);
    let path = inside_ota_root(&state.config.serve.ota_root, &path).await?;
    send_file(&state, &path, &file).await
}

/// `path` with every link resolved, when it stays inside the OTA root (resolved too): a link
/// that leads anywhere else (a tampered backup's `v9.9.9.bin -> /etc/...`) serves nothing.
async fn inside_ota_root(
    ota_root: &std::path::Path,
    path: &std::path::Path,
) -> Result<std::path::PathBuf, ApiError> {
    let not_found = || ApiError::NotFound("no such file".into());
    let root = tokio::fs::canonicalize(ota_root)
        .await
        .map_err(|_| not_found())?;
    let resolved = tokio::fs::canonicalize(path)
        .await
        .map_err(|_| not_found())?;
    if !resolved.starts_with(&root) {
        tracing::warn!(path = %path.display(), "an OTA link leads out of the OTA root: not served");
        return Err(not_found());
    }
    Ok(resolved)
}

/// A file of one release folder (a part of the bundle, or its manifest).
#[utoipa::path(get, path = "/ota/{board}/{release}/{file}", tag = "firmware", security(()),
    params(("board" = String, Path, description = "Board name"), ("release" = String, Path, description = "`v` and the version"),
        ("file" = String, Path, description = "File name")),
    responses(
        (status = 200, description = "The file", content(("application/octet-stream"), ("application/json"))),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 503, description = "Too many downloads at once (Retry-After)", body = ErrorBody)))]
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
    let path = inside_ota_root(&state.config.serve.ota_root, &path).await?;
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
