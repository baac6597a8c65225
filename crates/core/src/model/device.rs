//! The device record and what is said about devices: filters, pages, reports, sightings, events.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{AuditEntry, InviteState, Status, StatusCounts};

/// A device record, with the seed's document fields and traceability.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Device {
    pub serial_number: String,
    pub hw_type: String,
    pub hw_version: String,
    pub board: String,
    pub batch_id: String,
    pub status: Status,
    pub subscription_plan: String,
    pub available_outputs: i64,
    pub created_at: String,
    pub owner: Option<String>,
    pub users_list: Vec<String>,
    pub assigned_email: Option<String>,
    pub assigned_name: Option<String>,
    pub chip: Option<String>,
    pub mac: Option<String>,
    pub firmware_version: Option<String>,
    pub flashed_at: Option<String>,
    pub provisioned_at: Option<String>,
    pub last_seen: Option<String>,
    pub station: Option<String>,
    /// The station slot that claimed the device for flashing, and until when (a lease).
    pub claimed_by: Option<String>,
    pub claimed_until: Option<String>,
    /// Audit rows about this device, oldest first (filled in by [`Registry::device`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<AuditEntry>>,
    /// The latest invitation e-mail sent for this device (filled in by [`Registry::device`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<InviteState>,
}

/// The fields of a device record that name a person: the customer's e-mail address and name,
/// the users who may use the device, and what a mail provider answered (an SMTP refusal quotes
/// the address; the files provider names server paths), in the states its history records.
const PERSONAL_FIELDS: [&str; 6] = [
    "assigned_email",
    "assigned_name",
    "owner",
    "users_list",
    "last_error",
    "provider_answer",
];

impl Device {
    /// The record as a viewer may see it: without the customer's e-mail address and name or the
    /// users who may use the device, also in the before/after states of its history and in the
    /// invitation's last error.
    pub fn without_personal_data(mut self) -> Self {
        self.assigned_email = None;
        self.assigned_name = None;
        self.owner = None;
        self.users_list.clear();
        // A provider's refusal may quote the customer's address.
        if let Some(invite) = &mut self.invite {
            invite.last_error = None;
        }
        for entry in self.history.iter_mut().flatten() {
            for state in [&mut entry.before, &mut entry.after].into_iter().flatten() {
                if let Value::Object(fields) = state {
                    for field in PERSONAL_FIELDS {
                        fields.remove(field);
                    }
                }
            }
        }
        self
    }
}

/// Filters and paging for the device list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    pub status: Option<Status>,
    pub hw_type: Option<String>,
    pub board: Option<String>,
    /// Batch name, e.g. `B-0042`.
    pub batch: Option<String>,
    /// Created on or after this date or time (RFC 3339 or YYYY-MM-DD).
    pub created_from: Option<String>,
    /// Created before this date or time (a bare date includes that whole day).
    pub created_to: Option<String>,
    /// Substring of serial number, MAC, e-mail, owner or station (e-mail and owner only when
    /// `personal` is set).
    pub text: Option<String>,
    /// Whether the text may match personal data (e-mail addresses, user ids): set by the caller
    /// for technicians and admins, never taken from the query.
    #[serde(skip)]
    pub personal: bool,
    /// Order: `created` (default), `serial_number`, `status`, `board`, `batch`, `flashed`.
    pub sort: Option<DeviceSort>,
    /// Descending order (the default for `created` and `flashed`).
    pub desc: Option<bool>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// Columns the device list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSort {
    #[default]
    Created,
    SerialNumber,
    Status,
    Board,
    Batch,
    Flashed,
}

impl DeviceSort {
    pub const ALL: [DeviceSort; 6] = [
        DeviceSort::Created,
        DeviceSort::SerialNumber,
        DeviceSort::Status,
        DeviceSort::Board,
        DeviceSort::Batch,
        DeviceSort::Flashed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DeviceSort::Created => "created",
            DeviceSort::SerialNumber => "serial number",
            DeviceSort::Status => "status",
            DeviceSort::Board => "board",
            DeviceSort::Batch => "batch",
            DeviceSort::Flashed => "flashed",
        }
    }

    pub fn descending_by_default(self) -> bool {
        matches!(self, DeviceSort::Created | DeviceSort::Flashed)
    }
}

/// The most matching devices a list counts: past it, `total` is this and `total_capped` is set
/// (counting a million rows would cost more than drawing the page).
pub const COUNT_CAP: i64 = 10_000;

/// One page of the device list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DevicePage {
    pub devices: Vec<Device>,
    /// How many devices match, up to [`COUNT_CAP`].
    pub total: i64,
    /// More than `total` devices match (the count stopped at [`COUNT_CAP`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub total_capped: bool,
    pub limit: u32,
    pub offset: u32,
}

/// What the station reports after flashing a board.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlashReport {
    pub chip: String,
    pub mac: String,
    pub firmware_version: String,
    pub station: String,
    /// Move a MAC that is bound to another device (a re-used board) to this one.
    #[serde(default)]
    pub force: bool,
}

/// What a station reports when a board's flash or verification failed: the batch's repeat
/// failures raise an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureReport {
    pub station: String,
    /// The pipeline step that failed (`plan`, `flash`, `report`, `verify`).
    pub step: String,
    pub reason: String,
}

/// The owner and users of a device.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct DeviceUsers {
    pub owner: Option<String>,
    #[serde(default)]
    pub users_list: Vec<String>,
}

/// Whether a phone-app user may use a device, for MQTT ACL checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAccess {
    Allowed,
    NotAllowed,
}

/// Dashboard figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    pub total: i64,
    /// Devices per status, every status present (zero included).
    pub by_status: StatusCounts,
    /// Devices per board name.
    pub by_board: std::collections::BTreeMap<String, i64>,
    pub provisioned_today: i64,
    /// Devices provisioned in each hour of today (UTC), 24 entries.
    #[serde(default)]
    pub provisioned_by_hour: Vec<i64>,
    pub recent: Vec<AuditEntry>,
}

/// A message a device sent, as the heartbeat listener saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub serial_number: String,
    /// When the broker delivered it (RFC 3339).
    pub at: String,
    /// A heartbeat (`{"type":"heartbeat"}` on the data topic) provisions a flashed device; any
    /// other well-formed message only updates `last_seen`.
    pub heartbeat: bool,
    /// The firmware version the device reports, if any.
    pub firmware: Option<String>,
}

/// What changed for a device, for listeners (server-sent events, long polls).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DeviceEvent {
    /// `provisioned`, `seen`, or the API action (`status`, `flashed`, `assigned`, `users`).
    pub kind: String,
    pub serial_number: String,
    pub status: Status,
    pub last_seen: Option<String>,
    pub provisioned_at: Option<String>,
    pub firmware_version: Option<String>,
}

impl DeviceEvent {
    pub fn of(kind: &str, d: &Device) -> Self {
        Self {
            kind: kind.to_owned(),
            serial_number: d.serial_number.clone(),
            status: d.status,
            last_seen: d.last_seen.clone(),
            provisioned_at: d.provisioned_at.clone(),
            firmware_version: d.firmware_version.clone(),
        }
    }
}
