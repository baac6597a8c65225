//! The e-mail templates of `assets/mail/`, compiled in and rendered with minijinja: a text part
//! whose first line is the subject, and an HTML part in which every value is escaped.

use minijinja::value::Serde;
use minijinja::{Environment, Value, context};

use vesper_core::model::MailContent;

/// `(name, source)` of every template; `.html` ones are auto-escaped by minijinja.
const SOURCES: [(&str, &str); 8] = [
    (
        "device_invite.txt",
        include_str!("../../../../assets/mail/device_invite.txt"),
    ),
    (
        "device_invite.html",
        include_str!("../../../../assets/mail/device_invite.html"),
    ),
    (
        "welcome.txt",
        include_str!("../../../../assets/mail/welcome.txt"),
    ),
    (
        "welcome.html",
        include_str!("../../../../assets/mail/welcome.html"),
    ),
    (
        "alert.txt",
        include_str!("../../../../assets/mail/alert.txt"),
    ),
    (
        "alert.html",
        include_str!("../../../../assets/mail/alert.html"),
    ),
    ("test.txt", include_str!("../../../../assets/mail/test.txt")),
    (
        "test.html",
        include_str!("../../../../assets/mail/test.html"),
    ),
];

/// A message ready for a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A template failed to render (a template bug, not a passing failure).
#[derive(Debug, thiserror::Error)]
#[error("cannot render the {template} template: {source}")]
pub struct RenderError {
    template: String,
    source: minijinja::Error,
}

/// Values every template may use besides the message's own.
#[derive(Debug, Clone)]
pub struct Globals {
    /// `mail.product_name`.
    pub product: String,
    /// The host `vesper serve` runs on (named in alerts).
    pub host: String,
    /// How often an alert kind may repeat, in words ("hour").
    pub interval: String,
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
    globals: Globals,
}

impl Templates {
    pub fn new(globals: Globals) -> Templates {
        let mut env = Environment::new();
        for (name, source) in SOURCES {
            // A text part's first line is its subject, rendered on its own so that no value can
            // reach the body through it or break it over lines.
            let (name, source) = match name.strip_suffix(".txt") {
                Some(stem) => {
                    let (first, body) = source.split_once('\n').unwrap_or((source, ""));
                    let subject = first.strip_prefix("Subject:").unwrap_or(first).trim();
                    env.add_template_owned(format!("{stem}.subject"), subject.to_owned())
                        .expect("the bundled mail templates parse (checked by a test)");
                    (name, body)
                }
                None => (name, source),
            };
            env.add_template(name, source)
                .expect("the bundled mail templates parse (checked by a test)");
        }
        Templates { env, globals }
    }

    /// Renders a message's subject, text part and HTML part.
    pub fn render(&self, content: &MailContent) -> Result<Rendered, RenderError> {
        let template = content.template();
        let values = context! {
            product => &self.globals.product,
            host => &self.globals.host,
            interval => &self.globals.interval,
            ..Value::from(Serde(content))
        };
        let part = |ext: &str| {
            let name = format!("{template}.{ext}");
            self.env
                .get_template(&name)
                .and_then(|t| t.render(&values))
                .map_err(|source| RenderError {
                    template: name,
                    source,
                })
        };
        let subject = part("subject")?;
        Ok(Rendered {
            // A header is one line, whatever a value held.
            subject: subject
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
            text: format!("{}\n", part("txt")?.trim()),
            html: part("html")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vesper_core::model::AlertKind;

    fn templates() -> Templates {
        Templates::new(Globals {
            product: "Bellcore".into(),
            host: "vps-1".into(),
            interval: "hour".into(),
        })
    }

    #[test]
    fn the_invite_says_what_the_seed_says() {
        let rendered = templates()
            .render(&MailContent::DeviceInvite {
                serial_number: "PV-26A18-BC02R-X7KQA".into(),
                name: Some("Ada".into()),
            })
            .unwrap();
        assert_eq!(rendered.subject, "Your Bellcore device is ready");
        assert!(
            rendered.text.starts_with("Hello Ada,\n"),
            "{}",
            rendered.text
        );
        assert!(
            rendered
                .text
                .contains("Serial Number: PV-26A18-BC02R-X7KQA\n")
        );
        assert!(
            rendered
                .text
                .contains("Open the Bellcore app and enter this serial number to get started.")
        );
        assert!(rendered.html.contains("<strong style=\"font-family: monospace; font-size: 1.2em;\">PV-26A18-BC02R-X7KQA</strong>"));
    }

    #[test]
    fn markup_in_a_value_is_escaped_in_html_only() {
        let rendered = templates()
            .render(&MailContent::DeviceInvite {
                serial_number: "PV-26A18-BC02R-X7KQA".into(),
                name: Some("<script>alert('x')</script> & \"Co\"".into()),
            })
            .unwrap();
        assert!(!rendered.html.contains("<script>"), "{}", rendered.html);
        assert!(
            rendered.html.contains(
                "&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt; &amp; &quot;Co&quot;"
            ),
            "{}",
            rendered.html
        );
        assert!(
            rendered
                .text
                .contains("Hello <script>alert('x')</script> & \"Co\",")
        );
    }

    #[test]
    fn every_template_renders_and_a_subject_stays_one_line() {
        let t = templates();
        let welcome = t
            .render(&MailContent::Welcome {
                serial_number: "PV-26A18-BC02R-X7KQA".into(),
                name: None,
            })
            .unwrap();
        assert_eq!(welcome.subject, "Welcome to Bellcore");
        assert!(welcome.text.starts_with("Hello,\n"));
        assert!(
            welcome.text.contains("PV-26A18-BC02R-X7KQA"),
            "{}",
            welcome.text
        );
        let alert = t
            .render(&MailContent::Alert {
                alert: AlertKind::DiskFull,
                summary: "disk 93% full\r\nBcc: x@y.z".into(),
                details: vec!["/var/lib/vesper: 1.2 GB free".into()],
            })
            .unwrap();
        assert_eq!(alert.subject, "[Bellcore alert] disk 93% full  Bcc: x@y.z");
        assert!(alert.text.contains("- /var/lib/vesper: 1.2 GB free"));
        assert!(
            alert
                .html
                .contains("<li>&#x2f;var&#x2f;lib&#x2f;vesper: 1.2 GB free</li>"),
            "{}",
            alert.html
        );
    }
}
