//! mosquitto-go-auth's HTTP protocol as go-auth itself speaks it, for the tests to judge the
//! backend with (never the product's own `vesper_core::goauth` encoder or interpreter): the
//! bodies go-auth's HTTP backend sends in each `http_params_mode`, and how it reads an answer in
//! each `http_response_mode` (DESIGN.md section 3, from go-auth's `backends/http.go`: a 2xx
//! passes as the mode reads its body, another status below 500 denies, 500 and above is an
//! error).

use serde_json::json;

/// How go-auth takes an answer: 2xx passes (then the body is read by response mode), any other
/// status below 500 denies, 500 and above is an error (mosquitto drops the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Pass,
    Deny,
    Error,
}

/// go-auth's `http_response_mode`, and how it reads a 2xx body in it.
pub fn go_auth_reads(mode: &str, status: u16, body: &str) -> Reading {
    match status {
        200..=299 => {
            let pass = match mode {
                "status" => true,
                "json" => serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["ok"].as_bool())
                    .unwrap_or(false),
                "text" => body == "ok",
                other => panic!("no response mode {other}"),
            };
            if pass { Reading::Pass } else { Reading::Deny }
        }
        500.. => Reading::Error,
        _ => Reading::Deny,
    }
}

/// The body go-auth sends in `params_mode`: JSON with `acc` a number, or a form with every
/// field text; and its content type.
pub fn body(params_mode: &str, fields: &[(String, String)]) -> (&'static str, String) {
    match params_mode {
        "json" => {
            let mut map = serde_json::Map::new();
            for (k, v) in fields {
                let value = if k == "acc" {
                    json!(v.parse::<i64>().unwrap())
                } else {
                    json!(v)
                };
                map.insert(k.clone(), value);
            }
            (
                "application/json",
                serde_json::Value::Object(map).to_string(),
            )
        }
        "form" => {
            let text = fields
                .iter()
                .map(|(k, v)| format!("{k}={}", form_escape(v)))
                .collect::<Vec<_>>()
                .join("&");
            ("application/x-www-form-urlencoded", text)
        }
        other => panic!("no params mode {other}"),
    }
}

/// `application/x-www-form-urlencoded` escaping, as Go's `url.Values.Encode` does it.
pub fn form_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Reading {
    /// As the tests' `App::ask` reports it: granted, denied, or why not answered.
    pub fn as_result(self) -> Result<bool, String> {
        match self {
            Reading::Pass => Ok(true),
            Reading::Deny => Ok(false),
            Reading::Error => Err("a server error: go-auth refuses the client".into()),
        }
    }
}
