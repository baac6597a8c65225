//! A typed client of the backend's API, for the station and the command line.
//!
//! Depends on `vesper-core` only (the model and the wire types the server answers with); it
//! knows nothing of the server's storage or the station's screens.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use vesper_core::config::Config;
use vesper_core::model::{
    Batch, BatchSummary, Device, DeviceFilter, DevicePage, FailureReport, FlashReport, Stats,
    Status,
};
use vesper_core::wire::{
    AssignRequest, BatchAnswer, BatchList, BatchRequest, ClaimRequest, ErrorBody, ReleaseRequest,
    StatusRequest,
};
pub use vesper_core::wire::{ConflictCode, FirmwareRelease, Health};

/// Environment variable holding the bearer token (preferred over the config file).
pub const TOKEN_ENV: &str = "VESPER_TOKEN";

/// Errors talking to the backend.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the backend at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the backend answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// The conflict's `code` (409 answers), e.g. `batch_done`.
        code: Option<ConflictCode>,
    },
    #[error(
        "no API token: set {TOKEN_ENV} or backend.token (create one with `vesper token create NAME --role technician`)"
    )]
    NoToken,
    #[error("the backend sent something unexpected: {0}")]
    Body(String),
}

impl ClientError {
    /// What went wrong in words for the operator: the backend's own message when it answered.
    pub fn reason(&self) -> String {
        match self {
            ClientError::Status { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The backend refused because it has the conflict `code` (see the API's error `code`).
    pub fn is_conflict(&self, code: ConflictCode) -> bool {
        matches!(self, ClientError::Status { code: Some(c), .. } if *c == code)
    }
}

/// The backend's API.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    /// `base` parsed, for the origin the token may go to (`None`: not a URL; no token goes out).
    base_url: Option<reqwest::Url>,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client builds");
        let base = base.trim_end_matches('/').to_owned();
        Self {
            base_url: reqwest::Url::parse(&base).ok(),
            base,
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

    /// Whether `url` is on the backend's own origin (scheme, host and port): the only place the
    /// bearer token goes. A manifest may name parts anywhere (a CDN); they get no token.
    fn same_origin(&self, url: &str) -> bool {
        match (&self.base_url, reqwest::Url::parse(url)) {
            (Some(base), Ok(url)) => base.origin() == url.origin(),
            _ => false,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let request = if self.same_origin(url) {
            request.bearer_auth(&self.token)
        } else {
            request
        };
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: Option<ErrorBody> = response.json().await.ok();
        Err(ClientError::Status {
            status,
            message: body
                .as_ref()
                .map_or_else(|| "no details".to_owned(), |b| b.error.clone()),
            code: body.and_then(|b| b.code),
        })
    }

    /// GET raw bytes (NVS images, firmware).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        bytes(self.send(self.http.get(&url), &url).await?).await
    }

    /// GET a JSON document as a typed value.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        typed(self.send(self.http.get(&url), &url).await?).await
    }

    /// POST a typed JSON body, expecting a typed value back.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        typed(self.send(self.http.post(&url).json(body), &url).await?).await
    }

    /// `GET /healthz`: registry and broker state.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/healthz").await
    }

    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.get("/manufacturing/stats").await
    }

    /// The newest batches first.
    pub async fn batches(&self, limit: u32) -> Result<Vec<BatchSummary>, ClientError> {
        let list: BatchList = self
            .get(&format!("/manufacturing/batches?limit={limit}"))
            .await?;
        Ok(list.batches)
    }

    pub async fn batch_record(&self, id: &str) -> Result<Batch, ClientError> {
        let answer: BatchAnswer = self
            .get(&format!("/manufacturing/batch/{}", segment(id)))
            .await?;
        Ok(answer.batch)
    }

    pub async fn create_batch(&self, order: &BatchOrder) -> Result<Batch, ClientError> {
        let request = BatchRequest {
            board: Some(order.board.clone()),
            hw_type: None,
            hw_version: None,
            quantity: order.quantity,
            subscription_plan: order.subscription_plan.clone(),
            available_outputs: order.available_outputs,
        };
        let answer: BatchAnswer = self.post("/manufacturing/batch", &request).await?;
        Ok(answer.batch)
    }

    /// One page of the device list.
    pub async fn devices(&self, filter: &DeviceFilter) -> Result<DevicePage, ClientError> {
        let query = serde_urlencoded::to_string(filter)
            .map_err(|e| ClientError::Body(format!("cannot encode the filter: {e}")))?;
        self.get(&format!("/manufacturing/devices?{query}")).await
    }

    pub async fn device(&self, sn: &str) -> Result<Device, ClientError> {
        self.get(&format!("/manufacturing/devices/{}", segment(sn)))
            .await
    }

    /// Waits (long poll) until the device reaches `status`, or `timeout` passes; `true` when it did.
    pub async fn wait_for_status(
        &self,
        sn: &str,
        status: Status,
        timeout: Duration,
    ) -> Result<(bool, Device), ClientError> {
        let url = format!(
            "{}/manufacturing/devices/{}?wait={}&timeout={}",
            self.base,
            segment(sn),
            status.as_str(),
            timeout.as_secs().max(1)
        );
        let request = self
            .http
            .get(&url)
            .timeout(timeout + Duration::from_secs(15));
        let device: Device = typed(self.send(request, &url).await?).await?;
        Ok((
            device.status >= status && device.status != Status::Revoked,
            device,
        ))
    }

