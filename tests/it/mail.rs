//! E-mail through real parts: an SMTP server on loopback (aiosmtpd: plain, STARTTLS with a
//! certificate the test makes, AUTH), an HTTP server that speaks Resend's documented
//! `POST /emails` contract, `vesper serve` killed between a provider's acceptance and the outbox
//! update, the alerts, and the `vesper mail` commands. Messages are read back with `mail-parser`,
//! never with the code that wrote them.

use std::collections::VecDeque;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use mail_parser::MessageParser;
use serde_json::{Value, json};

use vesper::model::{MailStatus, OutboxMessage};

use crate::backend_process::{SERVE_ON_FREE_PORTS, Serve};
use crate::backend_support::{App, write_config_with};
use crate::support::{python, root, settled, stderr, stdout, vesper_env};

const FROM: &str = "Bellcore Devices <devices@bellcore.example>";

/// The `[mail]` table of a test: `provider` lines plus the sender and product name.
fn mail_config(provider: &str) -> String {
    format!("\n[mail]\nfrom = \"{FROM}\"\nproduct_name = \"Bellcore\"\n{provider}\n")
}

fn smtp_config(port: u16, tls: &str, more: &str) -> String {
    mail_config(&format!(
        "provider = \"smtp\"\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n{more}"
    ))
}

/// aiosmtpd on a free loopback port, storing what it accepts (tests/it/smtp_server.py).
struct SmtpServer {
    child: Child,
    port: u16,
    inbox: PathBuf,
    _dir: tempfile::TempDir,
}

/// One message the SMTP server accepted: its envelope and its bytes as received.
struct Received {
    envelope: Value,
    raw: Vec<u8>,
}

impl SmtpServer {
    fn start(args: &[&str]) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        let mut child = Command::new(python())
            .arg(root().join("tests/it/smtp_server.py"))
            .arg(&inbox)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"))
            .parse()
            .unwrap();
        SmtpServer {
            child,
            port,
            inbox,
            _dir: dir,
        }
    }

    fn received(&self) -> Vec<Received> {
        (1..)
            .map_while(|n| {
                let raw = std::fs::read(self.inbox.join(format!("{n}.eml"))).ok()?;
                let envelope = std::fs::read(self.inbox.join(format!("{n}.json"))).ok()?;
                Some(Received {
                    envelope: serde_json::from_slice(&envelope).unwrap(),
                    raw,
                })
            })
            .collect()
    }

    /// Waits until `n` messages are in, failing after `within`.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < within,
                "{} of {n} messages within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for 127.0.0.1, as (cert.pem, key.pem) in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("smtp-cert.pem"), dir.join("smtp-key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

