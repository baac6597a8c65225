//! What every device is told besides its identity: the bench Wi-Fi it joins (`[wifi]`) and the
//! CAs it verifies the broker (`[mqtt] ca_file`) and the update server (`[ota] ca_file`) with.
//! They go into each device's NVS as `wifi_ssid`, `wifi_pass`, `mqtt_ca` and `ota_ca`
//! (DESIGN.md section 3).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ReadFile;
use crate::nvs::DeviceNetwork;

/// Environment variable holding the Wi-Fi password when `wifi.password_file` is not set (read
/// by the program's edge, never by the parser).
pub const WIFI_PASSWORD_ENV: &str = "VESPER_WIFI_PASSWORD";

/// The most a string NVS entry holds in one page (a PEM longer than this cannot be written).
const MAX_NVS_STRING: usize = 3967;

/// The bench network, with its password once known.
#[derive(Clone, PartialEq, Eq)]
pub struct Wifi {
    pub ssid: String,
    /// From `password_file`, else `$VESPER_WIFI_PASSWORD`; `None` until one of them gives it.
    pub password: Option<String>,
}

impl fmt::Debug for Wifi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wifi")
            .field("ssid", &self.ssid)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The network settings devices are given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceNetworkConfig {
    /// `None` when the configuration has no `[wifi]` table (`vesper config check` refuses that).
    pub wifi: Option<Wifi>,
    /// The CA (PEM) of the broker's certificate; `None`: devices use their built-in bundle.
    pub mqtt_ca: Option<String>,
    /// The CA (PEM) of the update server's certificate; `None`: the built-in bundle.
    pub ota_ca: Option<String>,
}

impl DeviceNetworkConfig {
    /// The keys for a device's NVS image.
    pub fn nvs(&self) -> DeviceNetwork<'_> {
        DeviceNetwork {
            wifi_ssid: self.wifi.as_ref().map(|w| w.ssid.as_str()),
            wifi_pass: self.wifi.as_ref().and_then(|w| w.password.as_deref()),
            mqtt_ca: self.mqtt_ca.as_deref(),
            ota_ca: self.ota_ca.as_deref(),
        }
    }

    /// What is missing for a board to join the network, in words (`vesper config check`).
    pub fn problem(&self) -> Option<String> {
        match &self.wifi {
            None => Some(
                "[wifi] is missing: devices would never join the bench network (set wifi.ssid and \
                 wifi.password_file or $VESPER_WIFI_PASSWORD)"
                    .into(),
            ),
            Some(w) if w.password.is_none() => Some(format!(
                "wifi.password is not set: put it in a file named by wifi.password_file (mode 0600) or in ${WIFI_PASSWORD_ENV}"
            )),
            Some(_) => None,
        }
    }

    /// Fills the Wi-Fi password from the environment's value when no file gave one.
    pub fn with_password_from_env(mut self, value: Option<String>) -> Self {
        if let (Some(wifi), Some(value)) = (self.wifi.as_mut(), value)
            && wifi.password.is_none()
        {
            wifi.password = Some(value);
        }
        self
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWifi {
    ssid: String,
    password_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOta {
    ca_file: Option<PathBuf>,
}

type Invalid = (String, String);

pub(super) fn validate_network(
    wifi: Option<RawWifi>,
    mqtt_ca_file: Option<PathBuf>,
    ota: RawOta,
    base: &Path,
    read: &ReadFile,
) -> Result<DeviceNetworkConfig, Invalid> {
    let text = |key: &str, path: &Path| -> Result<String, Invalid> {
        let path = base.join(path);
        let bytes = read(&path).map_err(|e| {
            (
                key.to_owned(),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        String::from_utf8(bytes).map_err(|_| {
            (
                key.to_owned(),
                format!("{} is not UTF-8 text", path.display()),
            )
        })
    };
    let pem = |key: &str, path: Option<PathBuf>| -> Result<Option<String>, Invalid> {
        let Some(path) = path else { return Ok(None) };
        let pem = text(key, &path)?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err((
                key.to_owned(),
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        if pem.len() > MAX_NVS_STRING {
            return Err((
                key.to_owned(),
                format!(
                    "{} is {} bytes; an NVS string holds at most {MAX_NVS_STRING}",
                    path.display(),
                    pem.len()
                ),
            ));
        }
        Ok(Some(pem))
    };
    let wifi = match wifi {
        None => None,
        Some(raw) => {
            if raw.ssid.is_empty() || raw.ssid.len() > 32 {
                return Err(("wifi.ssid".into(), "must be 1 to 32 bytes".into()));
            }
            let password = match raw.password_file {
                None => None,
                Some(path) => {
                    let password = text("wifi.password_file", &path)?;
                    let password = password.trim_end_matches(['\r', '\n']).to_owned();
                    if password.len() > 64 {
                        return Err((
                            "wifi.password_file".into(),
                            "the password is longer than 64 bytes".into(),
                        ));
                    }
                    Some(password)
                }
            };
            Some(Wifi {
                ssid: raw.ssid,
                password,
            })
        }
    };
    Ok(DeviceNetworkConfig {
        wifi,
        mqtt_ca: pem("mqtt.ca_file", mqtt_ca_file)?,
        ota_ca: pem("ota.ca_file", ota.ca_file)?,
    })
}
