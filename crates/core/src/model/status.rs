//! Where a device is in its life, and the only moves it may make.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a device is in its life. It moves forward only; `revoked` is reachable from anywhere
/// and is final.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Manufactured,
    Flashed,
    Provisioned,
    Sold,
    Claimed,
    Active,
    Revoked,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Manufactured,
        Status::Flashed,
        Status::Provisioned,
        Status::Sold,
        Status::Claimed,
        Status::Active,
        Status::Revoked,
    ];
    pub const ORDER_TEXT: &'static str =
        "manufactured -> flashed -> provisioned -> sold -> claimed -> active";

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Manufactured => "manufactured",
            Status::Flashed => "flashed",
            Status::Provisioned => "provisioned",
            Status::Sold => "sold",
            Status::Claimed => "claimed",
            Status::Active => "active",
            Status::Revoked => "revoked",
        }
    }

    /// Whether a device in this status counts as done for its batch: provisioned, or further
    /// along (sold, claimed, active); not waiting, not flashed only, not revoked.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            Status::Provisioned | Status::Sold | Status::Claimed | Status::Active
        )
    }

    /// Whether a device may move from `self` to `to`: forward along the chain (steps may be
    /// skipped), or to `revoked` from any state but `revoked`.
    pub fn may_move_to(self, to: Status) -> bool {
        match (self, to) {
            (Status::Revoked, _) => false,
            (_, Status::Revoked) => true,
            (from, to) => to > from,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "status `{s}` is not one of {}, revoked",
                    Status::ORDER_TEXT.replace(" ->", ",")
                )
            })
    }
}

/// How many devices are in each status. Serialized as a JSON object keyed by status name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct StatusCounts(pub BTreeMap<Status, i64>);

impl StatusCounts {
    /// Devices in `status`.
    pub fn get(&self, status: Status) -> i64 {
        self.0.get(&status).copied().unwrap_or(0)
    }

    /// Adds `by` (possibly negative) to `status`, never below zero.
    pub fn add(&mut self, status: Status, by: i64) {
        let n = self.0.entry(status).or_insert(0);
        *n = (*n + by).max(0);
    }

    /// Devices that count as done ([`Status::is_done`]).
    pub fn done(&self) -> i64 {
        self.0
            .iter()
            .filter(|(status, _)| status.is_done())
            .map(|(_, n)| n)
            .sum()
    }

    /// The counts of a list of devices' statuses.
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> Self {
        let mut counts = Self::default();
        for status in statuses {
            counts.add(status, 1);
        }
        counts
    }
}
