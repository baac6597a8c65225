//! The providers a message can leave by: a folder of `.eml` files, an SMTP server (lettre), or
//! Resend's HTTP API. Each answer is sorted into accepted, a passing failure (tried again later)
//! or a permanent one (the message is dead), and every attempt of a row carries the same
//! `Message-ID` / `Idempotency-Key`, so a resend after a crash is recognisable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use vesper_core::config::{
    Mail, MailProvider, RESEND_KEY_ENV, Resend, SMTP_PASSWORD_ENV, Smtp, SmtpTls,
};
use vesper_core::model::OutboxMessage;

use super::templates::Rendered;

/// How long one attempt may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a provider's answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Why a provider cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("cannot read {what} from {path}: {source}")]
    SecretFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} is not set: name a file in the config ({key}) or set ${env}")]
    MissingSecret {
        what: &'static str,
        key: &'static str,
        env: &'static str,
    },
    #[error("mail.{key}: `{value}` is not an e-mail address")]
    Address { key: &'static str, value: String },
    #[error("mail.smtp: {0}")]
    Smtp(String),
    #[error("mail.resend: {0}")]
    Http(String),
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again: a timeout, a 4xx SMTP reply, HTTP 429 or 5xx. `retry_after` is the
    /// provider's own wish (a 429's `Retry-After`).
    Temporary {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Never going to work as it is: SMTP 5xx, HTTP 4xx other than 429, a bad address.
    Permanent(String),
}

impl SendError {
    fn temporary(reason: impl Into<String>) -> SendError {
        SendError::Temporary {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// The configured provider, with its secrets read.
pub struct Mailer {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    /// The domain of `Message-ID`s: the sender's.
    domain: String,
    transport: Transport,
}

enum Transport {
    Files(PathBuf),
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        describe: String,
    },
    Resend {
        http: reqwest::Client,
        url: String,
        key: String,
    },
}

impl Mailer {
    /// Sets up the configured provider; `data_dir` holds the default `.eml` folder.
    pub fn new(mail: &Mail, data_dir: &Path) -> Result<Mailer, MailerError> {
        let from: Mailbox = mail.from.parse().map_err(|_| MailerError::Address {
            key: "from",
            value: mail.from.clone(),
        })?;
        let reply_to = match &mail.reply_to {
            Some(r) => Some(r.parse().map_err(|_| MailerError::Address {
                key: "reply_to",
                value: r.clone(),
            })?),
            None => None,
        };
        let domain = from.email.domain().to_owned();
        let transport = match &mail.provider {
            MailProvider::Files { dir } => {
                Transport::Files(dir.clone().unwrap_or_else(|| data_dir.join("mail")))
            }
            MailProvider::Smtp(smtp) => smtp_transport(smtp)?,
            MailProvider::Resend(resend) => resend_transport(resend)?,
        };
        Ok(Mailer {
            from,
            reply_to,
            domain,
            transport,
        })
    }

    /// Where messages go, for logs and `vesper mail test` (never a secret).
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Files(dir) => format!("files in {}", dir.display()),
            Transport::Smtp { describe, .. } => describe.clone(),
            Transport::Resend { url, .. } => format!("resend at {url}"),
        }
    }

    /// The `Message-ID` of a row: the same on every attempt.
    pub fn message_id(&self, message: &OutboxMessage) -> String {
        format!("<{}@{}>", message.message_key, self.domain)
    }

    /// One attempt at sending a row; `Ok` holds the provider's answer.
    pub async fn send(
        &self,
        message: &OutboxMessage,
        rendered: &Rendered,
    ) -> Result<String, SendError> {
        match &self.transport {
            Transport::Files(dir) => {
                let email = self.build(message, rendered)?;
                write_eml(dir, message, &email.formatted()).await
            }
            Transport::Smtp { transport, .. } => {
                let email = self.build(message, rendered)?;
                let response = transport.send(email).await.map_err(smtp_failure)?;
                let text: Vec<&str> = response.message().collect();
                Ok(format!("{} {}", response.code(), text.join(" ")))
            }
            Transport::Resend { http, url, key } => {
                self.build(message, rendered)?;
                self.resend(http, url, key, message, rendered).await
            }
        }
    }

    /// The MIME message: text and HTML alternatives, with the row's stable `Message-ID`.
    fn build(&self, message: &OutboxMessage, rendered: &Rendered) -> Result<Message, SendError> {
        let to: Mailbox = message.recipient.parse().map_err(|_| {
            SendError::Permanent(format!("`{}` is not an e-mail address", message.recipient))
        })?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject.clone())
            .message_id(Some(self.message_id(message)))
            .date_now();
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                rendered.text.clone(),
                rendered.html.clone(),
            ))
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
    }

    /// `POST /emails` with the row's key as `Idempotency-Key`.
    async fn resend(
        &self,
        http: &reqwest::Client,
        url: &str,
        key: &str,
        message: &OutboxMessage,
        rendered: &Rendered,
    ) -> Result<String, SendError> {
        let from = self.from.to_string();
        let reply_to = self.reply_to.as_ref().map(Mailbox::to_string);
        let body = ResendEmail {
            from: &from,
            to: [&message.recipient],
            subject: &rendered.subject,
            text: &rendered.text,
            html: &rendered.html,
            reply_to: reply_to.as_deref(),
        };
        let response = http
            .post(url)
            .bearer_auth(key)
            .header("Idempotency-Key", &message.message_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| SendError::temporary(format!("resend: {}", without_url(&e))))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let answer = read_bounded(response).await;
        resend_outcome(status.as_u16(), &answer, retry_after)
    }
}

