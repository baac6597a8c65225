//! The domain model every part of Vesper speaks: devices and their status, batches, boards,
//! roles, audit rows and queued e-mails. Plain data and the rules on it; no storage, no transport.

mod audit;
mod batch;
mod board;
mod deploy;
mod device;
mod mail;
mod role;
mod status;

pub use audit::{ACCESS_ACTIONS, AccessChanges, AuditEntry, AuditQuery};
pub use batch::{Batch, BatchSummary, DEFAULT_OUTPUTS, DEFAULT_PLAN, MAX_QUANTITY, NewBatch};
pub use board::{Board, Chip, FlashMode};
pub use deploy::{DeployReceipt, DeployRun, DeployState, Push, read_push};
pub use device::{
    COUNT_CAP, Device, DeviceEvent, DeviceFilter, DevicePage, DeviceSort, DeviceUsers,
    FailureReport, FlashReport, Sighting, Stats, UserAccess,
};
pub use mail::{
    AlertKind, InviteState, MailContent, MailOutcome, MailStatus, OutboxMessage, is_email_address,
    parse_mailbox,
};
pub use role::{Role, TokenInfo, TokenPrincipal};
pub use status::{Status, StatusCounts};
