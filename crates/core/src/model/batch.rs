//! Batches: a production run of one board, and what a new one needs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Board, Device, StatusCounts};

/// Largest batch accepted in one request.
pub const MAX_QUANTITY: u32 = 10_000;
/// The subscription plan of a batch when the order names none.
pub const DEFAULT_PLAN: &str = "standard";
/// The outputs of a batch's devices when the order names none.
pub const DEFAULT_OUTPUTS: i64 = 8;

/// What a new batch is made of.
#[derive(Debug, Clone)]
pub struct NewBatch<'a> {
    pub board: &'a Board,
    pub quantity: u32,
    pub subscription_plan: String,
    pub available_outputs: i64,
}

/// A batch without its devices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct BatchSummary {
    /// The batch name, e.g. `B-0042`.
    pub batch_id: String,
    pub board: String,
    pub hw_type: String,
    pub hw_version: String,
    pub quantity: i64,
    pub subscription_plan: String,
    pub available_outputs: i64,
    pub created_at: String,
    pub created_by: String,
    /// Devices per status.
    pub status_counts: StatusCounts,
}

impl BatchSummary {
    /// Devices that have been provisioned (or gone further), the batch's progress.
    pub fn done(&self) -> i64 {
        self.status_counts.done()
    }
}

/// A batch and its devices.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Batch {
    #[serde(flatten)]
    pub summary: BatchSummary,
    pub devices: Vec<Device>,
}

impl Batch {
    pub fn serial_numbers(&self) -> Vec<&str> {
        self.devices
            .iter()
            .map(|d| d.serial_number.as_str())
            .collect()
    }
}