/// The body of Resend's `POST /emails`.
#[derive(Serialize)]
struct ResendEmail<'a> {
    from: &'a str,
    to: [&'a str; 1],
    subject: &'a str,
    text: &'a str,
    html: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
}

/// Resend's answers: `{"id": ...}` on success, `{"name", "message", "statusCode"}` on errors.
#[derive(Deserialize, Default)]
struct ResendAnswer {
    id: Option<String>,
    name: Option<String>,
    message: Option<String>,
}

/// Sorts a Resend answer (from its documented status codes).
fn resend_outcome(
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<String, SendError> {
    let answer: ResendAnswer = serde_json::from_str(body).unwrap_or_default();
    let said = || {
        let name = answer.name.as_deref().unwrap_or("error");
        let message = answer
            .message
            .as_deref()
            .unwrap_or(body)
            .chars()
            .take(300)
            .collect::<String>();
        format!("resend {status} {name}: {message}")
    };
    match status {
        200..=299 => Ok(format!("resend id {}", answer.id.as_deref().unwrap_or("?"))),
        429 => Err(SendError::Temporary {
            reason: said(),
            retry_after,
        }),
        // Another attempt with this key is still running at Resend: ask again later.
        409 if answer.name.as_deref() == Some("concurrent_idempotent_requests") => {
            Err(SendError::temporary(said()))
        }
        400..=499 => Err(SendError::Permanent(said())),
        _ => Err(SendError::Temporary {
            reason: said(),
            retry_after,
        }),
    }
}

/// `Retry-After` in seconds (HTTP dates are rare from APIs and read as absent), at most an hour.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(3600)))
}

async fn read_bounded(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ANSWER {
            body.truncate(MAX_ANSWER);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// A reqwest error without its URL (which is not secret, but long).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!(
        "{kind}: {}",
        std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string())
    )
}

/// SMTP 5xx is permanent; everything else (4xx, a dropped connection, TLS, a timeout) passes.
fn smtp_failure(e: lettre::transport::smtp::Error) -> SendError {
    let reason = format!("smtp: {e}");
    if e.is_permanent() {
        SendError::Permanent(reason)
    } else {
        SendError::temporary(reason)
    }
}

/// Writes `{id}-{key}.eml` whole or not at all; a second attempt overwrites the same file.
async fn write_eml(dir: &Path, message: &OutboxMessage, bytes: &[u8]) -> Result<String, SendError> {
    let path = dir.join(format!("{:06}-{}.eml", message.id, message.message_key));
    let (dir, target, bytes) = (dir.to_owned(), path.clone(), bytes.to_vec());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write as _;
        // A message holds a customer's address: the folder and the file are the owner's alone.
        vesper_store::private::create_private_dir(&dir)?;
        let mut options = atomic_write_file::OpenOptions::new();
        #[cfg(unix)]
        {
            use atomic_write_file::unix::OpenOptionsExt as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            options.preserve_mode(false).mode(0o600);
        }
        let mut file = options.open(&target)?;
        file.write_all(&bytes)?;
        file.commit()
    })
    .await
    .map_err(|e| SendError::temporary(e.to_string()))?
    .map_err(|e| SendError::temporary(format!("cannot write {}: {e}", path.display())))?;
    Ok(format!("wrote {}", path.display()))
}

fn read_secret(
    what: &'static str,
    file: &Option<PathBuf>,
    key: &'static str,
    env: &'static str,
) -> Result<String, MailerError> {
    let secret = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|source| MailerError::SecretFile {
            what,
            path: path.clone(),
            source,
        })?,
        None => std::env::var(env).unwrap_or_default(),
    };
    let secret = secret.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(MailerError::MissingSecret { what, key, env });
    }
    Ok(secret)
}

