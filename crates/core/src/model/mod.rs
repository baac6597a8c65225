//! The domain model every part of Vesper speaks: devices and their status, batches, boards,
//! roles and audit rows. Plain data and the rules on it; no storage, no transport.

mod audit;
mod batch;
mod board;
mod device;
mod role;
mod status;

pub use audit::{AuditEntry, AuditQuery};
pub use batch::{Batch, BatchSummary, DEFAULT_OUTPUTS, DEFAULT_PLAN, MAX_QUANTITY, NewBatch};
pub use board::{Board, Chip, FlashMode};
pub use device::{
    Device, DeviceEvent, DeviceFilter, DevicePage, DeviceSort, DeviceUsers, FlashReport, Sighting,
    Stats, UserAccess,
};
pub use role::{Role, TokenInfo, TokenPrincipal};
pub use status::{Status, StatusCounts};
