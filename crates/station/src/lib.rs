//! Vesper Station: provisioning boards at a bench, with or without a screen.
//!
//! [`provision`] is the one provisioning pipeline (claim, plan, flash with the board check,
//! report, verify), each step a typed event; it knows no screen and is used by the bench, the
//! wizard, `vesper flash` and the headless bench alike. [`ui`] is the terminal workstation that
//! renders those events. This crate depends on `vesper-core`, `vesper-client`, `vesper-flash`
//! and `vesper-labels`; never on the backend, the registry's storage or the simulator.

pub mod eol;
pub mod headless;
pub mod provision;
pub mod slots;
pub mod ui;

pub use ui::*;
