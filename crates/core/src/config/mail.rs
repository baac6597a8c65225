//! `[mail]`: how `vesper serve` sends e-mail (a folder of `.eml` files, SMTP or Resend) and who
//! gets alerts. Secrets are never in the config text: only the files (or environment variables)
//! that hold them are named here, and the edge reads them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::{is_email_address, parse_mailbox};

/// Environment variable holding the SMTP password when `password_file` is not set.
pub const SMTP_PASSWORD_ENV: &str = "VESPER_SMTP_PASSWORD";
/// Environment variable holding the Resend API key when `api_key_file` is not set (the seed's).
pub const RESEND_KEY_ENV: &str = "RESEND_API_KEY";
/// Resend's API.
pub const RESEND_BASE_URL: &str = "https://api.resend.com";

/// Outgoing e-mail.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub provider: MailProvider,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    pub reply_to: Option<String>,
    /// The product's name in messages ("Your Vesper device is ready").
    pub product_name: String,
    pub alerts: Alerts,
}

/// Where messages go.
#[derive(Debug, Clone, PartialEq)]
pub enum MailProvider {
    /// `.eml` files in a folder (`None`: `DATA_DIR/mail`): works with no account.
    Files {
        dir: Option<PathBuf>,
    },
    Smtp(Smtp),
    Resend(Resend),
}

impl MailProvider {
    pub fn name(&self) -> &'static str {
        match self {
            MailProvider::Files { .. } => "files",
            MailProvider::Smtp(_) => "smtp",
            MailProvider::Resend(_) => "resend",
        }
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain, then `STARTTLS` before anything is sent (port 587); refused if the server lacks it.
    Starttls,
    /// No TLS: only for a relay on the same host or a private network.
    None,
}

/// An SMTP server (a relay or a provider's submission port).
#[derive(Debug, Clone, PartialEq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<String>,
    /// File holding the password (else `$VESPER_SMTP_PASSWORD`).
    pub password_file: Option<PathBuf>,
    /// A PEM certificate to trust besides the system's (a private relay's own CA).
    pub ca_file: Option<PathBuf>,
}

/// Resend's HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub struct Resend {
    /// File holding the API key (else `$RESEND_API_KEY`).
    pub api_key_file: Option<PathBuf>,
    pub base_url: String,
}

/// Who is told when something needs a person, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerts {
    /// Recipients; empty: no alerts.
    pub to: Vec<String>,
    /// Failed flashes of one board before its batch is reported.
    pub failed_attempts: u32,
    /// How long the heartbeat listener may be away from the broker before it is reported.
    pub broker_down_after: Duration,
    /// Use of the data folder's disk, in percent, above which it is reported.
    pub disk_percent: u8,
    /// Least time between two alerts of one kind.
    pub interval: Duration,
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            to: Vec::new(),
            failed_attempts: 3,
            broker_down_after: Duration::from_secs(300),
            disk_percent: 90,
            interval: Duration::from_secs(3600),
        }
    }
}

