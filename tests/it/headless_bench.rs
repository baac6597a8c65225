//! `vesper bench --headless`, the process, against the demo's backend, broker and simulated
//! boards on pseudo-terminals: a jig with no screen provisions a batch and says so.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use vesper::client::BatchOrder;
use vesper::demo::Demo;
use vesper::registry::Status;

async fn batch(demo: &Demo, quantity: u32) -> String {
    demo.client()
        .create_batch(&BatchOrder::of(&demo.config.boards[0].name, quantity))
        .await
        .unwrap()
        .summary
        .batch_id
}

fn headless(demo: &Demo, batch: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vesper"))
        .arg("--config")
        .arg(demo.dir.join("config.toml"))
        .args(["bench", "--headless", "--batch", batch, "--json"])
        .env("VESPER_TOKEN", &demo.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Reads the JSON lines of `child` until it exits (or `limit` passes: then it is killed and
/// the test fails); `on_line` sees each line as it comes.
fn lines_until_exit(
    mut child: Child,
    limit: Duration,
    mut on_line: impl FnMut(&Value, u32),
) -> (std::process::ExitStatus, Vec<Value>) {
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                on_line(&value, pid);
                lines.push(value);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the headless bench did not end within {limit:?}; lines: {lines:#?}");
        }
    }
    (child.wait().unwrap(), lines)
}

/// The serial numbers of the devices of every `event` line, in order, each once.
fn serials_of(lines: &[Value], event: &str) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l["event"] == event)
        .map(|l| l["device"]["serial_number"].as_str().unwrap().to_owned())
        .collect()
}

/// Four boards in four slots, a batch of `quantity`, and `vesper bench --headless` run to its
/// end; `on_line` sees each line as it comes (with the process id).
async fn run_headless(
    quantity: u32,
    on_line: impl FnMut(&Value, u32) + Send + 'static,
) -> (Demo, String, std::process::ExitStatus, Vec<Value>) {
    let demo = crate::support::quiet_demo(4).await;
    let batch = batch(&demo, quantity).await;
    let child = headless(&demo, &batch);
    let (status, lines) = tokio::task::spawn_blocking(move || {
        lines_until_exit(child, Duration::from_secs(180), on_line)
    })
    .await
    .unwrap();
    (demo, batch, status, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_headless_bench_provisions_a_batch_of_four_boards_and_exits_0() {
    let (demo, batch, status, lines) = run_headless(4, |_, _| {}).await;
    assert!(status.success(), "exit {status:?}; lines: {lines:#?}");
    let verified = serials_of(&lines, "verified");
    assert_eq!(verified.len(), 4, "{lines:#?}");
    // Every step of every board is a line, in order, each naming its slot.
    for sn in &verified {
        let steps: Vec<&str> = lines
            .iter()
            .filter(|l| {
                l["device"]["serial_number"] == sn.as_str()
                    || l["event"] == "prepared" && l["slot"] == slot_of(&lines, sn)
            })
            .map(|l| l["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            ["claimed", "prepared", "reported", "verified"],
            "{sn}: {lines:#?}"
        );
    }
    let slots: BTreeSet<i64> = lines
        .iter()
        .filter(|l| l["event"] == "claimed")
        .map(|l| l["slot"].as_i64().unwrap())
        .collect();
    assert_eq!(slots.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "finished", "{last}");
    assert!(
        last["text"]
            .as_str()
            .unwrap()
            .starts_with("batch done: 4 provisioned here, 0 failed"),
        "{last}"
    );
    // The registry agrees: the whole batch is provisioned, each with its board's MAC.
    let record = demo.client().batch_record(&batch).await.unwrap();
    assert!(
        record
            .devices
            .iter()
            .all(|d| d.status == Status::Provisioned && d.mac.is_some()),
        "{:#?}",
        record.devices
    );
    demo.stop().await;
}

fn slot_of(lines: &[Value], sn: &str) -> Value {
    lines
        .iter()
        .find(|l| l["event"] == "claimed" && l["device"]["serial_number"] == sn)
        .map(|l| l["slot"].clone())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_boards_in_flight_claims_no_more_and_exits_0() {
    let mut signalled = false;
    let (demo, batch, status, lines) = run_headless(8, move |line, pid| {
        if line["event"] == "prepared" && !signalled {
            signalled = true;
            let kill = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
        }
    })
    .await;
    assert!(status.success(), "exit {status:?}; lines: {lines:#?}");
    let claimed = serials_of(&lines, "claimed");
    let verified = serials_of(&lines, "verified");
    assert!(!claimed.is_empty(), "{lines:#?}");
    assert_eq!(
        claimed, verified,
        "every board in flight is finished: {lines:#?}"
    );
    assert!(lines.iter().any(|l| l["event"] == "stopping"), "{lines:#?}");
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert!(
        last["text"].as_str().unwrap().starts_with("stopped:"),
        "{last}"
    );
    // No more than the four slots' boards were taken: the rest of the batch waits.
    let record = demo.client().batch_record(&batch).await.unwrap();
    let provisioned = record
        .devices
        .iter()
        .filter(|d| d.status == Status::Provisioned)
        .count();
    assert_eq!(provisioned, verified.len());
    assert!(provisioned <= 4);
    demo.stop().await;
}
