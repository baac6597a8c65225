//! Where a device is in its life, and the only moves it may make.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a device is in its life. It moves forward only; `revoked` is reachable from anywhere
/// and is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
