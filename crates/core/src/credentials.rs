//! MQTT device credentials: username = serial number, password = the first 32 hex characters of
//! HMAC-SHA256(key = master secret, message = serial number).
//!
//! Nothing is stored: the backend derives the password again on every login and compares in
//! constant time. The master secret stays in the backend; devices receive only their own derived
//! password, in their NVS partition.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::serial::SerialNumber;

/// Environment variable that holds the master secret.
pub const SECRET_ENV: &str = "MQTT_SECRET";

/// Length of a device password in hex characters.
pub const PASSWORD_LEN: usize = 32;

/// Shortest master secret accepted, in bytes. Any device's NVS holds a (serial number, HMAC)
/// pair, so a short or guessable secret could be found offline, and with it every password.
pub const MIN_SECRET_LEN: usize = 32;

/// Errors loading the master secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the MQTT master secret is not set: export {SECRET_ENV}=... (the same value the backend uses)"
    )]
    Missing,
    #[error("the MQTT master secret in {0} is empty")]
    Empty(String),
    #[error(
        "the MQTT master secret in {origin} is {len} bytes; it must be at least {MIN_SECRET_LEN} bytes of random data. \
         Make one with `vesper mqtt secret new > mqtt_secret && chmod 600 mqtt_secret` and name that file in serve.secret_file"
    )]
    Weak { origin: String, len: usize },
}

/// The fleet-wide master secret. Its `Debug` output is redacted so it never reaches a log.
#[derive(Clone)]
pub struct MasterSecret(Vec<u8>);

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(<redacted>)")
    }
}

impl MasterSecret {
    /// Wraps secret bytes; an empty or short secret (under [`MIN_SECRET_LEN`] bytes) is refused,
    /// because every device password could then be guessed offline.
    pub fn new(bytes: impl Into<Vec<u8>>, origin: &str) -> Result<Self, SecretError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(SecretError::Empty(origin.to_owned()));
        }
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::Weak {
                origin: origin.to_owned(),
                len: bytes.len(),
            });
        }
        Ok(Self(bytes))
    }

    /// A new secret: 32 bytes from the operating system's random source, as 64 hex characters
    /// (what `vesper mqtt secret new` prints).
    pub fn generate_hex() -> String {
        use rand::Rng;
        // `rand::rng()` is a CSPRNG seeded from the operating system.
        let mut bytes = [0u8; MIN_SECRET_LEN];
        rand::rng().fill(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The secret from the value of the `MQTT_SECRET` environment variable, as read by the caller
    /// (`std::env::var_os(SECRET_ENV)`).
    pub fn from_env_value(value: Option<std::ffi::OsString>) -> Result<Self, SecretError> {
        match value {
            None => Err(SecretError::Missing),
            Some(value) => Self::new(value.into_encoded_bytes(), SECRET_ENV),
        }
    }

    /// The secret from a file's bytes, as read by the caller; one trailing newline is ignored
    /// (as `echo secret > file` adds one). `origin` names the file in messages.
    pub fn from_file_contents(mut bytes: Vec<u8>, origin: &str) -> Result<Self, SecretError> {
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Self::new(bytes, origin)
    }

    /// The password of one device.
    pub fn device_password(&self, sn: &SerialNumber) -> DevicePassword {
        derive(&self.0, sn.as_str())
    }

    /// The MQTT password of a backend service account: derived like a device's, from
    /// `service:NAME`, so the backend needs no second secret (and no device can collide with it:
    /// `service:...` is never a serial number).
    pub fn service_password(&self, account: &str) -> DevicePassword {
        derive(&self.0, &format!("service:{account}"))
    }

    /// Whether `candidate` is the password of the device named `username`, in constant time.
    ///
    /// A username that is not a serial number never matches: it cannot name a device.
    pub fn verify(&self, username: &str, candidate: &str) -> bool {
        let Ok(sn) = username.parse::<SerialNumber>() else {
            return false;
        };
        self.device_password(&sn).matches(candidate)
    }
}

/// A derived device password (32 lower-case hex characters). `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct DevicePassword(String);

impl fmt::Debug for DevicePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DevicePassword(<redacted>)")
    }
}

