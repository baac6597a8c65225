//! Phone-app users: MQTT username = user id, password = an ID token (JWT, RS256) from the
//! configured issuer (Firebase by default), verified against the issuer's published keys (JWKS).
//!
//! Keys are fetched at start, refreshed periodically, and refreshed early (at most once a minute)
//! when a token names a key id we do not know, which is how issuers rotate keys.

use std::sync::RwLock;
use std::time::{Duration, Instant};
use vesper_core::config::{JwksSource, UsersConfig};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Why a user login was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("token header: {0}")]
    Header(jsonwebtoken::errors::Error),
    #[error("token algorithm {0:?} is not RS256")]
    Algorithm(Algorithm),
    #[error("token has no key id")]
    NoKeyId,
    #[error("unknown signing key `{0}`")]
    UnknownKey(String),
    #[error("token rejected: {0}")]
    Invalid(jsonwebtoken::errors::Error),
    #[error("token subject does not match the username")]
    WrongSubject,
    #[error("cannot load the issuer's keys: {0}")]
    Keys(String),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// Least time between two key refreshes caused by unknown key ids.
const REFRESH_FLOOR: Duration = Duration::from_secs(60);

/// Verifies user ID tokens.
pub struct UserVerifier {
    config: UsersConfig,
    keys: RwLock<JwkSet>,
    last_refresh: std::sync::Mutex<Option<Instant>>,
    client: reqwest::Client,
}

impl UserVerifier {
    /// A verifier with no keys yet; call [`UserVerifier::refresh`].
    pub fn new(config: UsersConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client builds");
        Self {
            config,
            keys: RwLock::new(JwkSet { keys: Vec::new() }),
            last_refresh: Default::default(),
            client,
        }
    }

    pub fn config(&self) -> &UsersConfig {
        &self.config
    }

    /// Loads the key set from its source.
    pub async fn refresh(&self) -> Result<usize, UserError> {
        *self.last_refresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let text = match &self.config.jwks {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| UserError::Keys(format!("{}: {e}", path.display())))?,
            JwksSource::Url(url) => {
                let response = self
                    .client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| UserError::Keys(format!("{url}: {e}")))?;
                if !response.status().is_success() {
                    return Err(UserError::Keys(format!(
                        "{url} answered {}",
                        response.status()
                    )));
                }
                response
                    .text()
                    .await
                    .map_err(|e| UserError::Keys(format!("{url}: {e}")))?
            }
        };
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| UserError::Keys(format!("not a JWK set: {e}")))?;
        let count = set.keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = set;
        Ok(count)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.find(kid)
            .and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
    }

    fn may_refresh(&self) -> bool {
        let last = *self.last_refresh.lock().unwrap_or_else(|e| e.into_inner());
        last.is_none_or(|t| t.elapsed() >= REFRESH_FLOOR)
    }

    /// Checks that `token` is a valid ID token of the user `username`.
    pub async fn verify(&self, username: &str, token: &str) -> Result<(), UserError> {
        let header = jsonwebtoken::decode_header(token).map_err(UserError::Header)?;
        if header.alg != Algorithm::RS256 {
            return Err(UserError::Algorithm(header.alg));
        }
        let kid = header.kid.ok_or(UserError::NoKeyId)?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None if self.may_refresh() => {
                self.refresh().await?;
                self.key(&kid)
                    .ok_or_else(|| UserError::UnknownKey(kid.clone()))?
            }
            None => return Err(UserError::UnknownKey(kid)),
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(UserError::Invalid)?;
        if data.claims.sub.is_empty() || data.claims.sub != username {
            return Err(UserError::WrongSubject);
        }
        Ok(())
    }
}
