//! Flashing boards: a checked plan per device, the espflash-based engine (one blocking job per
//! port, typed events), and the serial ports a bench has.
//!
//! Depends on `vesper-core` only (boards, partitions, firmware manifests). It knows nothing of the
//! backend, the registry or any screen: the station turns its events into whatever it shows.

mod console;
mod engine;
pub mod pio;
mod plan;
mod ports;

pub use console::{ConsoleSession, read_console};
pub use engine::{
    ANY_BOARD, BoardCheck, FlashError, FlashEvent, FlashOptions, FlashOutcome, espflash_chip, flash,
};
pub use plan::{Bundle, FlashPlan, PlanError, PlannedPart};
pub use ports::{PortChange, PortInfo, PortKind, list_ports, watch_ports};
