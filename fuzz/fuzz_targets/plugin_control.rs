//! What the broker plugin reads from the backend and the broker: `$CONTROL/vesper/v1` command
//! payloads and control-feed pages. A command or nothing, a page or an error; never a panic (a
//! panic would take mosquitto down). A command names a username a client may carry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_mosquitto::checker::Command;
use vesper_mosquitto::feed::Page;

fuzz_target!(|data: &[u8]| {
    if let Some(command) = Command::parse(data) {
        let name = command.username();
        assert!(!name.is_empty() && !name.contains(['+', '#', '\0']));
    }
    if let Ok(page) = Page::parse(data) {
        for command in page.commands() {
            assert!(!command.username().is_empty());
        }
    }
});
