//! One error type for the API; every failure becomes a JSON answer with the right status.
//! Internal errors are logged and never shown.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

use crate::releases::FirmwareError;
use vesper_core::wire::{ConflictCode, ErrorBody};
use vesper_store::{RegistryError, Role};

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "missing or invalid bearer token (create one with `vesper token create NAME --role ROLE`)"
    )]
    Unauthorized,
    #[error("this needs the {0} role")]
    Forbidden(Role),
    /// A webhook whose signature is missing or does not match the shared secret.
    #[error("the webhook signature is missing or wrong; nothing was run")]
    BadSignature,
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with the record's state; `code` names the clash for programs.
    #[error("{message}")]
    Conflict { code: ConflictCode, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("the registry is unavailable")]
    Unavailable,
    /// Too many downloads at once; the client should come back (`Retry-After`).
    #[error("too many downloads at once; retry in a few seconds")]
    Busy,
    /// This token holds as many event streams and long polls as it may (`Retry-After`).
    #[error(
        "this token holds too many event streams and long polls at once; close one or retry later"
    )]
    TooManyStreams,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::BadSignature => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable | ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.to_string(),
            status: status.as_u16(),
            code: match &self {
                ApiError::Conflict { code, .. } => Some(*code),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Busy | ApiError::TooManyStreams) {
            response
                .headers_mut()
                .insert("retry-after", "5".parse().expect("header value"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert("www-authenticate", "Bearer".parse().expect("header value"));
        }
        response
    }
}

/// The `code` of a registry conflict in an API answer (the station tells a finished batch
/// from a refused claim by it, not by the wording of the message).
fn conflict_code(e: &RegistryError) -> ConflictCode {
    match e {
        RegistryError::IllegalTransition { .. } => ConflictCode::IllegalTransition,
        RegistryError::Revoked(_) => ConflictCode::Revoked,
        RegistryError::MacInUse { .. } => ConflictCode::MacInUse,
        RegistryError::TokenExists(_) => ConflictCode::TokenExists,
        RegistryError::BatchDone { .. } => ConflictCode::BatchDone,
        RegistryError::AlreadyFlashed { .. } => ConflictCode::AlreadyFlashed,
        RegistryError::ClaimedElsewhere { .. } => ConflictCode::ClaimedElsewhere,
        _ => ConflictCode::Conflict,
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NoDevice(_) | RegistryError::NoBatch(_) | RegistryError::NoToken(_) => {
                ApiError::NotFound(e.to_string())
            }
            RegistryError::IllegalTransition { .. }
            | RegistryError::Revoked(_)
            | RegistryError::MacInUse { .. }
            | RegistryError::TokenExists(_)
            | RegistryError::BatchDone { .. }
            | RegistryError::AlreadyFlashed { .. }
            | RegistryError::ClaimedElsewhere { .. } => ApiError::Conflict {
                code: conflict_code(&e),
                message: e.to_string(),
            },
            RegistryError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            RegistryError::Sqlite(_)
            | RegistryError::Postgres(_)
            | RegistryError::Pool(_)
            | RegistryError::Task(_)
            | RegistryError::DataDir { .. }
            | RegistryError::SchemaTooNew { .. } => {
                tracing::error!(error = %e, "registry failure");
                ApiError::Unavailable
            }
        }
    }
}

impl From<FirmwareError> for ApiError {
    fn from(e: FirmwareError) -> Self {
        match e {
            FirmwareError::NoRelease { .. } => ApiError::NotFound(e.to_string()),
            FirmwareError::BadVersion(_) => ApiError::BadRequest(e.to_string()),
            other => {
                tracing::error!(error = %other, "firmware store failure");
                ApiError::Internal
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

/// The error answers every authenticated route may give, for the OpenAPI document.
pub struct ApiErrors;

impl utoipa::IntoResponses for ApiErrors {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        [
            ("400", "Bad input"),
            ("401", "No or invalid token"),
            ("403", "Role too low"),
            ("404", "Not found"),
            ("409", "Conflict with the record's state; `code` says which"),
            (
                "429",
                "Long polls and event streams only: the token holds too many at once (Retry-After)",
            ),
            (
                "503",
                "Registry unavailable, or too many downloads (Retry-After)",
            ),
        ]
        .into_iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build();
            (status.to_owned(), RefOr::T(response))
        })
        .collect()
    }
}
