//! `vesper doctor`: checks a deployment end to end, one line per check, each failure with how to
//! fix it. It reads what `vesper serve` reads (the config, the master secret, the data folder)
//! and asks what the world asks (the listeners, the broker, the public address).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use vesper_core::config::Config;
use vesper_core::credentials::MasterSecret;

/// How long one network check may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Free space below which the data folder fails (bytes).
const MIN_FREE: u64 = 500_000_000;
/// A certificate closer to its end than this fails.
const MIN_CERT_DAYS: i64 = 14;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Fail,
    /// Not configured here (no broker, no public address).
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// How to fix a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// Runs every check against a loaded configuration (`config_error` when it did not load).
pub async fn run(config: Result<Config, String>, data_dir: Option<PathBuf>) -> Vec<Check> {
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            return vec![Check::fail(
                "config",
                e,
                "fix the key it names, then `vesper config check`",
            )];
        }
    };
    let data_dir = data_dir.unwrap_or_else(|| config.serve.data_dir.clone());
    let mut checks = vec![Check::ok(
        "config",
        format!(
            "{} is valid ({} boards)",
            config.path.display(),
            config.boards.len()
        ),
    )];
    let (secret_check, secret) = master_secret(&config);
    checks.push(secret_check);
    checks.push(webhook_secret(&config));
    checks.push(data_folder(&data_dir));
    checks.push(registry(&data_dir));
    let ota_root = ota_root(&config, &data_dir);
    checks.push(releases(&config, &ota_root));
    let health = api(&config).await;
    checks.push(health.0);
    checks.push(auth(&config).await);
    checks.push(broker_commands(&config).await);
    checks.push(broker(&config, secret.as_ref()).await);
    checks.push(listener(&config, health.1.as_ref()));
    checks.extend(public(&config, &ota_root).await);
    checks
}

fn master_secret(config: &Config) -> (Check, Option<MasterSecret>) {
    const NAME: &str = "master secret";
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|d| PathBuf::from(d).join(vesper_backend::SECRET_CREDENTIAL));
    let file = config
        .serve
        .secret_file
        .clone()
        .or(credential.filter(|p| p.exists()));
    let Some(path) = file else {
        return match MasterSecret::from_env_value(std::env::var_os(
            vesper_core::credentials::SECRET_ENV,
        )) {
            Ok(secret) => (
                Check::ok(NAME, "from MQTT_SECRET, at least 32 bytes"),
                Some(secret),
            ),
            Err(e) => (
                Check::fail(
                    NAME,
                    e.to_string(),
                    "set serve.secret_file (or LoadCredential=mqtt_secret:... in the unit); make one with `vesper mqtt secret new`",
                ),
                None,
            ),
        };
    };
    let shown = path.display();
    let mode = match std::fs::metadata(&path) {
        Ok(m) => std::os::unix::fs::PermissionsExt::mode(&m.permissions()),
        Err(e) => {
            return (
                Check::fail(
                    NAME,
                    format!("cannot read {shown}: {e}"),
                    format!("create it: vesper mqtt secret new > {shown} && chmod 600 {shown}"),
                ),
                None,
            );
        }
    };
    if mode & 0o077 != 0 {
        return (
            Check::fail(
                NAME,
                format!("{shown} can be read by others (mode {:o})", mode & 0o777),
                format!("chmod 600 {shown} (and chown it to the service's user)"),
            ),
            None,
        );
    }
    match vesper_backend::read_secret_file(&path) {
        Ok(secret) => (
            Check::ok(NAME, format!("{shown}: owner-only, at least 32 bytes")),
            Some(secret),
        ),
        Err(e) => (
            Check::fail(
                NAME,
                e.to_string(),
                "make a new one with `vesper mqtt secret new` (every device password changes with it)",
            ),
            None,
        ),
    }
}

