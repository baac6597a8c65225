//! mosquitto-go-auth's HTTP backend protocol, both sides: the requests the broker sends and the
//! answers it understands. Pure functions, shared by `vesper serve` (which answers) and the
//! mosquitto plugin (which asks).
//!
//! - Params: `json` (a JSON body, even for GET) or `form` (`application/x-www-form-urlencoded`).
//! - Answers: any 2xx passes, then the body is read by response mode (`status`: ignored;
//!   `json`: `{"ok":bool,"error":string}`; `text`: exactly `ok`). Any other status below 500
//!   denies. 500 and above is an error: mosquitto drops the connection.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest request body accepted (go-auth's are a few hundred bytes).
pub const MAX_BODY: usize = 16 * 1024;

/// How answers are written; must match the broker's `http_response_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    /// The HTTP status alone decides (go-auth's default).
    #[default]
    Status,
    /// `{"ok": bool, "error": string}`.
    Json,
    /// The body is exactly `ok`.
    Text,
}

impl FromStr for ResponseMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "status" => Ok(Self::Status),
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            other => Err(format!(
                "response mode `{other}` is not status, json or text"
            )),
        }
    }
}

impl fmt::Display for ResponseMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Status => "status",
            Self::Json => "json",
            Self::Text => "text",
        })
    }
}

/// How request parameters are sent; the broker's `http_params_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamsMode {
    #[default]
    Json,
    Form,
}

/// The fields of any of the three requests (absent ones are `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = GoAuthParams)]
pub struct AuthParams {
    pub username: Option<String>,
    pub password: Option<String>,
    pub clientid: Option<String>,
    pub topic: Option<String>,
    /// 1 read, 2 write, 4 subscribe.
    #[serde(default, deserialize_with = "number_or_text")]
    pub acc: Option<i64>,
}

/// The answer body in `json` response mode (`ok` in text mode; empty in status mode).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = GoAuthAnswer)]
pub struct JsonAnswer {
    pub ok: bool,
    pub error: String,
}

/// `acc` is a JSON number in json mode and text in form mode.
fn number_or_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Acc {
        Number(i64),
        Text(String),
    }
    match Option::<Acc>::deserialize(d)? {
        None => Ok(None),
        Some(Acc::Number(n)) => Ok(Some(n)),
        Some(Acc::Text(t)) => t.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Why a request could not be read (answered as a denial, never as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error(
        "unsupported content type `{0}`; expected application/json or application/x-www-form-urlencoded"
    )]
    ContentType(String),
    #[error("body is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("body is not valid: {0}")]
    Malformed(String),
}

/// Reads request parameters by content type. A JSON body without a content type is accepted too
/// (some proxies drop the header).
pub fn parse_params(content_type: Option<&str>, body: &[u8]) -> Result<AuthParams, ParamsError> {
    if body.len() > MAX_BODY {
        return Err(ParamsError::TooLarge);
    }
    let essence = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match essence.as_deref() {
        Some("application/json") | None | Some("") => {
            serde_json::from_slice(body).map_err(|e| ParamsError::Malformed(e.to_string()))
        }
        Some("application/x-www-form-urlencoded") => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ParamsError::Malformed("not UTF-8".into()))?;
            serde_urlencoded::from_str(text).map_err(|e| ParamsError::Malformed(e.to_string()))
        }
        Some(other) => Err(ParamsError::ContentType(other.to_owned())),
    }
}

/// Encodes request parameters the way go-auth sends them.
pub fn encode_params(mode: ParamsMode, params: &AuthParams) -> (&'static str, Vec<u8>) {
    // The text fields that are present, in go-auth's order; `acc` is a number in JSON.
    let texts = [
        ("username", &params.username),
        ("password", &params.password),
        ("clientid", &params.clientid),
        ("topic", &params.topic),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v.clone()?)));
    match mode {
        ParamsMode::Json => {
            let mut map: serde_json::Map<String, serde_json::Value> =
                texts.map(|(k, v)| (k.to_owned(), v.into())).collect();
            if let Some(acc) = params.acc {
                map.insert("acc".into(), acc.into());
            }
            (
                "application/json",
                serde_json::Value::Object(map).to_string().into_bytes(),
            )
        }
        ParamsMode::Form => {
            let mut pairs: Vec<(&str, String)> = texts.collect();
            if let Some(acc) = params.acc {
                pairs.push(("acc", acc.to_string()));
            }
            let body = serde_urlencoded::to_string(&pairs).expect("pairs encode");
            ("application/x-www-form-urlencoded", body.into_bytes())
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Denied, with a short reason for the broker's log (never a secret).
    Deny(String),
    /// The backend cannot decide (e.g. the registry is unreadable): mosquitto drops the client.
    Error(String),
}

/// An answer: HTTP status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Writes a verdict in a response mode: allow = 200, deny = 403, error = 500.
pub fn answer(mode: ResponseMode, verdict: &Verdict) -> Answer {
    let (status, ok, error) = match verdict {
        Verdict::Allow => (200, true, ""),
        Verdict::Deny(reason) => (403, false, reason.as_str()),
        Verdict::Error(reason) => (500, false, reason.as_str()),
    };
    match mode {
        ResponseMode::Status => Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
        },
        ResponseMode::Json => Answer {
            status,
            content_type: "application/json",
            body: serde_json::to_string(&JsonAnswer {
                ok,
                error: error.to_owned(),
            })
            .expect("an answer serializes"),
        },
        ResponseMode::Text => Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: if ok {
                "ok".to_owned()
            } else {
                error.to_owned()
            },
        },
    }
}

