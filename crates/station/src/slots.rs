//! Which board is in which bench slot. A slot is a configured port path (best a stable
//! `/dev/serial/by-path/...` name, so a slot is a physical USB socket); without configured
//! slots, USB serial adapters fill free slots in the order they appear. Used by the bench's
//! screen and by the headless bench.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use vesper_flash::list_ports;

/// How often the slots' ports are looked at.
pub const PORT_POLL: Duration = Duration::from_millis(200);
/// Slots filled by USB adapters in the order they appear, when none are configured.
pub const AUTO_SLOTS: usize = 4;

/// A board came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotChange {
    Plugged { slot: usize, port: String },
    Unplugged { slot: usize },
}

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

    /// Boards plugged in and pulled out since the last poll.
    pub fn poll(&mut self) -> Vec<SlotChange> {
        if self.configured.is_empty() {
            self.poll_auto()
        } else {
            self.poll_configured()
        }
    }

    fn poll_configured(&mut self) -> Vec<SlotChange> {
        let mut actions = Vec::new();
        for (slot, path) in self.configured.iter().enumerate() {
            // A symlink (by-path, or the demo's slots) leads to the board's device node: a new
            // target means another board, even if the slot was never seen empty.
            let now = std::fs::canonicalize(path).ok();
            if now == self.seen[slot] {
                continue;
            }
            if self.seen[slot].is_some() {
                actions.push(SlotChange::Unplugged { slot });
            }
            if now.is_some() {
                actions.push(SlotChange::Plugged {
                    slot,
                    port: path.display().to_string(),
                });
            }
            self.seen[slot] = now;
        }
        actions
    }

    fn poll_auto(&mut self) -> Vec<SlotChange> {
        let present: Vec<String> = list_ports()
            .into_iter()
            .filter(|p| p.kind.is_candidate())
            .map(|p| p.path)
            .collect();
        let mut actions = Vec::new();
        self.assigned.retain(|path, slot| {
            let keep = present.contains(path);
            if !keep {
                actions.push(SlotChange::Unplugged { slot: *slot });
            }
            keep
        });
        for slot in actions.iter().filter_map(|a| match a {
            SlotChange::Unplugged { slot } => Some(*slot),
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
            actions.push(SlotChange::Plugged { slot, port: path });
        }
        actions
    }
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
        assert!(matches!(
            &w.poll()[..],
            [SlotChange::Plugged { slot: 0, .. }]
        ));
        assert!(w.poll().is_empty());
        std::fs::remove_file(&slot).unwrap();
        std::os::unix::fs::symlink(&b, &slot).unwrap();
        assert!(matches!(
            &w.poll()[..],
            [
                SlotChange::Unplugged { slot: 0 },
                SlotChange::Plugged { slot: 0, .. }
            ]
        ));
        std::fs::remove_file(&slot).unwrap();
        assert!(matches!(&w.poll()[..], [SlotChange::Unplugged { slot: 0 }]));
    }
}