/// The deploy webhook's secret, as `vesper serve` reads it: at least 32 bytes, owner-only.
fn webhook_secret(config: &Config) -> Check {
    const NAME: &str = "webhook secret";
    let Some(path) = config
        .deploy
        .secret_file
        .as_ref()
        .filter(|_| config.deploy.enabled())
    else {
        return Check::skip(
            NAME,
            "the deploy webhook is off ([deploy] secret_file and command)",
        );
    };
    let shown = path.display();
    let fix = format!(
        "openssl rand -hex 32 > {shown} && chmod 600 {shown}, and give the forge the same secret"
    );
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Check::fail(
                NAME,
                format!("{shown} can be read by others (mode {:o})", mode & 0o777),
                format!("chmod 600 {shown}"),
            );
        }
    }
    match vesper_backend::hooks::read_secret(path) {
        Ok(_) => Check::ok(NAME, format!("{shown}: owner-only, at least 32 bytes")),
        Err(e) => Check::fail(NAME, e.to_string(), fix),
    }
}

fn data_folder(data_dir: &Path) -> Check {
    const NAME: &str = "data folder";
    let probe = data_dir.join(".doctor-write-test");
    if let Err(e) = std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe)) {
        return Check::fail(
            NAME,
            format!("cannot write in {}: {e}", data_dir.display()),
            format!(
                "create it and give it to the service's user: install -d -o vesper -g vesper {}",
                data_dir.display()
            ),
        );
    }
    match fs4::available_space(data_dir) {
        Ok(free) if free < MIN_FREE => Check::fail(
            NAME,
            format!("{}: only {} MB free", data_dir.display(), free / 1_000_000),
            "free space on that disk or move the data folder (serve.data_dir)",
        ),
        Ok(free) => Check::ok(
            NAME,
            format!(
                "{}: writable, {} MB free",
                data_dir.display(),
                free / 1_000_000
            ),
        ),
        Err(e) => Check::fail(
            NAME,
            format!("cannot read the free space of {}: {e}", data_dir.display()),
            "check the mount",
        ),
    }
}

fn registry(data_dir: &Path) -> Check {
    const NAME: &str = "registry";
    let db = data_dir.join(vesper_store::DB_FILE);
    if !db.exists() {
        return Check::fail(
            NAME,
            format!("no registry at {}", db.display()),
            "start `vesper serve` once (it creates it), or restore a backup with `vesper restore`",
        );
    }
    match vesper_store::inspect(&db) {
        Ok((integrity, devices, batches)) if integrity == "ok" => Check::ok(
            NAME,
            format!("integrity_check ok; {devices} devices in {batches} batches"),
        ),
        Ok((integrity, ..)) => Check::fail(
            NAME,
            format!("integrity_check: {integrity}"),
            "stop the backend and restore the latest backup (`vesper restore`)",
        ),
        Err(e) => Check::fail(NAME, e.to_string(), "check the file's owner and mode"),
    }
}

/// The OTA root: `serve.ota_root`, or `ota/` in the data folder being checked.
fn ota_root(config: &Config, data_dir: &Path) -> PathBuf {
    if config.serve.ota_root == config.serve.data_dir.join("ota") {
        data_dir.join("ota")
    } else {
        config.serve.ota_root.clone()
    }
}

/// Each board's partition table equals the one in its latest published release.
fn releases(config: &Config, ota_root: &Path) -> Check {
    const NAME: &str = "releases";
    let mut agree = Vec::new();
    for board in &config.boards {
        let Ok(manifest) = vesper_backend::releases::manifest(ota_root, &board.name, None) else {
            continue;
        };
        let table = board.table.to_bin().unwrap_or_default();
        let dir = vesper_backend::releases::board_dir(ota_root, &board.name)
            .join(format!("v{}", manifest.version));
        let published = manifest
            .builds
            .iter()
            .flat_map(|b| &b.parts)
            .find(|p| p.offset == vesper_core::partitions::TABLE_OFFSET)
            .and_then(|p| std::fs::read(dir.join(&p.path)).ok());
        match published {
            Some(bytes) if bytes == table => {
                agree.push(format!("{} v{}", board.name, manifest.version))
            }
            _ => {
                return Check::fail(
                    NAME,
                    format!(
                        "board {}: {} differs from the partition table of its latest release v{}",
                        board.name,
                        board.partition_table.display(),
                        manifest.version
                    ),
                    format!(
                        "publish a release built for this table (`vesper firmware publish {} VERSION ...`) or fix boards.partition_table",
                        board.name
                    ),
                );
            }
        }
    }
    if agree.is_empty() {
        Check::skip(NAME, "no release published yet")
    } else {
        Check::ok(
            NAME,
            format!("partition tables agree with {}", agree.join(", ")),
        )
    }
}

