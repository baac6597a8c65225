//! End-of-line test records over HTTP: a station posts each unit's record after its test
//! (`POST /manufacturing/devices/{sn}/tests`, technicians; the same record posted twice is
//! stored once, answered 200 instead of 201), and anyone with a token reads a unit's records
//! (`GET .../tests`), and a batch's report (`GET /manufacturing/batch/{id}/report?format=json|junit`).
//! The record is OpenHTF's (`vesper_core::eol::record`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use vesper_core::eol::record::{StoredTest, TestRecord};
use vesper_core::eol::report::{self, JsonReport, ReportFormat, ReportParams};
use vesper_core::model::Role;

use crate::api::{Body, Params, serial};
use crate::error::ApiErrors;
use crate::{ApiError, Caller, SharedState};

/// Stores a unit's test record.
#[utoipa::path(post, path = "/manufacturing/devices/{sn}/tests", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")), request_body = TestRecord,
    responses(
        (status = 201, description = "Stored", body = StoredTest),
        (status = 200, description = "This record (unit, station, start time) was stored before", body = StoredTest),
        ApiErrors))]
pub async fn record_test(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
    Body(record): Body<TestRecord>,
) -> Result<(StatusCode, Json<StoredTest>), ApiError> {
    let actor = caller.require(Role::Technician)?.to_owned();
    let sn = serial(&sn)?;
    let (stored, new) = state
        .store
        .record_test(sn.as_str(), &record, &actor)
        .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)))
}

/// A unit's test records, oldest first.
#[utoipa::path(get, path = "/manufacturing/devices/{sn}/tests", tag = "devices", security(("bearer" = [])),
    params(("sn" = String, Path, description = "Serial number")),
    responses((status = 200, description = "The unit's records, oldest first", body = Vec<StoredTest>), ApiErrors))]
pub async fn test_records(
    State(state): State<SharedState>,
    caller: Caller,
    Path(sn): Path<String>,
) -> Result<Json<Vec<StoredTest>>, ApiError> {
    caller.require(Role::Viewer)?;
    let sn = serial(&sn)?;
    Ok(Json(state.store.test_records(sn.as_str()).await?))
}

/// A batch's end-of-line report: the summary and its records (JSON), or JUnit XML.
#[utoipa::path(get, path = "/manufacturing/batch/{id}/report", tag = "batches", security(("bearer" = [])),
    params(("id" = String, Path, description = "Batch id (B-0001)"), ReportParams),
    responses(
        (status = 200, description = "format=json: the summary and every record; format=junit: JUnit XML",
            content((JsonReport = "application/json"), (String = "application/xml"))),
        ApiErrors))]
pub async fn batch_report(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<ReportParams>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let records: Vec<TestRecord> = state
        .store
        .batch_test_records(&id)
        .await?
        .into_iter()
        .map(|t| t.record)
        .collect();
    Ok(match q.format.unwrap_or_default() {
        ReportFormat::Json => Json(JsonReport {
            summary: report::summarize(&id, &records),
            records,
        })
        .into_response(),
        ReportFormat::Junit => (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            report::junit(&id, &records),
        )
            .into_response(),
    })
}
