//! What the plugin remembers: answers keyed by a digest of the question (bounded, least
//! recently used out, errors never stored), and the questions still on their way to the backend,
//! which later askers of the same question wait for instead of asking again.

use std::num::NonZeroUsize;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;
use sha2::{Digest, Sha256};

/// The digest a question is cached under.
pub type Key = [u8; 32];

/// A digest of the parts of a question, each length-prefixed so that no two questions share one.
pub fn digest(parts: &[&[u8]]) -> Key {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// One cached answer: the grant, when it expires, and whose it is (for [`Cache::forget`]).
struct Entry {
    granted: bool,
    until: Instant,
    user: Key,
}

/// Grants and denials with their expiry, at most `capacity` of them (least recently used out).
/// Errors are never stored.
pub struct Cache {
    entries: LruCache<Key, Entry>,
}

impl Cache {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: LruCache::new(capacity),
        }
    }

    pub fn get(&mut self, key: &Key) -> Option<bool> {
        match self.entries.get(key) {
            Some(entry) if entry.until > Instant::now() => Some(entry.granted),
            Some(_) => {
                self.entries.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&mut self, key: Key, user: Key, granted: bool, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let until = Instant::now() + ttl;
        self.entries.put(
            key,
            Entry {
                granted,
                until,
                user,
            },
        );
    }

    /// Drops every answer about one username; returns how many.
    pub fn forget(&mut self, user: &Key) -> usize {
        let keys: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| &e.user == user)
            .map(|(k, _)| *k)
            .collect();
        for key in &keys {
            self.entries.pop(key);
        }
        keys.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A question on its way to the backend; later askers of the same question wait for its answer.
#[derive(Default)]
pub struct Flight {
    answer: Mutex<Option<Result<bool, String>>>,
    done: Condvar,
}

impl Flight {
    /// Gives the answer to everyone waiting.
    pub fn land(&self, answer: Result<bool, String>) {
        *lock(&self.answer) = Some(answer);
        self.done.notify_all();
    }

    /// The answer, waiting for it at most `patience`; `None` if it has not come by then.
    pub fn wait(&self, patience: Duration) -> Option<Result<bool, String>> {
        let deadline = Instant::now() + patience;
        let mut slot = lock(&self.answer);
        while slot.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            slot = self
                .done
                .wait_timeout(slot, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        slot.clone()
    }
}

/// A lock that survives a panic in another holder (the data are plain answers).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires() {
        let mut cache = Cache::new(NonZeroUsize::new(10).unwrap());
        let (k, zero, user) = (digest(&[b"k"]), digest(&[b"zero"]), digest(&[b"u"]));
        cache.put(k, user, true, Duration::from_millis(30));
        cache.put(zero, user, true, Duration::ZERO);
        assert_eq!(cache.get(&k), Some(true));
        assert_eq!(cache.get(&zero), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&k), None);
    }

    #[test]
    fn digests_keep_fields_apart() {
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_ne!(digest(&[b"a", b""]), digest(&[b"a"]));
    }

    #[test]
    fn a_flight_is_waited_for_at_most_the_patience_given() {
        let flight = std::sync::Arc::new(Flight::default());
        let started = Instant::now();
        assert_eq!(flight.wait(Duration::from_millis(30)), None);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(flight.wait(Duration::ZERO), None);
        let lander = flight.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            lander.land(Ok(true));
        });
        assert_eq!(flight.wait(Duration::from_secs(5)), Some(Ok(true)));
        t.join().unwrap();
        assert_eq!(
            flight.wait(Duration::ZERO),
            Some(Ok(true)),
            "an answer stays"
        );
    }
}