/// A listen address as a client reaches it (0.0.0.0 is reached on loopback).
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("an HTTP client")
}

async fn api(config: &Config) -> (Check, Option<serde_json::Value>) {
    const NAME: &str = "api";
    let url = format!("http://{}/healthz", reachable(config.serve.listen));
    match http().get(&url).send().await {
        Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
            Ok(health) => (
                Check::ok(
                    NAME,
                    format!(
                        "{url} answers: registry {}",
                        health["registry"].as_str().unwrap_or("?")
                    ),
                ),
                Some(health),
            ),
            Err(e) => (
                Check::fail(
                    NAME,
                    format!("{url}: {e}"),
                    "is another program on serve.listen?",
                ),
                None,
            ),
        },
        Ok(r) => (
            Check::fail(
                NAME,
                format!("{url} answers {}", r.status()),
                "read the backend's log: journalctl -u vesper-serve",
            ),
            None,
        ),
        Err(e) => (
            Check::fail(
                NAME,
                format!("{url}: {}", error_text(&e)),
                "start it: systemctl start vesper-serve (and check serve.listen)",
            ),
            None,
        ),
    }
}

async fn auth(config: &Config) -> Check {
    const NAME: &str = "auth listener";
    let url = format!(
        "http://{}/mqtt/auth/superuser",
        reachable(config.serve.auth_listen)
    );
    // A question nobody may pass: the listener must answer it, and deny it.
    let body = serde_json::json!({ "username": "vesper-doctor", "password": "", "clientid": "vesper-doctor" });
    match http().post(&url).json(&body).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::FORBIDDEN || r.status().is_success() => {
            Check::ok(NAME, format!("{url} answers the broker's questions"))
        }
        Ok(r) => Check::fail(
            NAME,
            format!("{url} answers {}", r.status()),
            "point serve.auth_listen and the broker's plugin_opt/auth_opt http host and port at the same address",
        ),
        Err(e) => Check::fail(
            NAME,
            format!("{url}: {}", error_text(&e)),
            "start vesper serve; keep serve.auth_listen on loopback or a private network",
        ),
    }
}

/// Whether revocation commands reach the broker: none waiting in the backend's queue, and a
/// connection to send them on (`[serve.broker]`).
async fn broker_commands(config: &Config) -> Check {
    const NAME: &str = "broker commands";
    if config.serve.broker.is_none() {
        return Check::skip(
            NAME,
            "no [serve.broker]: kicks reach the vesper plugin through its control feed (GET /mqtt/control, read twice a second), not at once over MQTT; mosquitto-go-auth gets none",
        );
    }
    let url = format!("http://{}/metrics", reachable(config.serve.auth_listen));
    let text = match http().get(&url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => return Check::skip(NAME, format!("{url}: {}", error_text(&e))),
    };
    let waiting: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vesper_broker_commands_waiting "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if waiting == 0 {
        Check::ok(NAME, "no kick or forget command waits for the broker")
    } else {
        Check::fail(
            NAME,
            format!("{waiting} kick/forget commands wait for the broker"),
            "check the heartbeat listener's login (the broker check above) and the broker's log",
        )
    }
}

async fn broker(config: &Config, secret: Option<&MasterSecret>) -> Check {
    const NAME: &str = "broker";
    let Some(broker) = &config.serve.broker else {
        return Check::skip(NAME, "no [serve.broker]: heartbeats are not listened to");
    };
    let Some(secret) = secret else {
        return Check::fail(
            NAME,
            "cannot log in without the master secret",
            "fix the master secret check first",
        );
    };
    let account = &config.serve.service_account;
    let mut options = rumqttc::MqttOptions::new(
        format!("{account}-doctor"),
        broker.host.clone(),
        broker.port,
    );
    options.set_credentials(
        account.clone(),
        secret.service_password(account).expose().to_owned(),
    );
    options.set_keep_alive(Duration::from_secs(5));
    if broker.tls {
        options.set_transport(rumqttc::Transport::tls_with_default_config());
    }
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 4);
    let answer = tokio::time::timeout(TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    let at = format!("{}:{}", broker.host, broker.port);
    match answer {
        Ok(Ok(rumqttc::ConnectReturnCode::Success)) => Check::ok(
            NAME,
            format!("{at}: the service account {account} logs in (the plugin answers)"),
        ),
        Ok(Ok(code)) => Check::fail(
            NAME,
            format!("{at} refused the service account {account}: {code:?}"),
            "check the broker's plugin options (the auth listener's address) and that serve.service_account matches",
        ),
        Ok(Err(e)) if e.contains("ConnectionRefused") || e.contains("refused") => Check::fail(
            NAME,
            format!("{at}: {e}"),
            "start mosquitto (systemctl start mosquitto) with a config from deploy/ or mosquitto/",
        ),
        Ok(Err(e)) => Check::fail(
            NAME,
            format!("{at}: {e}"),
            "check serve.broker's host, port and tls",
        ),
        Err(_) => Check::fail(
            NAME,
            format!("{at}: no answer within {} s", TIMEOUT.as_secs()),
            "check the firewall and serve.broker's port",
        ),
    }
}

