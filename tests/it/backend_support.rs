//! A real backend per test: `vesper serve` in-process on port 0 with a fresh data dir, a real
//! JWKS server for user tokens, tokens of every role, and an HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

use vesper::config::Config;
use vesper::credentials::MasterSecret;
use vesper::goauth::{AuthParams, ParamsMode, ResponseMode};
use vesper::registry::Role;
use vesper::server::{self, Running, ServeOptions};

pub const SECRET: &str = "vesper-test-secret-0123456789abcdef";
pub const ISSUER: &str = "https://securetoken.google.com/vesper-test";
pub const AUDIENCE: &str = "vesper-test";
pub const SERVICE: &str = "vesper-backend";

/// Writes a config folder like `vesper init`, with user tokens checked against `jwks_url`.
pub fn write_config(dir: &Path, jwks_url: &str) -> PathBuf {
    write_config_with(dir, jwks_url, "")
}

/// The same, with `extra` TOML appended (e.g. a `[serve.broker]` table).
pub fn write_config_with(dir: &Path, jwks_url: &str, extra: &str) -> PathBuf {
    for (path, text) in vesper::config::EXAMPLE_TABLES {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
    let config = format!(
        "{}\n[serve.users]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_url = \"{jwks_url}\"\n{extra}\n",
        vesper::config::EXAMPLE
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Serves the test key set over real HTTP, as an issuer would.
pub async fn jwks_server() -> (String, tokio::task::JoinHandle<()>) {
    let jwks = std::fs::read_to_string(crate::support::root().join("tests/fixtures/jwt/jwks.json"))
        .unwrap();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || async move { ([("content-type", "application/json")], jwks) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/jwks"), task)
}

/// A signed user ID token; `key` is `test-key` (trusted) or `other-key` (not).
pub fn user_token(sub: &str, key: &str, claims: Value) -> String {
    let der = std::fs::read(crate::support::root().join(format!("tests/fixtures/jwt/{key}.der")))
        .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let now = jsonwebtoken::get_current_timestamp();
    let mut body =
        json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 3600 });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), claims.as_object()) {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    jsonwebtoken::encode(
        &header,
        &body,
        &jsonwebtoken::EncodingKey::from_rsa_der(&der),
    )
    .unwrap()
}

pub struct App {
    _dir: tempfile::TempDir,
    pub running: Option<Running>,
    pub api: String,
    pub auth: String,
    pub client: Client,
    pub admin: String,
    pub technician: String,
    pub viewer: String,
    _jwks: tokio::task::JoinHandle<()>,
}

async fn serve(dir: &Path, listen: SocketAddr, auth_listen: SocketAddr) -> Running {
    let config = vesper::config::load(&dir.join("config.toml")).unwrap();
    let options = ServeOptions {
        data_dir: dir.join("data"),
        listen,
        auth_listen,
    };
    let secret = MasterSecret::new(SECRET, "test").unwrap();
    let running = server::start(config, secret, &options).await.unwrap();
    if let Some(users) = &running.state.users {
        users.refresh().await.unwrap();
    }
    running
}

impl App {
    pub async fn start() -> App {
        Self::start_with("").await
    }

    /// A backend whose configuration has `extra` TOML appended.
    pub async fn start_with(extra: &str) -> App {
        Self::start_configured("", extra).await
    }

    /// A backend whose `[serve]` table has `serve_lines` added.
    pub async fn start_with_serve(serve_lines: &str) -> App {
        Self::start_configured(serve_lines, "").await
    }

    /// A backend whose configuration is the example with each `(from, to)` text replaced
    /// (each must be there) and `extra` TOML appended.
    pub async fn start_replacing(replacements: &[(&str, String)], extra: &str) -> App {
        Self::start_edited("", replacements, extra).await
    }

    async fn start_configured(serve_lines: &str, extra: &str) -> App {
        Self::start_edited(serve_lines, &[], extra).await
    }

    async fn start_edited(serve_lines: &str, replacements: &[(&str, String)], extra: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        let (jwks_url, jwks) = jwks_server().await;
        let path = write_config_with(dir.path(), &jwks_url, extra);
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in replacements {
            assert!(text.contains(from), "the example has no `{from}`");
            text = text.replacen(from, to, 1);
        }
        std::fs::write(&path, text).unwrap();
        // The example's own line for a key given here is dropped, so the key is not doubled.
        let keys: Vec<String> = serve_lines
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| format!("{} =", k.trim())))
            .collect();
        let config: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !keys.iter().any(|k| l.starts_with(k.as_str())))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(
            &path,
            config.replacen("[serve]\n", &format!("[serve]\n{serve_lines}"), 1),
        )
        .unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let running = serve(dir.path(), any, any).await;
        let registry = vesper::registry::Registry::open(&dir.path().join("data")).unwrap();
        let token = |name: &str, role| registry.create_token(name, role, "test").unwrap();
        let (admin, technician, viewer) = (
            token("admin-1", Role::Admin),
            token("bench-1", Role::Technician),
            token("viewer-1", Role::Viewer),
        );
        App {
            api: format!("http://{}", running.api_addr),
            auth: format!("http://{}", running.auth_addr),
            running: Some(running),
            client: Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap(),
            admin,
            technician,
            viewer,
            _dir: dir,
            _jwks: jwks,
        }
    }

    /// The folder of its config file; the registry is in `data/` inside it.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The registry file of this backend, on a connection of its own (as the CLI opens it).
    pub fn registry(&self) -> vesper::registry::Registry {
        vesper::registry::Registry::open(&self.dir().join("data")).unwrap()
    }

    pub fn config(&self) -> &Config {
        &self.running.as_ref().unwrap().state.config
    }

    pub async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }

    /// Stops the server, leaving its data dir; [`App::resume`] serves it again on the same ports.
    pub async fn pause(&mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }

    pub async fn resume(&mut self) {
        let addr = |url: &str| {
            url.trim_start_matches("http://")
                .parse::<SocketAddr>()
                .unwrap()
        };
        self.running = Some(serve(self._dir.path(), addr(&self.api), addr(&self.auth)).await);
    }

    /// Port of the MQTT auth listener.
    pub fn auth_port(&self) -> u16 {
        self.auth.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The backend's count of `/mqtt/auth/user` questions.
    pub async fn user_checks(&self) -> u64 {
        metric(
            &self.client,
            &self.auth,
            "vesper_auth_requests_total{route=\"user\"}",
        )
        .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.client
            .post(format!("{}{path}", self.api))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Starts a long poll (as the viewer) for `sn` to reach `status` within 20 s, in the
    /// background, so the test can cause the change meanwhile.
    pub fn wait_in_background(&self, sn: &str, status: &str) -> tokio::task::JoinHandle<Response> {
        let request = self
            .client
            .get(format!(
                "{}/manufacturing/devices/{sn}?wait={status}&timeout=20",
                self.api
            ))
            .bearer_auth(&self.viewer);
        tokio::spawn(async move { request.send().await.unwrap() })
    }

    /// POSTs `body` to `path` as `token`, expects a 409 and returns its body (with its `code`).
    pub async fn conflict(&self, path: &str, token: &str, body: Value) -> Value {
        let r = self.post(path, token, body).await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "{path}");
        r.json().await.unwrap()
    }

    /// Creates a batch as the technician and returns its serial numbers.
    pub async fn batch(&self, quantity: u32) -> (String, Vec<String>) {
        let r = self
            .post(
                "/manufacturing/batch",
                &self.technician,
                json!({ "board": "bellcore-v2", "quantity": quantity }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        let sns = body["serial_numbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        (body["batch_id"].as_str().unwrap().to_owned(), sns)
    }

    /// Asks the auth listener a go-auth question, sent and read as go-auth sends and reads it
    /// (`crate::goauth_wire`, not the product's encoder); returns the HTTP status and go-auth's
    /// reading.
    pub async fn ask(
        &self,
        route: &str,
        params: &AuthParams,
        params_mode: ParamsMode,
        mode: ResponseMode,
    ) -> (u16, Result<bool, String>) {
        let fields: Vec<(String, String)> = [
            ("username", params.username.clone()),
            ("password", params.password.clone()),
            ("clientid", params.clientid.clone()),
            ("topic", params.topic.clone()),
            ("acc", params.acc.map(|a| a.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect();
        let params_mode = match params_mode {
            ParamsMode::Json => "json",
            ParamsMode::Form => "form",
        };
        let (content_type, body) = crate::goauth_wire::body(params_mode, &fields);
        let r = self
            .client
            .post(format!(
                "{}/mqtt/auth/{route}?response_mode={mode}",
                self.auth
            ))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        let reading = crate::goauth_wire::go_auth_reads(&mode.to_string(), status, &body);
        (status, reading.as_result())
    }
}

/// One counter (`series`, with its labels) from a backend's `/metrics` on its auth listener
/// (`auth`, `http://HOST:PORT`).
pub async fn metric(client: &Client, auth: &str, series: &str) -> u64 {
    let text = client
        .get(format!("{auth}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

pub fn device_password(sn: &str) -> String {
    MasterSecret::new(SECRET, "test")
        .unwrap()
        .device_password(&sn.parse().unwrap())
        .expose()
        .to_owned()
}

pub fn service_password() -> String {
    MasterSecret::new(SECRET, "test")
        .unwrap()
        .service_password(SERVICE)
        .expose()
        .to_owned()
}
