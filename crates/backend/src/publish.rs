//! Release upload from a firmware CI: `POST /manufacturing/firmware/{board}/{version}` takes an
//! ESP Web Tools manifest and one file per part (multipart), and publishes them exactly as
//! `vesper firmware publish` does (same checks, same whole-or-nothing write), with a
//! `publisher` token (or an admin's). Replaces the seed's `scripts/build_and_upload.sh`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;

use crate::releases::{self, FirmwareError, Manifest, PartSpec};
use crate::{ApiError, Caller, SharedState};
use vesper_core::firmware::{BundleManifest, BundlePart, sha256_hex};
use vesper_core::wire::ConflictCode;

/// Most bytes of one upload (every part together).
pub const MAX_UPLOAD: usize = 64 * 1024 * 1024;
/// Most parts in a release.
const MAX_PARTS: usize = 16;

/// A part's file name: one plain name, no folders.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Publishes an uploaded release.
#[utoipa::path(post, path = "/manufacturing/firmware/{board}/{version}", tag = "firmware", security(("bearer" = [])),
    params(("board" = String, Path, description = "Board name"), ("version" = String, Path, description = "Release version, e.g. 1.0.1")),
    request_body(content = String, content_type = "multipart/form-data",
        description = "A field `manifest` (an ESP Web Tools manifest: builds[].parts[] with path and offset; size and sha256 checked when present) and one file field per part, named by the part's path"),
    responses(
        (status = 201, description = "The release is published (body: its manifest)", body = Manifest),
        (status = 400, description = "A part is missing, damaged or does not fit the board's partition table", body = vesper_core::wire::ErrorBody),
        (status = 403, description = "Needs a publisher or admin token", body = vesper_core::wire::ErrorBody),
        (status = 404, description = "No such board", body = vesper_core::wire::ErrorBody),
        (status = 409, description = "This version exists already", body = vesper_core::wire::ErrorBody),
    ))]
pub async fn upload(
    State(state): State<SharedState>,
    caller: Caller,
    Path((board, version)): Path<(String, String)>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Manifest>), ApiError> {
    let actor = caller.require_publisher()?.to_owned();
    // Every refusal is a JSON error, also a body that is not multipart at all.
    let mut form = form
        .map_err(|e| ApiError::BadRequest(format!("not a multipart upload: {}", e.body_text())))?;
    let board = state
        .config
        .board(&board)
        .map_err(|e| ApiError::NotFound(e.to_string()))?
        .clone();
    let mut manifest = None;
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("not a multipart upload: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::BadRequest(format!("field `{name}`: {e}")))?;
        if name == "manifest" {
            manifest = Some(
                serde_json::from_slice::<BundleManifest>(&bytes)
                    .map_err(|e| ApiError::BadRequest(format!("manifest: {e}")))?,
            );
        } else if !plain_name(&name) {
            return Err(ApiError::BadRequest(format!(
                "`{name}` is not a part's file name"
            )));
        } else if files.len() >= MAX_PARTS {
            return Err(ApiError::BadRequest(format!("at most {MAX_PARTS} parts")));
        } else {
            files.insert(name, bytes.to_vec());
        }
    }
    let manifest = manifest.ok_or_else(|| ApiError::BadRequest("no `manifest` field".into()))?;
    if manifest.version.as_deref().is_some_and(|v| v != version) {
        return Err(ApiError::BadRequest(format!(
            "the manifest says version {}, the URL {version}",
            manifest.version.unwrap_or_default()
        )));
    }
    let parts: Vec<&BundlePart> = match manifest.build_for(board.chip) {
        Some(build) => build.parts.iter().collect(),
        // One build without a chipFamily: taken as the board's.
        None if manifest.builds.len() == 1 && manifest.builds[0].chip_family.is_none() => {
            manifest.builds[0].parts.iter().collect()
        }
        None => {
            return Err(ApiError::BadRequest(format!(
                "the manifest has no build for {}",
                vesper_core::firmware::chip_family(board.chip)
            )));
        }
    };
    let staging = tempfile::tempdir().map_err(|_| ApiError::Internal)?;
    let mut specs = Vec::with_capacity(parts.len());
    for part in parts {
        let name = part.path.rsplit('/').next().unwrap_or(&part.path);
        let bytes = files.get(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "part {name} is in the manifest but was not uploaded"
            ))
        })?;
        if part.size.is_some_and(|size| size != bytes.len() as u64) {
            return Err(ApiError::BadRequest(format!(
                "part {name}: {} bytes uploaded, the manifest says {}",
                bytes.len(),
                part.size.unwrap_or_default()
            )));
        }
        if part
            .sha256
            .as_deref()
            .is_some_and(|sum| !sum.eq_ignore_ascii_case(&sha256_hex(bytes)))
        {
            return Err(ApiError::BadRequest(format!(
                "part {name} does not match the manifest's sha256"
            )));
        }
        let path = staging.path().join(name);
        std::fs::write(&path, bytes).map_err(|_| ApiError::Internal)?;
        specs.push(PartSpec {
            path,
            offset: Some(part.offset.0),
        });
    }
    let ota_root = state.config.serve.ota_root.clone();
    let published = tokio::task::spawn_blocking(move || {
        let published = releases::publish(&ota_root, &board, &version, &specs);
        drop(staging);
        published.map(|m| (m, board.name))
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    let (manifest, board_name) = published.map_err(|e| match e {
        FirmwareError::Exists { .. } => ApiError::Conflict {
            code: ConflictCode::Conflict,
            message: e.to_string(),
        },
        // The server's own files: logged here, never shown (their paths are the server's).
        FirmwareError::Read { .. }
        | FirmwareError::Write { .. }
        | FirmwareError::Manifest { .. } => {
            tracing::error!(error = %e, "cannot write an uploaded release");
            ApiError::Internal
        }
        other => ApiError::BadRequest(other.to_string()),
    })?;
    let subject = format!("{board_name}/v{}", manifest.version);
    let record = serde_json::to_value(&manifest).map_err(|_| ApiError::Internal)?;
    state
        .store
        .record(&actor, "firmware.publish", Some(&subject), &record)
        .await?;
    Ok((StatusCode::CREATED, Json(manifest)))
}