    /// POSTs `body` to one of a device's action routes.
    async fn device_post<B: Serialize>(
        &self,
        sn: &str,
        action: &str,
        body: &B,
    ) -> Result<Device, ClientError> {
        self.post(
            &format!("/manufacturing/devices/{}/{action}", segment(sn)),
            &body,
        )
        .await
    }

    /// Takes the batch's next device to flash for `station` (a bench slot).
    pub async fn claim_next(&self, batch: &str, station: &str) -> Result<Device, ClientError> {
        self.post(
            &format!("/manufacturing/batch/{}/claim", segment(batch)),
            &claim_request(station),
        )
        .await
    }

    /// Takes one device for `station` (the wizard's pick).
    pub async fn claim(&self, sn: &str, station: &str) -> Result<Device, ClientError> {
        self.device_post(sn, "claim", &claim_request(station)).await
    }

    /// Gives a claimed device back to its batch.
    pub async fn release(&self, sn: &str, station: &str) -> Result<Device, ClientError> {
        let release = ReleaseRequest {
            station: station.to_owned(),
        };
        self.device_post(sn, "release", &release).await
    }

    /// Records a failed flash or verification (repeats raise the backend's alert).
    pub async fn failed(&self, sn: &str, report: &FailureReport) -> Result<Device, ClientError> {
        self.device_post(sn, "failed", report).await
    }

    /// Stores a unit's end-of-line test record (the same record twice is stored once).
    pub async fn record_test(
        &self,
        sn: &str,
        record: &vesper_core::eol::record::TestRecord,
    ) -> Result<vesper_core::eol::record::StoredTest, ClientError> {
        self.post(
            &format!("/manufacturing/devices/{}/tests", segment(sn)),
            record,
        )
        .await
    }

    /// A unit's end-of-line test records, oldest first.
    pub async fn test_records(
        &self,
        sn: &str,
    ) -> Result<Vec<vesper_core::eol::record::StoredTest>, ClientError> {
        self.get(&format!("/manufacturing/devices/{}/tests", segment(sn)))
            .await
    }

    /// A batch's end-of-line report as the backend writes it (JSON or JUnit XML text).
    pub async fn batch_report(
        &self,
        batch: &str,
        format: vesper_core::eol::report::ReportFormat,
    ) -> Result<String, ClientError> {
        let format = match format {
            vesper_core::eol::report::ReportFormat::Json => "json",
            vesper_core::eol::report::ReportFormat::Junit => "junit",
        };
        let url = format!(
            "{}/manufacturing/batch/{}/report?format={format}",
            self.base,
            segment(batch)
        );
        self.send(self.http.get(&url), &url)
            .await?
            .text()
            .await
            .map_err(|e| ClientError::Body(e.to_string()))
    }

    /// Records a flash: chip, MAC, firmware, station.
    pub async fn flashed(&self, sn: &str, report: &FlashReport) -> Result<Device, ClientError> {
        self.device_post(sn, "flashed", report).await
    }

    pub async fn set_status(&self, sn: &str, status: Status) -> Result<Device, ClientError> {
        self.device_post(sn, "status", &StatusRequest { status })
            .await
    }

    pub async fn assign(&self, sn: &str, email: &str) -> Result<Device, ClientError> {
        let assign = AssignRequest {
            email: email.to_owned(),
            name: None,
        };
        self.device_post(sn, "assign", &assign).await
    }

    /// The device's NVS image, built by the backend (the master secret never leaves it).
    pub async fn nvs_image(&self, sn: &str) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!("/manufacturing/devices/{}/nvs.bin", segment(sn)))
            .await
    }

    /// The labels of a batch as a PDF.
    pub async fn labels_pdf(&self, batch: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!(
            "{}/manufacturing/batch/{}/labels",
            self.base,
            segment(batch)
        );
        bytes(self.send(self.http.post(&url), &url).await?).await
    }

    /// The newest release of a board's firmware, with absolute download URLs.
    pub async fn firmware(
        &self,
        hw_type: &str,
        hw_version: &str,
    ) -> Result<FirmwareRelease, ClientError> {
        self.get(&format!(
            "/manufacturing/firmware/{}/{}",
            segment(hw_type),
            segment(hw_version)
        ))
        .await
    }

    /// Downloads a file by absolute URL (firmware parts); the token goes only to the backend's
    /// own origin.
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, ClientError> {
        bytes(self.send(self.http.get(url), url).await?).await
    }
}

/// A new batch of a named board (the station's order; sent as a `BatchRequest`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchOrder {
    pub board: String,
    pub quantity: u32,
    pub subscription_plan: String,
    pub available_outputs: i64,
}

impl BatchOrder {
    /// `quantity` devices of `board` on the default plan and outputs.
    pub fn of(board: &str, quantity: u32) -> BatchOrder {
        BatchOrder {
            board: board.to_owned(),
            quantity,
            subscription_plan: vesper_core::model::DEFAULT_PLAN.into(),
            available_outputs: vesper_core::model::DEFAULT_OUTPUTS,
        }
    }
}

/// A claim for `station` with the backend's default lease.
fn claim_request(station: &str) -> ClaimRequest {
    ClaimRequest {
        station: station.to_owned(),
        lease_seconds: None,
    }
}

/// The answer's body, whole.
async fn bytes(response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| ClientError::Body(e.to_string()))
}

/// The answer's JSON body as `T`.
async fn typed<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
    response
        .json()
        .await
        .map_err(|e| ClientError::Body(e.to_string()))
}

/// A path segment made safe for a URL (serial numbers and batch names are already safe; this
/// keeps a scanned or typed oddity from changing the route).
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