/// Reads an answer the way go-auth does: `Ok(true)` allow, `Ok(false)` deny, `Err` error.
pub fn interpret(mode: ResponseMode, status: u16, body: &[u8]) -> Result<bool, String> {
    if !(200..300).contains(&status) {
        return if status >= 500 {
            Err(format!("backend answered {status}"))
        } else {
            Ok(false)
        };
    }
    match mode {
        ResponseMode::Status => Ok(true),
        ResponseMode::Text => Ok(body == b"ok"),
        ResponseMode::Json => {
            #[derive(Deserialize)]
            struct Reply {
                #[serde(default)]
                ok: bool,
            }
            serde_json::from_slice::<Reply>(body)
                .map(|r| r.ok)
                .map_err(|e| format!("unreadable json answer: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_form_params_read_the_same() {
        let json = parse_params(
            Some("application/json"),
            br#"{"username":"u","clientid":"c","topic":"t","acc":4}"#,
        )
        .unwrap();
        let form = parse_params(
            Some("application/x-www-form-urlencoded"),
            b"username=u&clientid=c&topic=t&acc=4",
        )
        .unwrap();
        assert_eq!(json, form);
        assert_eq!(json.acc, Some(4));
        let text_acc =
            parse_params(Some("application/json; charset=utf-8"), br#"{"acc":"2"}"#).unwrap();
        assert_eq!(text_acc.acc, Some(2));
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(matches!(
            parse_params(Some("text/plain"), b"x"),
            Err(ParamsError::ContentType(_))
        ));
        assert!(matches!(
            parse_params(Some("application/json"), b"{"),
            Err(ParamsError::Malformed(_))
        ));
        assert!(matches!(
            parse_params(Some("application/json"), b"[1]"),
            Err(ParamsError::Malformed(_))
        ));
        assert!(matches!(
            parse_params(Some("application/json"), br#"{"acc":"x"}"#),
            Err(ParamsError::Malformed(_))
        ));
        assert!(matches!(
            parse_params(Some("application/x-www-form-urlencoded"), b"\xff"),
            Err(ParamsError::Malformed(_))
        ));
        assert!(matches!(
            parse_params(None, &vec![b' '; MAX_BODY + 1]),
            Err(ParamsError::TooLarge)
        ));
    }

    #[test]
    fn encoding_round_trips_in_both_modes() {
        let p = AuthParams {
            username: Some("a b".into()),
            password: Some("p&q=".into()),
            clientid: Some("c".into()),
            topic: None,
            acc: Some(1),
        };
        for mode in [ParamsMode::Json, ParamsMode::Form] {
            let (ct, body) = encode_params(mode, &p);
            assert_eq!(parse_params(Some(ct), &body).unwrap(), p);
        }
    }

    #[test]
    fn answers_are_read_back_as_go_auth_reads_them() {
        for mode in [ResponseMode::Status, ResponseMode::Json, ResponseMode::Text] {
            for (verdict, expected) in [
                (Verdict::Allow, Ok(true)),
                (Verdict::Deny("no".into()), Ok(false)),
            ] {
                let a = answer(mode, &verdict);
                assert_eq!(
                    interpret(mode, a.status, a.body.as_bytes()),
                    expected,
                    "{mode} {verdict:?}"
                );
            }
            let e = answer(mode, &Verdict::Error("db".into()));
            assert!(interpret(mode, e.status, e.body.as_bytes()).is_err());
        }
        assert_eq!(interpret(ResponseMode::Text, 200, b"ok\n"), Ok(false));
        assert_eq!(
            interpret(ResponseMode::Json, 200, br#"{"ok":false,"error":"x"}"#),
            Ok(false)
        );
    }
}
