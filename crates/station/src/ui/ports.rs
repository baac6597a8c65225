//! The ports the wizard may flash on (the bench's slots are [`crate::slots`]).

use std::path::{Path, PathBuf};

use vesper_flash::list_ports;

/// Ports for the wizard's picker: USB serial adapters first, then the bench slots' ports. An
/// adapter that is a slot's port is listed once, by the slot's name, so the wizard and the
/// bench call one board by one name.
pub fn wizard_ports(configured: &[PathBuf]) -> Vec<String> {
    let slot_targets: Vec<PathBuf> = configured
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let mut ports: Vec<String> = list_ports()
        .into_iter()
        .filter(|p| p.kind.is_candidate())
        .filter(|p| {
            std::fs::canonicalize(&p.path).map_or(true, |real| !slot_targets.contains(&real))
        })
        .map(|p| p.path)
        .collect();
    for path in configured.iter().filter(|p| Path::exists(p)) {
        let text = path.display().to_string();
        if !ports.contains(&text) {
            ports.push(text);
        }
    }
    ports
}

pub use crate::provision::is_pty;
