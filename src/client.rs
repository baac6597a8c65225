//! A typed client of the backend's API, for the station and the command line.

use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

/// Environment variable holding the bearer token (preferred over the config file).
pub const TOKEN_ENV: &str = "VESPER_TOKEN";

/// Errors talking to the backend.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the backend at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the backend answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error(
        "no API token: set {TOKEN_ENV} or backend.token (create one with `vesper token create NAME --role technician`)"
    )]
    NoToken,
    #[error("the backend sent something unexpected: {0}")]
    Body(String),
}

/// The backend's API.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client builds");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    /// From the configuration; the token comes from `VESPER_TOKEN`, else `backend.token`.
    pub fn from_config(config: &Config) -> Result<Self, ClientError> {
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| config.backend.token.clone())
            .ok_or(ClientError::NoToken)?;
        Ok(Self::new(&config.backend.url, &token))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|e| {
            ClientError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["error"].as_str().unwrap_or("no details").to_owned();
        Err(ClientError::Status { status, message })
    }

    /// GET a JSON document.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(self.http.get(&url), &url).await?;
        response
            .json()
            .await
            .map_err(|e| ClientError::Body(e.to_string()))
    }

    /// POST a JSON body, expecting JSON back.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(self.http.post(&url).json(body), &url).await?;
        response
            .json()
            .await
            .map_err(|e| ClientError::Body(e.to_string()))
    }

    /// GET raw bytes (NVS images, firmware).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(self.http.get(&url), &url).await?;
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::Body(e.to_string()))
    }

    /// A batch with its devices.
    pub async fn batch(&self, id: &str) -> Result<Value, ClientError> {
        self.get_json(&format!("/manufacturing/batch/{id}")).await
    }
}

/// The label data of a batch answer (`GET /manufacturing/batch/{id}`).
pub fn batch_labels(batch: &Value) -> Result<Vec<crate::labels::LabelData>, ClientError> {
    let id = batch["batch_id"].as_str().map(str::to_owned);
    batch["devices"]
        .as_array()
        .ok_or_else(|| ClientError::Body("no devices in the batch".into()))?
        .iter()
        .map(|d| {
            let text = |k: &str| {
                d[k].as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ClientError::Body(format!("device without {k}")))
            };
            Ok(crate::labels::LabelData {
                serial_number: text("serial_number")?,
                hw_type: text("hw_type")?,
                hw_version: text("hw_version")?,
                batch: id.clone(),
                date: text("created_at")?.chars().take(10).collect(),
            })
        })
        .collect()
}