async fn assign(app: &App, sn: &str, email: &str, name: &str) {
    let r = app
        .post(
            &format!("/manufacturing/devices/{sn}/assign"),
            &app.technician,
            json!({ "email": email, "name": name }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Waits until outbox row `id` is in `status`.
async fn wait_status(app: &App, id: i64, status: MailStatus, within: Duration) -> OutboxMessage {
    let start = Instant::now();
    loop {
        let m = app.registry().mail(id).unwrap();
        if m.status == status {
            return m;
        }
        assert!(
            start.elapsed() < within,
            "message {id} is {:?}, not {status} within {within:?}",
            m
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn only_message(app: &App) -> OutboxMessage {
    let all = app.registry().outbox(None, 10).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

fn audit_actions(app: &App, subject: &str) -> Vec<String> {
    app.registry()
        .audit(&vesper::model::AuditQuery {
            subject: Some(subject.to_owned()),
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn assigning_a_device_delivers_the_invite_over_smtp_with_both_parts_and_escaped_markup() {
    let smtp = SmtpServer::start(&[]);
    let app = App::start_with(&smtp_config(smtp.port, "none", "")).await;
    let (_, sns) = app.batch(1).await;
    let sn = &sns[0];
    let started = Instant::now();
    assign(&app, sn, "ada@example.com", "Ada <b>Lovelace</b> & Co").await;
    let got = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "delivered in {:?}",
        started.elapsed()
    );

    let envelope = &got[0].envelope;
    assert_eq!(envelope["mail_from"], "devices@bellcore.example");
    assert_eq!(envelope["rcpt_tos"], json!(["ada@example.com"]));
    let message = MessageParser::default().parse(&got[0].raw).unwrap();
    assert_eq!(message.subject(), Some("Your Bellcore device is ready"));
    let from = message.from().unwrap().first().unwrap();
    assert_eq!(
        (from.name(), from.address()),
        (Some("Bellcore Devices"), Some("devices@bellcore.example"))
    );
    assert_eq!(
        message.to().unwrap().first().unwrap().address(),
        Some("ada@example.com")
    );
    let text = message.body_text(0).unwrap();
    assert!(text.contains(&format!("Serial Number: {sn}")), "{text}");
    assert!(
        text.contains("Open the Bellcore app and enter this serial number to get started."),
        "{text}"
    );
    assert!(text.contains("Hello Ada <b>Lovelace</b> & Co,"), "{text}");
    let html = message.body_html(0).unwrap();
    assert!(html.contains(sn.as_str()), "{html}");
    assert!(
        html.contains("Hello Ada &lt;b&gt;Lovelace&lt;&#x2f;b&gt; &amp; Co,"),
        "{html}"
    );
    assert!(!html.contains("<b>Lovelace"), "{html}");

    let row = wait_status(
        &app,
        only_message(&app).id,
        MailStatus::Sent,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        message.message_id(),
        Some(format!("{}@bellcore.example", row.message_key).as_str())
    );
    assert!(
        row.provider_answer
            .as_deref()
            .unwrap()
            .contains("queued as T1"),
        "{row:?}"
    );
    assert_eq!(row.attempts, 1);
    assert!(audit_actions(&app, sn).contains(&"mail.sent".to_owned()));
    // The station's device detail reads the invitation's state from the device record.
    let device: Value = app
        .get(&format!("/manufacturing/devices/{sn}"), &app.technician)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(device["invite"]["status"], "sent");
    assert_eq!(device["invite"]["attempts"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stations_assign_task_delivers_the_invite() {
    let smtp = SmtpServer::start(&[]);
    let app = App::start_with(&smtp_config(smtp.port, "none", "")).await;
    let (_, sns) = app.batch(1).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let labels = tempfile::tempdir().unwrap();
    let runner = vesper::station::tasks::Runner::new(
        vesper::client::ApiClient::new(&app.api, &app.technician),
        Arc::new(app.config().clone()),
        tx,
        labels.path().to_owned(),
    );
    runner.spawn(vesper::station::Task::Assign {
        sn: sns[0].clone(),
        email: "lin@example.com".into(),
    });
    let got = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].envelope["rcpt_tos"], json!(["lin@example.com"]));
    let text = MessageParser::default()
        .parse(&got[0].raw)
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned();
    assert!(
        text.contains(&format!("Serial Number: {}", sns[0])),
        "{text}"
    );
    // The station hears the assignment back, as its screens do.
    let heard = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        format!("{heard:?}").contains("lin@example.com"),
        "{heard:?}"
    );
    drop(runner);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_with_the_test_certificate_and_a_password_file_logs_in_before_sending() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let smtp = SmtpServer::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--auth",
        "vesper:s3cret-pass",
    ]);
    let password = certs.path().join("smtp.pass");
    std::fs::write(&password, "s3cret-pass\n").unwrap();
    let more = format!(
        "user = \"vesper\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
        password.display(),
        cert.display()
    );
    let app = App::start_with(&smtp_config(smtp.port, "starttls", &more)).await;
    let (_, sns) = app.batch(1).await;
    assign(&app, &sns[0], "grace@example.com", "Grace").await;
    let got = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].envelope["tls"], true, "the message went over TLS");
    assert_eq!(got[0].envelope["login"], "vesper");
    let message = MessageParser::default().parse(&got[0].raw).unwrap();
    assert!(message.body_text(0).unwrap().contains(sns[0].as_str()));
    assert!(message.body_html(0).is_some());
    app.stop().await;

    // Without the certificate trusted, nothing is sent: a passing failure, said plainly.
    let dir = tempfile::tempdir().unwrap();
    let no_ca = format!(
        "user = \"vesper\"\npassword_file = \"{}\"\n",
        password.display()
    );
    write_config_with(
        dir.path(),
        "http://127.0.0.1:9/jwks",
        &smtp_config(smtp.port, "starttls", &no_ca),
    );
    let out = vesper_env(
        dir.path(),
        &["mail", "test", "--to", "ops@example.com"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let check = vesper_env(
        dir.path(),
        &["config", "check"],
        &[("VESPER_WIFI_PASSWORD", "bench wifi")],
    );
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(
        stdout(&check).contains(&format!("mail     smtp 127.0.0.1:{} (STARTTLS)", smtp.port)),
        "{}",
        stdout(&check)
    );
    assert!(
        stderr(&out).contains("not sent (a passing failure"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).to_lowercase().contains("certificate"),
        "{}",
        stderr(&out)
    );
    assert_eq!(smtp.received().len(), 1);
}

/// Issue 25, finding 5: a viewer never receives a customer's address, from any route, event or
/// stream: the device taken through its states with the address in every field a person can
/// fill (assigned e-mail and name, owner and users), and the provider's 550 answer quoting it in
/// the outbox and the audit rows of the device's history.
#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_never_receives_a_customers_address_from_any_route_event_or_stream() {
    let smtp = SmtpServer::start(&["--reject-rcpt", "nobody"]);
    let app = App::start_with(&smtp_config(smtp.port, "none", "")).await;
    let (batch, sns) = app.batch(1).await;
    let sn = &sns[0];
    const ADDRESS: &str = "nobody@example.com";
    // Every state the device goes through, as a technician and an admin drive it.
    let r = app
        .post(
            &format!("/manufacturing/devices/{sn}/flashed"),
            &app.technician,
            json!({ "chip": "ESP32", "mac": "24:0A:C4:00:09:01", "firmware_version": "1.0.0", "station": "bench-1" }),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    assign(&app, sn, ADDRESS, ADDRESS).await;
    let r = app
        .post(
            &format!("/manufacturing/devices/{sn}/users"),
            &app.admin,
            json!({ "owner": ADDRESS, "users_list": [ADDRESS] }),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let id = only_message(&app).id;
    let dead = wait_status(&app, id, MailStatus::Dead, Duration::from_secs(10)).await;
    assert!(
        dead.last_error.as_deref().unwrap().contains(ADDRESS),
        "{dead:?}"
    );
    let r = app
        .post(
            &format!("/manufacturing/devices/{sn}/status"),
            &app.admin,
            json!({ "status": "revoked" }),
        )
        .await;
    assert!(r.status().is_success());
    // An admin sees the address (so the test would see a leak).
    let admin_view = app
        .get(&format!("/manufacturing/devices/{sn}"), &app.admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(admin_view.contains(ADDRESS), "{admin_view}");

    // Everything a viewer can read about the device.
    let mut seen = Vec::new();
    for path in [
        format!("/manufacturing/devices/{sn}"),
        format!("/manufacturing/devices/{sn}?wait=revoked&timeout=1"),
        format!("/manufacturing/devices?batch={batch}"),
        format!("/manufacturing/devices?text={sn}"),
        format!("/manufacturing/batch/{batch}"),
        "/manufacturing/batches".to_owned(),
        "/manufacturing/stats".to_owned(),
    ] {
        let r = app.get(&path, &app.viewer).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        seen.push((path, r.text().await.unwrap()));
    }
    // The event stream's first event, and one change while it is open.
    let mut stream = app
        .client
        .get(format!("{}/manufacturing/devices/{sn}/events", app.api))
        .bearer_auth(&app.viewer)
        .send()
        .await
        .unwrap();
    let first = stream.chunk().await.unwrap().unwrap();
    seen.push((
        "events".into(),
        String::from_utf8_lossy(&first).into_owned(),
    ));
    let viewer_denied = app.get("/manufacturing/audit", &app.viewer).await.status();
    assert_eq!(viewer_denied, reqwest::StatusCode::FORBIDDEN);
    for (path, body) in &seen {
        for needle in [ADDRESS, "nobody", "example.com"] {
            assert!(
                !body.contains(needle),
                "a viewer got `{needle}` from {path}: {body}"
            );
        }
    }
    // The history is there, without the people in it.
    let device: Value = serde_json::from_str(&seen[0].1).unwrap();
    let actions: Vec<&str> = device["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"mail.dead"), "{actions:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recipient_refused_with_550_is_dead_at_once_and_vesper_mail_retry_revives_it() {
    let smtp = SmtpServer::start(&["--reject-rcpt", "nobody"]);
    let app = App::start_with(&smtp_config(smtp.port, "none", "")).await;
    let (_, sns) = app.batch(1).await;
    assign(&app, &sns[0], "nobody@example.com", "No One").await;
    let id = only_message(&app).id;
    let dead = wait_status(&app, id, MailStatus::Dead, Duration::from_secs(10)).await;
    assert_eq!(dead.attempts, 1, "a permanent refusal is not retried");
    assert!(
        dead.last_error.as_deref().unwrap().contains("550"),
        "{dead:?}"
    );
    assert!(audit_actions(&app, &sns[0]).contains(&"mail.dead".to_owned()));
    assert!(smtp.received().is_empty());

    let data = app.dir().join("data");
    let data = data.to_str().unwrap();
    let out = vesper_env(
        app.dir(),
        &["mail", "outbox", "--status", "dead", "--data-dir", data],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(
        listed.contains("nobody@example.com") && listed.contains("550"),
        "{listed}"
    );
    let out = vesper_env(
        app.dir(),
        &["mail", "outbox", "--status", "sent", "--data-dir", data],
        &[],
    );
    assert!(
        stdout(&out).contains("the outbox is empty of sent messages"),
        "{}",
        stdout(&out)
    );
    let out = vesper_env(
        app.dir(),
        &["mail", "outbox", "--status", "lost", "--data-dir", data],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown status");

    let out = vesper_env(
        app.dir(),
        &["mail", "retry", &id.to_string(), "--data-dir", data],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is pending again"),
        "{}",
        stdout(&out)
    );
    assert!(audit_actions(&app, &sns[0]).contains(&"mail.retry".to_owned()));
    // The server still refuses it: dead again after one more attempt.
    let start = Instant::now();
    while app.registry().mail(id).unwrap().status != MailStatus::Dead
        || start.elapsed() < Duration::from_millis(200)
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = app.registry().mail(id).unwrap();
    assert_eq!(again.attempts, 1, "{again:?}");
    let out = vesper_env(
        app.dir(),
        &["mail", "retry", "999", "--data-dir", data],
        &[],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no message 999"), "{}", stderr(&out));
    app.stop().await;
}

/// What the Resend stand-in received: when, the headers that matter, and the body.
#[derive(Clone, Debug)]
struct ResendRequest {
    at: Instant,
    idempotency_key: String,
    body: Value,
}

/// One scripted answer: status, `Retry-After`, and whether to hold it until released.
#[derive(Clone, Copy)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    hold: bool,
}

const fn answer(status: u16) -> Answer {
    Answer {
        status,
        retry_after: None,
        hold: false,
    }
}

#[derive(Default)]
struct ResendState {
    script: Mutex<VecDeque<Answer>>,
    requests: Mutex<Vec<ResendRequest>>,
    /// Raised when a held request has been recorded; the test then releases it.
    held: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

/// A stand-in for Resend's API on loopback, faithful to its documented contract: `POST /emails`
/// with `Authorization: Bearer KEY` and a JSON body (`from`, `to`, `subject`, `html`/`text`),
/// answering `{"id"}` or `{"statusCode", "name", "message"}`. (Resend itself is a hosted API
/// that cannot run here; this is the one stand-in of the mail tests.)
struct ResendFake {
    url: String,
    state: Arc<ResendState>,
    task: tokio::task::JoinHandle<()>,
}

const RESEND_KEY: &str = "re_test_0123456789";

async fn resend_emails(
    State(state): State<Arc<ResendState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let error = |status: StatusCode, name: &str, message: &str| {
        (
            status,
            axum::Json(json!({ "statusCode": status.as_u16(), "name": name, "message": message })),
        )
            .into_response()
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {RESEND_KEY}"))
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "Missing API key in the authorization header.",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Invalid JSON.",
        );
    };
    let complete = body["from"].is_string()
        && body["to"].as_array().is_some_and(|to| !to.is_empty())
        && body["subject"].is_string()
        && (body["html"].is_string() || body["text"].is_string());
    if !complete {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Missing required field.",
        );
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let n = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(ResendRequest {
            at: Instant::now(),
            idempotency_key: key,
            body,
        });
        requests.len()
    };
    let scripted = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(answer(200));
    if scripted.hold {
        state.held.notify_one();
        state.release.notified().await;
    }
    match scripted.status {
        200 => (
            StatusCode::OK,
            axum::Json(json!({ "id": format!("email-{n}") })),
        )
            .into_response(),
        429 => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Too many requests. You can only make 2 requests per second.",
            );
            if let Some(s) = scripted.retry_after {
                r.headers_mut()
                    .insert("retry-after", s.to_string().parse().unwrap());
            }
            r
        }
        422 => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "The `to` field must be a valid email address.",
        ),
        status => error(
            StatusCode::from_u16(status).unwrap(),
            "internal_server_error",
            "An unexpected error occurred.",
        ),
    }
}

impl ResendFake {
    async fn start(script: &[Answer]) -> ResendFake {
        let state = Arc::new(ResendState::default());
        state.script.lock().unwrap().extend(script.iter().copied());
        let app = axum::Router::new()
            .route("/emails", axum::routing::post(resend_emails))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ResendFake { url, state, task }
    }

    fn requests(&self) -> Vec<ResendRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    fn script(&self, answers: &[Answer]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(answers.iter().copied());
    }

    /// The `[mail]` table for this server, with the key in a file under `dir`.
    fn config(&self, dir: &Path) -> String {
        let key = dir.join("resend.key");
        std::fs::write(&key, format!("{RESEND_KEY}\n")).unwrap();
        mail_config(&format!(
            "provider = \"resend\"\n[mail.resend]\napi_key_file = \"{}\"\nbase_url = \"{}\"\n",
            key.display(),
            self.url
        ))
    }
}

impl Drop for ResendFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_500_is_retried_429_waits_its_retry_after_and_422_is_dead() {
    let keys = tempfile::tempdir().unwrap();
    let retry_after = Answer {
        status: 429,
        retry_after: Some(3),
        hold: false,
    };
    let resend = ResendFake::start(&[answer(500), retry_after, answer(200)]).await;
    let app = App::start_with(&resend.config(keys.path())).await;
    let (_, sns) = app.batch(2).await;
    assign(&app, &sns[0], "ada@example.com", "Ada").await;
    let id = only_message(&app).id;
    let sent = wait_status(&app, id, MailStatus::Sent, Duration::from_secs(20)).await;
    let requests = resend.requests();
    assert_eq!(requests.len(), 3, "500, 429, then 200");
    assert!(
        requests
            .iter()
            .all(|r| r.idempotency_key == sent.message_key),
        "one key for every attempt"
    );
    let first_wait = requests[1].at - requests[0].at;
    assert!(
        first_wait >= Duration::from_millis(900),
        "backed off after the 500: {first_wait:?}"
    );
    let second_wait = requests[2].at - requests[1].at;
    assert!(
        second_wait >= Duration::from_millis(2900),
        "Retry-After: 3 honoured: {second_wait:?}"
    );
    assert_eq!(sent.attempts, 3);
    assert_eq!(sent.provider_answer.as_deref(), Some("resend id email-3"));
    let body = &requests[2].body;
    assert_eq!(body["to"], json!(["ada@example.com"]));
    assert_eq!(body["from"], FROM);
    assert_eq!(body["subject"], "Your Bellcore device is ready");
    assert!(body["text"].as_str().unwrap().contains(sns[0].as_str()));
    assert!(body["html"].as_str().unwrap().contains(sns[0].as_str()));

    resend.script(&[answer(422)]);
    assign(&app, &sns[1], "grace@example.com", "Grace").await;
    let second = app.registry().outbox(None, 1).unwrap()[0].id;
    let dead = wait_status(&app, second, MailStatus::Dead, Duration::from_secs(10)).await;
    assert_eq!(dead.attempts, 1);
    assert!(
        dead.last_error
            .as_deref()
            .unwrap()
            .contains("resend 422 validation_error"),
        "{dead:?}"
    );
    let asked = settled(
        || async { resend.requests().len() },
        Duration::from_millis(1500),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(asked, 4, "a 422 is not retried");
    app.stop().await;
}

/// Assigns a device through a `vesper serve` process's API.
async fn assign_over_http(api: &str, token: &str) -> String {
    let client = reqwest::Client::new();
    let batch: Value = client
        .post(format!("{api}/manufacturing/batch"))
        .bearer_auth(token)
        .json(&json!({ "board": "bellcore-v2", "quantity": 1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sn = batch["serial_numbers"][0].as_str().unwrap().to_owned();
    let r = client
        .post(format!("{api}/manufacturing/devices/{sn}/assign"))
        .bearer_auth(token)
        .json(&json!({ "email": "ada@example.com", "name": "Ada" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    sn
}

/// A config folder for a `vesper serve` process with `mail`, and an admin token.
fn process_setup(dir: &Path, mail: &str) -> String {
    write_config_with(dir, "http://127.0.0.1:9/jwks", mail);
    let out = vesper_env(dir, &["token", "create", "bench-1", "--role", "admin"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).split_whitespace().last().unwrap().to_owned()
}

fn sent_rows(dir: &Path) -> Vec<OutboxMessage> {
    vesper::registry::Registry::open(&dir.join("data"))
        .unwrap()
        .outbox(None, 10)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_resend_accepted_sends_once_more_with_the_same_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let held = Answer {
        status: 200,
        retry_after: None,
        hold: true,
    };
    let resend = ResendFake::start(&[held]).await;
    let token = process_setup(dir.path(), &resend.config(dir.path()));
    let serve = Serve::start(dir.path(), &[]);
    assign_over_http(&serve.api, &token).await;
    // Resend has the message; its answer is held until the backend is dead.
    tokio::time::timeout(Duration::from_secs(10), resend.state.held.notified())
        .await
        .expect("the worker sent the invite");
    serve.kill();
    resend.state.release.notify_one();
    assert_eq!(
        sent_rows(dir.path())[0].status,
        MailStatus::Pending,
        "not recorded as sent"
    );

    let serve = Serve::start(dir.path(), &[]);
    let start = Instant::now();
    while sent_rows(dir.path())[0].status != MailStatus::Sent {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = settled(
        || async { resend.requests().len() },
        Duration::from_secs(1),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(sent, 2, "sent again exactly once");
    let requests = resend.requests();
    assert_eq!(requests[0].idempotency_key, requests[1].idempotency_key);
    assert_eq!(
        requests[0].idempotency_key,
        sent_rows(dir.path())[0].message_key
    );
    assert_eq!(requests[0].body, requests[1].body, "the same message");
    serve.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_the_smtp_server_accepted_sends_once_more_with_the_same_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(&["--hold-first", "3"]);
    let token = process_setup(dir.path(), &smtp_config(smtp.port, "none", ""));
    let serve = Serve::start(dir.path(), &[]);
    assign_over_http(&serve.api, &token).await;
    let start = Instant::now();
    while !smtp.inbox.join("held").exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", serve.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.kill();
    assert_eq!(sent_rows(dir.path())[0].status, MailStatus::Pending);

    let serve = Serve::start(dir.path(), &[]);
    let got = smtp.wait_for(2, Duration::from_secs(15)).await;
    let start = Instant::now();
    while sent_rows(dir.path())[0].status != MailStatus::Sent {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = settled(
        || async { smtp.received().len() },
        Duration::from_secs(1),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(received, 2, "sent again exactly once");
    let ids: Vec<String> = got
        .iter()
        .map(|r| {
            MessageParser::default()
                .parse(&r.raw)
                .unwrap()
                .message_id()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        ids[0],
        format!("{}@bellcore.example", sent_rows(dir.path())[0].message_key)
    );
    serve.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_go_out_once_per_kind_for_failing_boards_a_lost_broker_and_a_full_disk() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "{}[mail.alerts]\nto = [\"ops@example.com\", \"lead@example.com\"]\nbroker_down_after = 1\ndisk_percent = 0\n\n[serve.broker]\nhost = \"127.0.0.1\"\nport = {closed_port}\n",
        mail_config("")
    );
    let app = App::start_with(&extra).await;
    let (batch, sns) = app.batch(2).await;
    let fail = |sn: String, n: usize| {
        let app = &app;
        async move {
            for i in 0..n {
                let r = app
                    .post(
                        &format!("/manufacturing/devices/{sn}/failed"),
                        &app.technician,
                        json!({ "station": "bench-1/slot-2", "step": "flash", "reason": format!("timed out writing (try {i})") }),
                    )
                    .await;
                assert_eq!(r.status(), StatusCode::OK);
            }
        }
    };
    fail(sns[0].clone(), 3).await;
    fail(sns[1].clone(), 2).await;
    let start = Instant::now();
    let alerts = loop {
        let alerts: Vec<OutboxMessage> = app
            .registry()
            .outbox(None, 100)
            .unwrap()
            .into_iter()
            .filter(|m| m.status == MailStatus::Sent)
            .collect();
        if alerts.len() >= 6 {
            break alerts;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{alerts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let queued = settled(
        || async { app.registry().outbox(None, 100).unwrap().len() },
        Duration::from_secs(2),
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(queued, 6, "each kind once, to both recipients");
    let kinds = |to: &str| {
        let mut kinds: Vec<String> = alerts
            .iter()
            .filter(|m| m.recipient == to)
            .map(|m| {
                serde_json::to_value(&m.content).unwrap()["alert"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        kinds.sort();
        kinds
    };
    assert_eq!(
        kinds("ops@example.com"),
        ["broker_disconnected", "disk_full", "failed_boards"]
    );
    assert_eq!(kinds("lead@example.com"), kinds("ops@example.com"));

    // The files provider wrote them as .eml files; read the failing-boards one back.
    let folder = app.dir().join("data/mail");
    let parsed: Vec<(String, String)> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| {
            let raw = std::fs::read(e.unwrap().path()).unwrap();
            let m = MessageParser::default().parse(&raw).unwrap();
            (
                m.subject().unwrap().to_owned(),
                m.body_text(0).unwrap().into_owned(),
            )
        })
        .collect();
    assert_eq!(parsed.len(), 6);
    let (subject, text) = parsed
        .iter()
        .find(|(s, _)| s.contains("failed 3 times"))
        .unwrap_or_else(|| panic!("{parsed:?}"));
    assert_eq!(
        subject,
        &format!("[Bellcore alert] 1 board(s) failed 3 times or more in batch {batch}")
    );
    assert!(
        text.contains(&format!(
            "{batch} {}: 3 failures, the last: timed out writing (try 2)",
            sns[0]
        )),
        "{text}"
    );
    assert!(
        !text.contains(sns[1].as_str()),
        "two failures are below the threshold"
    );
    assert!(
        parsed
            .iter()
            .any(|(s, _)| s.contains("disconnected from the broker"))
    );
    assert!(parsed.iter().any(|(s, _)| s.contains("disk is")));
    app.stop().await;
}

#[test]
fn vesper_mail_test_writes_an_eml_with_the_files_provider_and_config_check_reports_a_missing_secret()
 {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), "http://127.0.0.1:9/jwks", &mail_config(""));
    let out = vesper_env(
        dir.path(),
        &["mail", "test", "--to", "ops@example.com"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    let path = said
        .lines()
        .find_map(|l| l.strip_prefix("accepted: wrote "))
        .unwrap_or_else(|| panic!("{said}"));
    // Relative to the folder the command ran in (where its config.toml was found).
    let path = dir.path().join(path);
    let raw = std::fs::read(&path).unwrap();
    let message = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(message.subject(), Some("Bellcore mail test"));
    assert!(message.body_text(0).unwrap().contains("vesper mail test"));
    assert!(message.body_html(0).is_some());
    assert!(
        path.starts_with(dir.path().join("data/mail")),
        "{}",
        path.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp_config(
        2525,
        "starttls",
        "user = \"vesper\"\npassword_file = \"missing.pass\"\n",
    );
    write_config_with(dir.path(), "http://127.0.0.1:9/jwks", &smtp);
    let out = vesper_env(
        dir.path(),
        &["config", "check"],
        &[("VESPER_WIFI_PASSWORD", "bench wifi")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("mail     PROBLEM: cannot read the SMTP password from"),
        "{}",
        stdout(&out)
    );
    let out = vesper_env(
        dir.path(),
        &SERVE_ON_FREE_PORTS,
        &[("MQTT_SECRET", crate::backend_support::SECRET)],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.pass"), "{}", stderr(&out));
}
