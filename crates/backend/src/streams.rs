//! Event streams and long polls are held open for minutes: each token may hold at most
//! [`MAX_STREAMS_PER_TOKEN`] at once, so one viewer token cannot tie up the backend's
//! connections and tasks (one more is 429 with `Retry-After`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ApiError;

/// Streams (server-sent events and long polls) one token may hold at once: a station with
/// four slots holds four long polls and a screen's stream or two.
pub const MAX_STREAMS_PER_TOKEN: usize = 32;

/// The streams each token holds now.
#[derive(Debug, Default, Clone)]
pub struct StreamSlots(Arc<Mutex<HashMap<String, usize>>>);

/// One stream's place; given back when dropped (the stream or the poll ended).
#[derive(Debug)]
pub struct StreamSlot {
    slots: StreamSlots,
    token: String,
}

impl StreamSlots {
    /// A place for one more stream of `token`, or 429.
    pub fn take(&self, token: &str) -> Result<StreamSlot, ApiError> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(token.to_owned()).or_default();
        if *count >= MAX_STREAMS_PER_TOKEN {
            return Err(ApiError::TooManyStreams);
        }
        *count += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            token: token.to_owned(),
        })
    }

    /// How many streams `token` holds.
    pub fn held(&self, token: &str) -> usize {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.get(token).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut held = self.slots.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.token) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.token);
            }
        }
    }
}
