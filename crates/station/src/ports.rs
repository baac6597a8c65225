//! Which board is in which bench slot. A slot is a configured port path (best a stable
//! `/dev/serial/by-path/...` name, so a slot is a physical USB socket); without configured
//! slots, USB serial adapters fill free slots in the order they appear.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::action::Action;
use vesper_flash::list_ports;

/// Polls the slots' ports and tells what changed.
#[derive(Debug)]
pub struct SlotWatcher {
    configured: Vec<PathBuf>,
    /// What each slot's port resolved to at the last poll.
    seen: Vec<Option<PathBuf>>,
    /// Auto mode: port path -> slot.
    assigned: HashMap<String, usize>,
}

impl SlotWatcher {
    /// `configured` slots, or `auto_slots` slots filled by USB adapters when none are configured.
    pub fn new(configured: &[PathBuf], auto_slots: usize) -> SlotWatcher {
        let n = if configured.is_empty() {
            auto_slots
        } else {
            configured.len()
        };
        SlotWatcher {
            configured: configured.to_vec(),
            seen: vec![None; n],
            assigned: HashMap::new(),
        }
    }

    /// The slots' labels, for the screen.
    pub fn labels(&self) -> Vec<String> {
        if self.configured.is_empty() {
            return vec!["auto".to_owned(); self.seen.len()];
        }
        self.configured
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }

    /// Plug and unplug actions since the last poll.
    pub fn poll(&mut self) -> Vec<Action> {
        if self.configured.is_empty() {
            self.poll_auto()
        } else {
            self.poll_configured()
        }
    }

    fn poll_configured(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for (slot, path) in self.configured.iter().enumerate() {
            // A symlink (by-path, or the demo's slots) leads to the board's device node: a new
            // target means another board, even if the slot was never seen empty.
            let now = std::fs::canonicalize(path).ok();
            if now == self.seen[slot] {
                continue;
            }
            if self.seen[slot].is_some() {
                actions.push(Action::Unplugged { slot });
            }
            if now.is_some() {
                actions.push(Action::Plugged {
                    slot,
                    port: path.display().to_string(),
                });
            }
            self.seen[slot] = now;
        }
        actions
    }

    fn poll_auto(&mut self) -> Vec<Action> {
        let present: Vec<String> = list_ports()
            .into_iter()
            .filter(|p| p.kind.is_candidate())
            .map(|p| p.path)
            .collect();
        let mut actions = Vec::new();
        self.assigned.retain(|path, slot| {
            let keep = present.contains(path);
            if !keep {
                actions.push(Action::Unplugged { slot: *slot });
            }
            keep
        });
        for slot in actions.iter().filter_map(|a| match a {
            Action::Unplugged { slot } => Some(*slot),
            _ => None,
        }) {
            self.seen[slot] = None;
        }
        for path in present {
            if self.assigned.contains_key(&path) {
                continue;
            }
            let Some(slot) = self.seen.iter().position(Option::is_none) else {
                break;
            };
            self.seen[slot] = Some(PathBuf::from(&path));
            self.assigned.insert(path.clone(), slot);
            actions.push(Action::Plugged { slot, port: path });
        }
        actions
    }
}

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

/// Pseudo-terminals (simulated boards) have no DTR/RTS lines to reset with.
pub fn is_pty(port: &str) -> bool {
    std::fs::canonicalize(port)
        .map(|p| p.starts_with("/dev/pts"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_sees_boards_come_go_and_be_swapped() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let slot = dir.path().join("slot-1");
        let mut w = SlotWatcher::new(std::slice::from_ref(&slot), 4);
        assert_eq!(w.labels().len(), 1);
        assert!(w.poll().is_empty());
        std::os::unix::fs::symlink(&a, &slot).unwrap();
        assert!(matches!(&w.poll()[..], [Action::Plugged { slot: 0, .. }]));
        assert!(w.poll().is_empty());
        std::fs::remove_file(&slot).unwrap();
        std::os::unix::fs::symlink(&b, &slot).unwrap();
        assert!(matches!(
            &w.poll()[..],
            [
                Action::Unplugged { slot: 0 },
                Action::Plugged { slot: 0, .. }
            ]
        ));
        std::fs::remove_file(&slot).unwrap();
        assert!(matches!(&w.poll()[..], [Action::Unplugged { slot: 0 }]));
    }
}