impl DevicePassword {
    /// The password text, for the NVS image and the operator's screen.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a candidate of any length.
    pub fn matches(&self, candidate: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }
}

fn derive(secret: &[u8], message: &str) -> DevicePassword {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(PASSWORD_LEN);
    for byte in &digest[..PASSWORD_LEN / 2] {
        hex.push_str(&format!("{byte:02x}"));
    }
    DevicePassword(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sn(s: &str) -> SerialNumber {
        s.parse().unwrap()
    }

    /// A 32-byte test secret (the design's vectors use shorter ones; see `design_vectors`).
    const TEST_SECRET: &str = "vesper-test-secret-0123456789abcdef";

    fn secret(s: &str) -> MasterSecret {
        MasterSecret::new(s, "test").unwrap()
    }

    #[test]
    fn design_vectors() {
        let cases = [
            (
                "vesper-test-secret",
                "PV-26A18-BC02R-X7KQA",
                "25fd3d9acfa670d8cb7a309e440d2ef1",
            ),
            (
                "vesper-test-secret",
                "PV-26L31-BP01R-ZZ234",
                "5c9dac448f58bee9cb014ecdaae7e0b7",
            ),
            (
                "another secret",
                "PV-26A18-BC02R-X7KQA",
                "0dd8ca578abc919d983e8dbba9b13fd9",
            ),
        ];
        // The design's vector secrets are shorter than a usable secret, so the derivation is
        // checked directly.
        for (key, serial, password) in cases {
            assert_eq!(derive(key.as_bytes(), serial).expose(), password);
        }
    }

    #[test]
    fn verify_accepts_only_the_exact_password() {
        let s = secret(TEST_SECRET);
        let user = "PV-26A18-BC02R-X7KQA";
        let right = s.device_password(&sn(user)).expose().to_owned();
        assert!(s.verify(user, &right));
        assert!(!s.verify(user, &right.to_uppercase()));
        assert!(!s.verify(user, &right[..31]));
        assert!(!s.verify(user, &format!("{right}0")));
        assert!(!s.verify(user, ""));
        assert!(!s.verify("PV-26A18-BC02R-X7KQB", &right));
        assert!(!s.verify("not-a-serial", &right));
    }

    #[test]
    fn secrets_never_print() {
        let s = secret(TEST_SECRET);
        assert!(!format!("{s:?}").contains("vesper"));
        let p = s.device_password(&sn("PV-26A18-BC02R-X7KQA"));
        assert!(!format!("{p:?}").contains(&p.expose()[..4]));
    }

    #[test]
    fn service_password_differs_from_any_device_password() {
        let s = secret(TEST_SECRET);
        let service = s.service_password("vesper-backend");
        assert_eq!(service.expose().len(), 32);
        assert_ne!(service, s.service_password("other"));
        assert!(
            !s.verify("vesper-backend", service.expose()),
            "verify() is for devices only"
        );
    }

    #[test]
    fn empty_and_short_secrets_are_refused() {
        assert!(matches!(
            MasterSecret::new("", "MQTT_SECRET"),
            Err(SecretError::Empty(_))
        ));
        let short = MasterSecret::new("vesper-test-secret", "MQTT_SECRET").unwrap_err();
        assert!(matches!(short, SecretError::Weak { len: 18, .. }));
        assert!(
            short.to_string().contains("vesper mqtt secret new"),
            "{short}"
        );
        assert!(MasterSecret::new(&TEST_SECRET[..31], "t").is_err());
        assert!(MasterSecret::new(TEST_SECRET, "t").is_ok());
    }

    #[test]
    fn generated_secrets_are_64_hex_characters_and_differ() {
        let (a, b) = (MasterSecret::generate_hex(), MasterSecret::generate_hex());
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert!(MasterSecret::new(a, "generated").is_ok());
    }

    #[test]
    fn secret_file_drops_one_trailing_newline() {
        let s = MasterSecret::from_file_contents(format!("{TEST_SECRET}\r\n").into_bytes(), "file")
            .unwrap();
        assert_eq!(
            s.device_password(&sn("PV-26A18-BC02R-X7KQA")),
            derive(TEST_SECRET.as_bytes(), "PV-26A18-BC02R-X7KQA")
        );
    }
}