impl Default for Mail {
    fn default() -> Self {
        Self {
            provider: MailProvider::Files { dir: None },
            from: "Vesper <noreply@localhost.localdomain>".into(),
            reply_to: None,
            product_name: "Vesper".into(),
            alerts: Alerts::default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMail {
    provider: Option<String>,
    from: Option<String>,
    reply_to: Option<String>,
    product_name: Option<String>,
    smtp: Option<RawSmtp>,
    resend: Option<RawResend>,
    files: Option<RawFiles>,
    alerts: Option<RawAlerts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    tls: Option<SmtpTls>,
    user: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    /// Refused with a pointer to `password_file`: secrets never live in the config text.
    password: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResend {
    api_key_file: Option<PathBuf>,
    base_url: Option<String>,
    /// Refused with a pointer to `api_key_file`.
    api_key: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(default)]
    to: Vec<String>,
    failed_attempts: Option<u32>,
    broker_down_after: Option<u64>,
    disk_percent: Option<u8>,
    interval: Option<u64>,
}

type Invalid = (String, String);

fn bad(key: &str, message: impl Into<String>) -> Invalid {
    (format!("mail.{key}"), message.into())
}

pub(super) fn validate_mail(raw: RawMail, base: &Path) -> Result<Mail, Invalid> {
    let defaults = Mail::default();
    let from = raw.from.unwrap_or(defaults.from);
    if parse_mailbox(&from).is_none() {
        return Err(bad(
            "from",
            format!("`{from}` is not `Name <address>` or an address"),
        ));
    }
    if let Some(reply_to) = &raw.reply_to
        && parse_mailbox(reply_to).is_none()
    {
        return Err(bad(
            "reply_to",
            format!("`{reply_to}` is not an e-mail address"),
        ));
    }
    let product_name = raw.product_name.unwrap_or(defaults.product_name);
    if product_name.trim().is_empty() || product_name.len() > 64 {
        return Err(bad("product_name", "must be 1 to 64 characters"));
    }
    let provider = match raw.provider.as_deref().unwrap_or("files") {
        "files" => MailProvider::Files {
            dir: raw.files.and_then(|f| f.dir).map(|d| base.join(d)),
        },
        "smtp" => MailProvider::Smtp(validate_smtp(
            raw.smtp.ok_or_else(|| {
                bad(
                    "smtp",
                    "provider = \"smtp\" needs a [mail.smtp] table with host",
                )
            })?,
            base,
        )?),
        "resend" => MailProvider::Resend(validate_resend(
            raw.resend.unwrap_or(RawResend {
                api_key_file: None,
                base_url: None,
                api_key: None,
            }),
            base,
        )?),
        other => {
            return Err(bad(
                "provider",
                format!("`{other}` is not files, smtp or resend"),
            ));
        }
    };
    Ok(Mail {
        provider,
        from,
        reply_to: raw.reply_to,
        product_name,
        alerts: validate_alerts(raw.alerts)?,
    })
}

fn validate_smtp(raw: RawSmtp, base: &Path) -> Result<Smtp, Invalid> {
    if raw.password.is_some() {
        return Err(bad(
            "smtp.password",
            format!(
                "secrets are not kept in the config; put the password in a file named by password_file (mode 0600) or in ${SMTP_PASSWORD_ENV}"
            ),
        ));
    }
    if raw.host.trim().is_empty() {
        return Err(bad("smtp.host", "must not be empty"));
    }
    let tls = raw.tls.unwrap_or(SmtpTls::Starttls);
    let port = raw.port.unwrap_or(match tls {
        SmtpTls::Implicit => 465,
        SmtpTls::Starttls => 587,
        SmtpTls::None => 25,
    });
    if raw.password_file.is_some() && raw.user.is_none() {
        return Err(bad("smtp.user", "password_file is set but user is not"));
    }
    Ok(Smtp {
        host: raw.host,
        port,
        tls,
        user: raw.user,
        password_file: raw.password_file.map(|p| base.join(p)),
        ca_file: raw.ca_file.map(|p| base.join(p)),
    })
}

fn validate_resend(raw: RawResend, base: &Path) -> Result<Resend, Invalid> {
    if raw.api_key.is_some() {
        return Err(bad(
            "resend.api_key",
            format!(
                "secrets are not kept in the config; put the key in a file named by api_key_file (mode 0600) or in ${RESEND_KEY_ENV}"
            ),
        ));
    }
    let base_url = raw.base_url.unwrap_or_else(|| RESEND_BASE_URL.into());
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        return Err(bad(
            "resend.base_url",
            format!("`{base_url}` must start with https://"),
        ));
    }
    Ok(Resend {
        api_key_file: raw.api_key_file.map(|p| base.join(p)),
        base_url: base_url.trim_end_matches('/').to_owned(),
    })
}

fn validate_alerts(raw: Option<RawAlerts>) -> Result<Alerts, Invalid> {
    let defaults = Alerts::default();
    let Some(raw) = raw else { return Ok(defaults) };
    if let Some(address) = raw.to.iter().find(|a| !is_email_address(a)) {
        return Err(bad(
            "alerts.to",
            format!("`{address}` is not an e-mail address"),
        ));
    }
    if raw.to.len() > 50 {
        return Err(bad("alerts.to", "at most 50 recipients"));
    }
    let disk_percent = raw.disk_percent.unwrap_or(defaults.disk_percent);
    if disk_percent > 100 {
        return Err(bad("alerts.disk_percent", "must be between 0 and 100"));
    }
    let failed_attempts = raw.failed_attempts.unwrap_or(defaults.failed_attempts);
    if failed_attempts == 0 {
        return Err(bad("alerts.failed_attempts", "must be at least 1"));
    }
    Ok(Alerts {
        to: raw.to,
        failed_attempts,
        broker_down_after: raw
            .broker_down_after
            .map_or(defaults.broker_down_after, Duration::from_secs),
        disk_percent,
        interval: raw.interval.map_or(defaults.interval, Duration::from_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Mail, Invalid> {
        validate_mail(toml::from_str(text).unwrap(), Path::new("/etc/vesper"))
    }

    /// The example configuration's commented `[mail]` block is valid once uncommented.
    #[test]
    fn the_documented_mail_block_parses() {
        let text = crate::config::documented_block("mail");
        #[derive(Deserialize)]
        struct Doc {
            mail: RawMail,
        }
        let doc: Doc = toml::from_str(&text).unwrap();
        let mail = validate_mail(doc.mail, Path::new("/etc/vesper")).unwrap();
        assert_eq!(mail.provider.name(), "smtp");
        assert_eq!(mail.alerts.to, ["ops@example.com"]);
        assert_eq!(mail.alerts.interval, Duration::from_secs(3600));
    }

    #[test]
    fn files_is_the_default() {
        let mail = parse("").unwrap();
        assert_eq!(mail.provider, MailProvider::Files { dir: None });
        assert_eq!(mail.alerts.failed_attempts, 3);
        assert_eq!(mail.alerts.broker_down_after, Duration::from_secs(300));
    }

    #[test]
    fn smtp_ports_follow_tls() {
        let mail = parse("provider = \"smtp\"\n[smtp]\nhost = \"mx\"\ntls = \"implicit\"\nuser = \"u\"\npassword_file = \"smtp.pass\"").unwrap();
        let MailProvider::Smtp(smtp) = mail.provider else {
            panic!()
        };
        assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Implicit));
        assert_eq!(
            smtp.password_file.unwrap(),
            Path::new("/etc/vesper/smtp.pass")
        );
    }

    #[test]
    fn secrets_in_the_text_are_refused() {
        let err = parse(
            "provider = \"smtp\"\n[smtp]\nhost = \"mx\"\nuser = \"u\"\npassword = \"hunter2\"",
        )
        .unwrap_err();
        assert_eq!(err.0, "mail.smtp.password");
        assert!(!err.1.contains("hunter2"));
        let err = parse("provider = \"resend\"\n[resend]\napi_key = \"re_123\"").unwrap_err();
        assert_eq!(err.0, "mail.resend.api_key");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("provider = \"carrier-pigeon\"", "mail.provider"),
            ("provider = \"smtp\"", "mail.smtp"),
            ("from = \"not an address\"", "mail.from"),
            (
                "[alerts]\nto = [\"ops@example.com\", \"nobody\"]",
                "mail.alerts.to",
            ),
            ("[alerts]\ndisk_percent = 120", "mail.alerts.disk_percent"),
            (
                "provider = \"resend\"\n[resend]\nbase_url = \"ftp://x\"",
                "mail.resend.base_url",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err().0, key, "{text}");
        }
    }
}
