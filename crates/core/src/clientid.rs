//! Which MQTT client ids a login may use (DESIGN.md section 3, "Client ids").
//!
//! MQTT hands an existing session to a new connection with the same client id, so a login that
//! could pick any client id could knock any device, or the backend's own listener, off the
//! broker. The client id is therefore part of the login: each login owns the ids that start with
//! its own name, and nobody may use an id that belongs to a device or the service account.
//!
//! | login | allowed client ids |
//! |---|---|
//! | device `SN` | `SN`, or `SN-` + 1..=23 of `[A-Za-z0-9_-]` |
//! | phone-app user `UID` | `UID`, or `UID-` + 1..=40 of `[A-Za-z0-9_-]` |
//! | service account `NAME` | `NAME`, or `NAME-` + 1..=40 of `[A-Za-z0-9_-]` |
//!
//! Anything else (another login's id, an empty id, wildcards, NUL, over 64 bytes) is refused.

use crate::serial::SerialNumber;

/// Longest client id accepted, in bytes.
pub const MAX_CLIENT_ID: usize = 64;
/// Longest suffix after `SN-` for a device.
pub const MAX_DEVICE_SUFFIX: usize = 23;
/// Longest suffix after `UID-` or `NAME-` for a user or the service account.
pub const MAX_ACCOUNT_SUFFIX: usize = 40;

/// Who is logging in, as far as client ids care.
#[derive(Debug, Clone, Copy)]
pub enum Login<'a> {
    Device(&'a SerialNumber),
    User(&'a str),
    Service(&'a str),
}

/// Why a client id was refused (a short reason for the broker's log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdError {
    #[error("the client id is empty")]
    Empty,
    #[error("the client id is longer than {MAX_CLIENT_ID} bytes")]
    TooLong,
    #[error("the client id is not the login's name or the name, `-` and a short suffix")]
    NotOwn,
    #[error("the client id belongs to another login")]
    Reserved,
}

/// Checks that `login` may use `client_id`; `service` is the configured service account, whose
/// ids nobody else may take.
pub fn check(login: Login<'_>, client_id: &str, service: &str) -> Result<(), ClientIdError> {
    let (name, max_suffix) = match login {
        Login::Device(sn) => (sn.as_str(), MAX_DEVICE_SUFFIX),
        Login::User(uid) => (uid, MAX_ACCOUNT_SUFFIX),
        Login::Service(name) => (name, MAX_ACCOUNT_SUFFIX),
    };
    check_shape(name, client_id, max_suffix)?;
    if matches!(login, Login::User(_)) && reserved(client_id, service) {
        return Err(ClientIdError::Reserved);
    }
    Ok(())
}

/// The shape rule alone (no knowledge of other logins): `client_id` is `name` or
/// `name-SUFFIX` with 1..=`max_suffix` characters of `[A-Za-z0-9_-]`, at most 64 bytes.
/// The broker plugin applies this before asking the backend.
pub fn check_shape(name: &str, client_id: &str, max_suffix: usize) -> Result<(), ClientIdError> {
    if client_id.is_empty() {
        return Err(ClientIdError::Empty);
    }
    if client_id.len() > MAX_CLIENT_ID {
        return Err(ClientIdError::TooLong);
    }
    if name.is_empty() {
        return Err(ClientIdError::NotOwn);
    }
    let Some(rest) = client_id.strip_prefix(name) else {
        return Err(ClientIdError::NotOwn);
    };
    if rest.is_empty() {
        return Ok(());
    }
    match rest.strip_prefix('-') {
        Some(suffix)
            if (1..=max_suffix).contains(&suffix.len()) && suffix.bytes().all(suffix_byte) =>
        {
            Ok(())
        }
        _ => Err(ClientIdError::NotOwn),
    }
}

/// Whether the id is one a device or the service account may use (so no user may take it).
fn reserved(client_id: &str, service: &str) -> bool {
    let device = client_id
        .get(..crate::serial::LENGTH)
        .and_then(|head| head.parse::<SerialNumber>().ok())
        .is_some_and(|sn| check_shape(sn.as_str(), client_id, MAX_DEVICE_SUFFIX).is_ok());
    device || check_shape(service, client_id, MAX_ACCOUNT_SUFFIX).is_ok()
}

fn suffix_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "vesper-backend";

    fn sn(s: &str) -> SerialNumber {
        s.parse().unwrap()
    }

    #[test]
    fn devices_use_their_serial_number_and_a_short_suffix() {
        let a = sn("PV-26A18-BC02R-X7KQA");
        let ok = |id: &str| check(Login::Device(&a), id, SERVICE);
        assert_eq!(ok("PV-26A18-BC02R-X7KQA"), Ok(()));
        assert_eq!(ok("PV-26A18-BC02R-X7KQA-ota_2"), Ok(()));
        assert_eq!(
            ok(&format!("PV-26A18-BC02R-X7KQA-{}", "x".repeat(23))),
            Ok(())
        );
        for bad in [
            "PV-26L31-BP01R-ZZ234",
            "PV-26A18-BC02R-X7KQA-",
            "PV-26A18-BC02R-X7KQAB",
            "PV-26A18-BC02R-X7KQA-a/b",
            "PV-26A18-BC02R-X7KQA-a+b",
            "PV-26A18-BC02R-X7KQA-#",
            "PV-26A18-BC02R-X7KQA-\0",
            "vesper-backend-heartbeats",
            "pv-26a18-bc02r-x7kqa",
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
        assert!(ok(&format!("PV-26A18-BC02R-X7KQA-{}", "x".repeat(24))).is_err());
        assert_eq!(ok(""), Err(ClientIdError::Empty));
    }

    #[test]
    fn users_cannot_take_device_or_service_ids() {
        let user = |uid: &str, id: &str| check(Login::User(uid), id, SERVICE);
        assert_eq!(user("uid-owner", "uid-owner"), Ok(()));
        assert_eq!(user("uid-owner", "uid-owner-phone-1"), Ok(()));
        assert!(user("uid-owner", "uid-other").is_err());
        // A uid that is a prefix of a reserved id cannot reach it through the suffix.
        assert_eq!(
            user("vesper", "vesper-backend-heartbeats"),
            Err(ClientIdError::Reserved)
        );
        assert_eq!(
            user("PV-26A18-BC02R", "PV-26A18-BC02R-X7KQA"),
            Err(ClientIdError::Reserved)
        );
        assert_eq!(
            user("PV-26A18-BC02R", "PV-26A18-BC02R-X7KQA-x"),
            Err(ClientIdError::Reserved)
        );
        let long = "u".repeat(30);
        assert_eq!(
            user(&long, &format!("{long}-{}", "x".repeat(34))),
            Err(ClientIdError::TooLong)
        );
    }

    #[test]
    fn the_service_account_uses_its_own_ids() {
        let service = |id: &str| check(Login::Service(SERVICE), id, SERVICE);
        assert_eq!(service("vesper-backend"), Ok(()));
        assert_eq!(service("vesper-backend-heartbeats"), Ok(()));
        assert!(service("PV-26A18-BC02R-X7KQA").is_err());
        assert!(service("watcher").is_err());
    }
}
