//! The shipped deployment files with the real programs: `deploy/vesper.conf` in Debian's nginx on
//! loopback (a copy with test ports, the data folder and a certificate the test makes), in front
//! of a real backend; and `deploy/vesper-serve.service` through `systemd-analyze verify`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend_support::App;
use crate::broker::free_port;
use crate::support::root;

const CONSOLE: &str = "https://console.example.com";

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A self-signed server certificate for 127.0.0.1 (and vesper.example.com), PEM.
pub(crate) struct ServerCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl ServerCert {
    /// One that ends in `days_left` days (else far in the future).
    pub(crate) fn new(days_left: Option<i64>) -> ServerCert {
        use chrono::Datelike as _;
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "vesper.example.com".into()])
                .unwrap();
        if let Some(days) = days_left {
            let end = chrono::Utc::now().date_naive() + chrono::Duration::days(days);
            params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
        }
        let signing_key = rcgen::KeyPair::generate().unwrap();
        let made_cert = params.self_signed(&signing_key).unwrap();
        ServerCert {
            cert_pem: made_cert.pem(),
            key_pem: signing_key.serialize_pem(),
        }
    }
}

/// nginx running the shipped site in front of `api_port`, on `https_port`.
pub(crate) struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) https_port: u16,
    pub(crate) cert: Vec<u8>,
}

impl Nginx {
    pub(crate) fn start(api_port: u16, ota_root: &Path) -> Nginx {
        Self::start_with_certificate(api_port, ota_root, None)
    }

    /// The same with a certificate that ends in `days_left` days (else far in the future).
    pub(crate) fn start_with_certificate(
        api_port: u16,
        ota_root: &Path,
        days_left: Option<i64>,
    ) -> Nginx {
        Self::start_with(api_port, ota_root, &ServerCert::new(days_left), None)
    }

    /// The shipped site with `certificate`, and `/ota/` sent at most `rate` (nginx's
    /// `limit_rate`, e.g. "150k") when given.
    pub(crate) fn start_with(
        api_port: u16,
        ota_root: &Path,
        certificate: &ServerCert,
        rate: Option<&str>,
    ) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &certificate.cert_pem).unwrap();
        std::fs::write(&key, &certificate.key_pem).unwrap();
        let (http_port, https_port) = (free_port(), free_port());
        let site = std::fs::read_to_string(root().join("deploy/vesper.conf")).unwrap();
        // The test's copy: loopback ports, the test's data folder and certificate; nothing else.
        let site = site
            .replace(
                "server 127.0.0.1:8080;",
                &format!("server 127.0.0.1:{api_port};"),
            )
            .replace(
                "    listen 80;\n    listen [::]:80;\n",
                &format!("    listen 127.0.0.1:{http_port};\n"),
            )
            .replace(
                "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n",
                &format!("    listen 127.0.0.1:{https_port} ssl http2;\n"),
            )
            .replace(
                "/etc/letsencrypt/live/vesper.example.com/fullchain.pem",
                cert.to_str().unwrap(),
            )
            .replace(
                "/etc/letsencrypt/live/vesper.example.com/privkey.pem",
                key.to_str().unwrap(),
            )
            .replace(
                "alias /var/lib/vesper/ota/;",
                &format!(
                    "alias {}/;{}",
                    ota_root.display(),
                    rate.map(|r| format!(" limit_rate {r};"))
                        .unwrap_or_default()
                ),
            );
        assert!(
            site.contains(&format!(":{https_port} ssl")),
            "the site's listen lines changed: update this test"
        );
        std::fs::write(dir.path().join("vesper.conf"), site).unwrap();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "daemon off;\nuser {};\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  include /etc/nginx/mime.types;\n  access_log {d}/access.log;\n\
                 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/vesper.conf;\n}}\n",
                whoami()
            ),
        )
        .unwrap();
        let test = Command::new("nginx")
            .args(["-t", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .output()
            .expect("nginx (apt-get install nginx; scripts/test does)");
        assert!(
            test.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&test.stderr)
        );
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            dir,
            https_port,
            cert: certificate.cert_pem.clone().into_bytes(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    /// An HTTPS client that trusts the test's certificate (and nothing is skipped).
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.cert).unwrap()])
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // nginx stops on SIGQUIT (graceful) or SIGTERM; ours is the master we started.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = self.dir.path();
    }
}

