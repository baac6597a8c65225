//! Bearer-token access to the admin API. The token's name is the audit actor.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, SharedState};
use vesper_store::{Role, TokenPrincipal};

/// The authenticated caller of an API route.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenPrincipal);

impl Caller {
    /// The caller's name (for the audit log) if it has at least `role`.
    /// A publisher's token (a firmware CI) or an admin's.
    pub fn require_publisher(&self) -> Result<&str, ApiError> {
        if matches!(self.0.role, Role::Publisher | Role::Admin) {
            Ok(&self.0.name)
        } else {
            Err(ApiError::Forbidden(Role::Publisher))
        }
    }

    pub fn require(&self, role: Role) -> Result<&str, ApiError> {
        if self.0.role >= role {
            Ok(&self.0.name)
        } else {
            Err(ApiError::Forbidden(role))
        }
    }
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned())
            .ok_or(ApiError::Unauthorized)?;
        let principal = state.store.authenticate_token(&token).await?;
        principal.map(Caller).ok_or(ApiError::Unauthorized)
    }
}
