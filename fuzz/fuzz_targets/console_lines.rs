//! A board's serial console as the station reads it after flashing: any bytes, in any chunks,
//! become lines of at most MAX_CONSOLE_LINE characters; never a panic, and memory stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::device::{ConsoleLines, MAX_CONSOLE_LINE};

fuzz_target!(|data: &[u8]| {
    let mut lines = ConsoleLines::default();
    // Chunks of the sizes the first bytes say, as a serial port delivers them.
    let (sizes, bytes) = data.split_at(data.len().min(4));
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let size = usize::from(sizes.get(i % sizes.len().max(1)).copied().unwrap_or(64)).max(1);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        lines.feed(chunk, &mut |line: String| {
            assert!(line.chars().count() <= MAX_CONSOLE_LINE, "{}", line.len());
            assert!(!line.is_empty() && !line.contains('\n'));
        });
        rest = tail;
        i += 1;
    }
});