fn write_release(ota: &Path) -> Vec<u8> {
    let board = ota.join("bellcore-v2");
    std::fs::create_dir_all(&board).unwrap();
    let app: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(board.join("v1.2.0.bin"), &app).unwrap();
    std::os::unix::fs::symlink("v1.2.0.bin", board.join("latest.bin")).unwrap();
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_nginx_site_serves_ota_with_cors_and_proxies_the_api_events_and_long_polls() {
    let app = App::start().await;
    let ota = app.dir().join("data/ota");
    let app_image = write_release(&ota);
    let api_port: u16 = app.api.rsplit(':').next().unwrap().parse().unwrap();
    let nginx = Nginx::start(api_port, &ota);
    let client = nginx.client();

    // OTA: from disk, byte for byte, with the seed's CORS headers; a preflight is answered.
    let r = client
        .get(nginx.url("/ota/bellcore-v2/latest.bin"))
        .header("origin", CONSOLE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], CONSOLE);
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), app_image.as_slice());
    let r = client
        .request(
            reqwest::Method::OPTIONS,
            nginx.url("/ota/bellcore-v2/latest.bin"),
        )
        .header("origin", CONSOLE)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["access-control-allow-origin"], CONSOLE);
    let r = client
        .get(nginx.url("/ota/bellcore-v2/missing.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        client
            .delete(nginx.url("/ota/bellcore-v2/latest.bin"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );

    // The API through the proxy.
    let health: Value = client
        .get(nginx.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["registry"], "ok");
    let (_, sns) = app.batch(1).await;
    let sn = sns[0].clone();
    let r = client
        .get(nginx.url(&format!("/manufacturing/devices/{sn}")))
        .bearer_auth(&app.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // An event stream passes unbuffered: a change made after it opened arrives at once.
    let mut events = client
        .get(nginx.url(&format!("/manufacturing/devices/{sn}/events")))
        .bearer_auth(&app.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let first = tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("event: current"),
        "{first:?}"
    );
    let changed = Instant::now();
    let r = app
        .post(
            &format!("/manufacturing/devices/{sn}/assign"),
            &app.technician,
            json!({ "email": "ada@example.com" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut seen = String::new();
    while !seen.contains("event: assigned") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
            .await
            .expect("the event came through unbuffered")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        changed.elapsed() < Duration::from_secs(4),
        "{:?}",
        changed.elapsed()
    );
    drop(events);

    // A 90 s long poll is neither buffered nor cut by the proxy's timeouts.
    let started = Instant::now();
    let r = client
        .get(nginx.url(&format!(
            "/manufacturing/devices/{sn}?wait=provisioned&timeout=90"
        )))
        .bearer_auth(&app.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-wait-result"], "timeout");
    assert!(
        started.elapsed() >= Duration::from_secs(89),
        "{:?}",
        started.elapsed()
    );

    // The webhook's body limit (1 MiB) is nginx's to enforce too.
    let r = client
        .post(nginx.url("/hooks/gitea"))
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut log = String::new();
    std::fs::File::open(nginx.dir.path().join("error.log"))
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(!log.contains("[emerg]"), "{log}");
    app.stop().await;
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(root().join("deploy/vesper-serve.service")).unwrap();
    for line in [
        "User=vesper",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/vesper",
        "NoNewPrivileges=yes",
        "LoadCredential=mqtt_secret:/etc/vesper/mqtt_secret",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has no `{line}`");
    }
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let binary: PathBuf = env!("CARGO_BIN_EXE_vesper").into();
    let copy = dir.path().join("vesper-serve.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/vesper", binary.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (apt-get install systemd; scripts/test does)");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    // Lines about this machine (no running systemd, other units) are not about our unit.
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("vesper-serve.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}
