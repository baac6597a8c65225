//! The `vesper` binary's library: the command line's edge (finding and reading the config file,
//! atomic output files), the demo and its embedded broker, and one place that names every crate
//! of the workspace, so that tests and benchmarks reach any layer as `vesper::...`.
//!
//! The layers live in their own crates (README "Layout"): `vesper-core` (model and contracts, no
//! I/O), `vesper-store`, `vesper-backend`, `vesper-client`, `vesper-flash`, `vesper-sim`,
//! `vesper-labels` and `vesper-station`. This crate sits on top of all of them.

pub mod backup;
pub mod boards;
pub mod broker;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod files;

pub use vesper_backend as server;
pub use vesper_backend::users;
pub use vesper_client as client;
pub use vesper_core::{
    acl, clientid, credentials, device, eol, goauth, model, nvs, partitions, serial, wire,
};
pub use vesper_flash as flashing;
pub use vesper_labels as labels;
pub use vesper_sim as sim;
pub use vesper_station as station;
pub use vesper_store as registry;

/// Firmware bundles: the manifest types (core) and the release store of `vesper serve`.
pub mod firmware {
    pub use vesper_backend::releases::*;
    pub use vesper_core::firmware::*;
    pub use vesper_flash::pio;
}