/// Most connections open to the SMTP server at once.
pub const SMTP_CONNECTIONS: u32 = 8;

fn smtp_transport(smtp: &Smtp) -> Result<Transport, MailerError> {
    let tls_parameters = || -> Result<TlsParameters, MailerError> {
        let mut builder = TlsParameters::builder(smtp.host.clone());
        if let Some(path) = &smtp.ca_file {
            let pem = std::fs::read(path).map_err(|source| MailerError::SecretFile {
                what: "the SMTP server's CA certificate",
                path: path.clone(),
                source,
            })?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| MailerError::Smtp(format!("ca_file {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build()
            .map_err(|e| MailerError::Smtp(e.to_string()))
    };
    let tls = match smtp.tls {
        SmtpTls::Implicit => Tls::Wrapper(tls_parameters()?),
        SmtpTls::Starttls => Tls::Required(tls_parameters()?),
        SmtpTls::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(ATTEMPT_TIMEOUT))
        // A round's messages share a few connections, kept open between rounds (providers
        // throttle clients that open many at once).
        .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(SMTP_CONNECTIONS));
    if let Some(user) = &smtp.user {
        let password = read_secret(
            "the SMTP password",
            &smtp.password_file,
            "mail.smtp.password_file",
            SMTP_PASSWORD_ENV,
        )?;
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    let tls_word = match smtp.tls {
        SmtpTls::Implicit => "implicit TLS",
        SmtpTls::Starttls => "STARTTLS",
        SmtpTls::None => "no TLS",
    };
    Ok(Transport::Smtp {
        transport: builder.build(),
        describe: format!("smtp {}:{} ({tls_word})", smtp.host, smtp.port),
    })
}

fn resend_transport(resend: &Resend) -> Result<Transport, MailerError> {
    let key = read_secret(
        "the Resend API key",
        &resend.api_key_file,
        "mail.resend.api_key_file",
        RESEND_KEY_ENV,
    )?;
    let http = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("vesper/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| MailerError::Http(e.to_string()))?;
    Ok(Transport::Resend {
        http,
        url: format!("{}/emails", resend.base_url),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_no_mail_system_takes_is_a_permanent_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::new(&Mail::default(), dir.path()).unwrap();
        let rendered = Rendered {
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        };
        let content = vesper_core::model::MailContent::Welcome {
            serial_number: "PV-26A18-BC02R-X7KQA".into(),
            name: None,
        };
        for bad in ["not an address", "a@b@c.de", ""] {
            let message = OutboxMessage::unsaved(bad, content.clone());
            assert!(
                matches!(mailer.send(&message, &rendered).await, Err(SendError::Permanent(r)) if r.contains("is not an e-mail address")),
                "{bad:?}"
            );
        }
        let good = OutboxMessage::unsaved("a@b.co", content);
        let answer = mailer.send(&good, &rendered).await.unwrap();
        assert!(
            answer.starts_with("wrote ") && answer.ends_with(&format!("-{}.eml", good.message_key)),
            "{answer}"
        );
    }

    #[test]
    fn resend_answers_are_sorted_by_their_documented_codes() {
        assert_eq!(
            resend_outcome(200, r#"{"id":"49a3"}"#, None),
            Ok("resend id 49a3".into())
        );
        let wait = Some(Duration::from_secs(7));
        assert!(
            matches!(resend_outcome(429, r#"{"name":"rate_limit_exceeded","message":"Too many requests"}"#, wait),
            Err(SendError::Temporary { retry_after, .. }) if retry_after == wait)
        );
        assert!(
            matches!(resend_outcome(422, r#"{"statusCode":422,"name":"validation_error","message":"Invalid `to` field."}"#, None),
            Err(SendError::Permanent(r)) if r == "resend 422 validation_error: Invalid `to` field.")
        );
        assert!(matches!(
            resend_outcome(409, r#"{"name":"concurrent_idempotent_requests"}"#, None),
            Err(SendError::Temporary { .. })
        ));
        assert!(matches!(
            resend_outcome(409, r#"{"name":"invalid_idempotent_request"}"#, None),
            Err(SendError::Permanent(_))
        ));
        assert!(matches!(
            resend_outcome(500, "oops", None),
            Err(SendError::Temporary { .. })
        ));
        assert!(matches!(
            resend_outcome(401, "{}", None),
            Err(SendError::Permanent(_))
        ));
    }
}