fn listener(config: &Config, health: Option<&serde_json::Value>) -> Check {
    const NAME: &str = "heartbeat listener";
    if config.serve.broker.is_none() {
        return Check::skip(NAME, "no [serve.broker]");
    }
    match health.map(|h| h["broker"].as_str().unwrap_or("?").to_owned()) {
        Some(state) if state == "connected" => {
            Check::ok(NAME, "connected to the broker (from /healthz)")
        }
        Some(state) => Check::fail(
            NAME,
            format!("the backend reports the broker {state}"),
            "check the broker check above and the backend's log (journalctl -u vesper-serve)",
        ),
        None => Check::fail(NAME, "the API does not answer", "fix the api check first"),
    }
}

/// `/ota/` through the public address with its CORS header, and the certificate's days left.
async fn public(config: &Config, ota_root: &Path) -> Vec<Check> {
    let Some(base) = &config.deploy.public_url else {
        return vec![Check::skip("public ota", "deploy.public_url is not set")];
    };
    // A board with a release answers 200; without any, a 404 still shows the headers.
    let published = config
        .boards
        .iter()
        .find(|b| vesper_backend::releases::manifest(ota_root, &b.name, None).is_ok());
    let board = published
        .or(config.boards.first())
        .map_or("board", |b| b.name.as_str());
    let url = format!("{base}/ota/{board}/latest.bin");
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .tls_info(true)
        .build()
        .expect("an HTTP client");
    let response = match client
        .head(&url)
        .header("origin", base.as_str())
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return vec![Check::fail(
                "public ota",
                format!("{url}: {}", error_text(&e)),
                "check DNS, the firewall (443) and nginx (nginx -t; systemctl status nginx)",
            )];
        }
    };
    let mut checks = Vec::new();
    let cors = response
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answered = response.status().is_success()
        || (published.is_none() && response.status() == reqwest::StatusCode::NOT_FOUND);
    checks.push(match (answered, cors) {
        (true, Some(origin)) => Check::ok(
            "public ota",
            format!(
                "{url}: {}, Access-Control-Allow-Origin {origin}",
                response.status()
            ),
        ),
        (true, None) => Check::fail(
            "public ota",
            format!("{url}: no Access-Control-Allow-Origin header"),
            "use the /ota/ location of deploy/vesper.conf (its add_header lines)",
        ),
        (false, _) => Check::fail(
            "public ota",
            format!("{url} answers {}", response.status()),
            "check that the /ota/ alias in the nginx site points at serve.ota_root",
        ),
    });
    if base.starts_with("https://") {
        let der = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .map(<[u8]>::to_vec);
        checks.push(certificate(der.as_deref()));
    }
    checks
}

fn certificate(der: Option<&[u8]>) -> Check {
    const NAME: &str = "tls certificate";
    let parsed = der.and_then(|der| x509_parser::parse_x509_certificate(der).ok());
    let Some((_, cert)) = parsed else {
        return Check::fail(
            NAME,
            "the server sent no readable certificate",
            "check ssl_certificate in the nginx site",
        );
    };
    let days = (cert.validity().not_after.timestamp() - chrono::Utc::now().timestamp()) / 86_400;
    if days < MIN_CERT_DAYS {
        Check::fail(
            NAME,
            format!("expires in {days} days"),
            "renew it: certbot renew && systemctl reload nginx",
        )
    } else {
        Check::ok(NAME, format!("{days} days left"))
    }
}

fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}
