//! End to end in a real terminal: the `vesper` binary runs `vesper demo` inside tmux; the test
//! types like an operator (send-keys), reads the screen (capture-pane), and checks the result
//! through the backend's API: a batch of four, all provisioned in bench mode with their MACs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &[&str], width: u16, height: u16) -> Tmux {
        Self::start_with(command, width, height, "main", &[])
    }

    /// A session on a socket of its own (`name`), the command run with `env` set.
    fn start_with(
        command: &[&str],
        width: u16,
        height: u16,
        name: &str,
        env: &[(&str, &str)],
    ) -> Tmux {
        let socket = format!("vesper-e2e-{}-{name}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "e2e",
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(
                env.iter()
                    .flat_map(|(k, v)| ["-e".to_owned(), format!("{k}={v}")]),
            )
            .args(command)
            .status()
            .expect("tmux is installed by the test command");
        assert!(status.success(), "tmux did not start");
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            assert!(self.tmux(&["send-keys", "-t", "e2e", key]).status.success());
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// The screen with its colours and attributes as escape sequences.
    fn screen_with_styles(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-e", "-p", "-t", "e2e"]).stdout)
            .into_owned()
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "e2e"]).stdout)
            .into_owned()
    }

    fn running(&self) -> bool {
        self.tmux(&["has-session", "-t", "e2e"]).status.success()
    }

    /// Waits until the screen shows `text` `times` times; fails with the last screen.
    fn wait_for_n(&self, text: &str, times: usize, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= times {
                return screen;
            }
            assert!(
                start.elapsed() < timeout && self.running(),
                "`{text}` did not appear {times}x within {timeout:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_for(&self, text: &str, timeout: Duration) -> String {
        self.wait_for_n(text, 1, timeout)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn api(dir: &Path) -> (String, String) {
    let info: Value =
        serde_json::from_slice(&std::fs::read(dir.join("demo.json")).unwrap()).unwrap();
    (
        info["api"].as_str().unwrap().to_owned(),
        info["token"].as_str().unwrap().to_owned(),
    )
}

fn get(api: &(String, String), path: &str) -> Value {
    reqwest::blocking::Client::new()
        .get(format!("{}{path}", api.0))
        .bearer_auth(&api.1)
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn the_demo_provisions_a_batch_of_four_in_bench_mode() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let binary = env!("CARGO_BIN_EXE_vesper");
    let tmux = Tmux::start(&[binary, "demo", "--keep", data.to_str().unwrap()], 120, 40);
    // Four boards wait in four slots.
    let screen = tmux.wait_for_n("no batch", 4, Duration::from_secs(60));
    assert!(screen.contains("Bench"), "{screen}");

    // n: the new-batch form; 4 and Enter: the batch; e: the bench works on it.
    tmux.keys(&["n"]);
    tmux.wait_for("New batch", Duration::from_secs(10));
    tmux.keys(&["4", "Enter"]);
    let screen = tmux.wait_for("4 serial numbers", Duration::from_secs(20));
    let batch = screen
        .split_whitespace()
        .skip_while(|w| *w != "Batch")
        .nth(1)
        .expect("the batch name on screen")
        .to_owned();
    tmux.keys(&["e"]);
    let screen = tmux.wait_for("4/4 done", Duration::from_secs(180));

    let api = api(&data);
    let record = get(&api, &format!("/manufacturing/batch/{batch}"));
    let devices = record["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 4);
    let mut macs: Vec<&str> = devices
        .iter()
        .map(|d| {
            assert_eq!(d["status"], "provisioned", "{d}");
            assert_eq!(d["station"], "demo-bench");
            let sn = d["serial_number"].as_str().unwrap();
            assert!(
                screen.contains(&format!("✓ {sn} provisioned")),
                "{sn} not on screen:\n{screen}"
            );
            d["mac"].as_str().expect("a MAC is recorded")
        })
        .collect();
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), 4, "four boards, four MACs");

    // The next boards find the batch done. q goes back (bench, batch, batch list) and, on the
    // first screen, quits: nothing is being flashed, so no confirmation is needed.
    tmux.wait_for_n("is done", 4, Duration::from_secs(60));
    for _ in 0..4 {
        if !tmux.running() {
            break;
        }
        tmux.keys(&["q"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    let start = Instant::now();
    while tmux.running() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!tmux.running(), "the demo did not quit:\n{}", tmux.screen());
    assert!(
        data.join("data/registry.sqlite3").exists(),
        "--keep keeps the registry"
    );
}

/// The SGR colour codes in a captured screen (foreground and background, 8, 16, 256 or RGB).
fn colour_codes(screen: &str) -> Vec<String> {
    screen
        .split("\x1b[")
        .skip(1)
        .filter_map(|seq| seq.split_once('m').map(|(codes, _)| codes))
        .flat_map(|codes| codes.split(';'))
        .filter(|code| {
            code.parse::<u16>()
                .is_ok_and(|n| matches!(n, 30..=38 | 40..=48 | 90..=97 | 100..=107))
        })
        .map(str::to_owned)
        .collect()
}

/// `NO_COLOR` (https://no-color.org) reaches the real station through `Theme::from_env`: with
/// it set the screen has no colour at all (bold and reverse stay); without it, it has colour.
#[test]
fn no_color_takes_the_colour_out_of_the_real_terminal() {
    let binary = env!("CARGO_BIN_EXE_vesper");
    let mut seen = Vec::new();
    for (name, env) in [
        ("no-color", &[("NO_COLOR", "1")][..]),
        ("color", &[("NO_COLOR", "")][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("demo");
        let command = [
            binary,
            "demo",
            "--keep",
            data.to_str().unwrap(),
            "--boards",
            "2",
        ];
        let tmux = Tmux::start_with(&command, 120, 40, name, env);
        tmux.wait_for_n("no batch", 2, Duration::from_secs(60));
        seen.push(colour_codes(&tmux.screen_with_styles()));
        tmux.keys(&["q"]);
    }
    assert!(
        seen[0].is_empty(),
        "colour codes with NO_COLOR: {:?}",
        seen[0]
    );
    assert!(!seen[1].is_empty(), "no colour without NO_COLOR");
}
