//! The bench without a screen, for a factory jig: `vesper bench --headless --batch ID [--json]`.
//!
//! It watches the configured slots, provisions each board plugged in through the one
//! [`Pipeline`] (claim, plan, flash, report, verify), prints one line (or one JSON object) per
//! step, and ends when the batch is done, or when asked to stop (SIGTERM), after finishing the
//! boards in flight. A finished or failed board stays in its slot until it is pulled out; the
//! next board plugged into that slot gets the next serial number.

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use vesper_core::model::{DeviceFilter, Status};
use vesper_flash::FlashEvent;

use crate::provision::{Pipeline, ProvisionEvent, Step};
use crate::slots::{AUTO_SLOTS, PORT_POLL, SlotChange, SlotWatcher};

/// How often an idle bench asks whether the batch got done elsewhere.
const BATCH_CHECK: Duration = Duration::from_secs(5);

/// What the headless bench does.
#[derive(Debug, Clone)]
pub struct HeadlessOptions {
    /// The batch to provision, e.g. `B-0042`.
    pub batch: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// How a headless run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Every device of the batch is provisioned.
    BatchDone,
    /// Asked to stop; the boards in flight were finished first.
    Stopped,
}

/// What a headless run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ending: Ending,
    /// Boards this bench provisioned.
    pub provisioned: u32,
    /// Boards that failed a step (they stay in their slot).
    pub failed: u32,
}

/// Errors that stop the headless bench before it starts.
#[derive(Debug, thiserror::Error)]
pub enum HeadlessError {
    #[error("cannot read batch {batch} from the backend: {reason}")]
    Batch { batch: String, reason: String },
}

/// One line of output: a step of one slot's board, or the bench's own news.
#[derive(Debug, Serialize)]
struct Line<'a> {
    slot: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<&'a str>,
    #[serde(flatten)]
    what: Said<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Said<'a> {
    Step(&'a ProvisionEvent),
    Bench { event: &'static str, text: String },
}

/// Where lines go (stdout, or a buffer in tests); lines from several slots never interleave.
type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// What a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Nothing plugged in.
    Empty,
    /// A board is being provisioned.
    Busy,
    /// The board is finished (or failed, or was not given a serial number); waiting for it to
    /// be pulled out.
    Finished,
}

/// Runs the headless bench until the batch is done or `stop` resolves (then the boards in
/// flight are finished first).
pub async fn run(
    pipeline: Pipeline,
    options: HeadlessOptions,
    out: Box<dyn Write + Send>,
    stop: impl Future<Output = ()>,
) -> Result<Summary, HeadlessError> {
    let out: Out = Arc::new(Mutex::new(out));
    let json = options.json;
    let say = |slot: Option<usize>, event: &'static str, text: String| {
        print(&out, json, slot, None, Said::Bench { event, text });
    };
    let remaining = remaining(&pipeline, &options.batch).await?;
    let settings = &pipeline.config().station_settings;
    let mut watcher = SlotWatcher::new(&settings.slots, AUTO_SLOTS);
    let slot_names = watcher.labels();
    say(
        None,
        "started",
        format!(
            "bench {} on batch {}: {remaining} devices to provision; slots: {}",
            pipeline.config().station,
            options.batch,
            slot_names.join(", ")
        ),
    );
    if remaining == 0 {
        return Ok(finish(&say, Ending::BatchDone, 0, 0));
    }

    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let watching = Arc::new(AtomicBool::new(true));
    let watch_thread = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                for change in watcher.poll() {
                    let _ = changes_tx.send(change);
                }
                std::thread::sleep(PORT_POLL);
            }
        })
    };
    let (done_tx, mut done) = mpsc::unbounded_channel::<(usize, bool)>();
    let mut slots = vec![Slot::Empty; slot_names.len()];
    let (mut provisioned, mut failed) = (0u32, 0u32);
    let mut stopping = false;
    let mut batch_done = false;
    let mut check = tokio::time::interval(BATCH_CHECK);
    tokio::pin!(stop);
    let ending = loop {
        let busy = slots.iter().filter(|s| **s == Slot::Busy).count();
        if busy == 0 && (stopping || batch_done) {
            break if batch_done {
                Ending::BatchDone
            } else {
                Ending::Stopped
            };
        }
        tokio::select! {
            _ = &mut stop, if !stopping => {
                stopping = true;
                say(None, "stopping", format!("stopping after the {busy} boards in flight"));
            }
            Some(change) = changes.recv() => match change {
                SlotChange::Plugged { slot, port } => {
                    if stopping || batch_done {
                        slots[slot] = Slot::Finished;
                        continue;
                    }
                    slots[slot] = Slot::Busy;
                    let job = SlotJob {
                        pipeline: pipeline.clone(),
                        batch: options.batch.clone(),
                        slot,
                        port,
                        out: out.clone(),
                        json,
                    };
                    let done_tx = done_tx.clone();
                    tokio::spawn(async move {
                        let ok = job.run().await;
                        let _ = done_tx.send((slot, ok));
                    });
                }
                SlotChange::Unplugged { slot } => {
                    if slots[slot] != Slot::Busy {
                        slots[slot] = Slot::Empty;
                    }
                }
            },
            Some((slot, ok)) = done.recv() => {
                slots[slot] = Slot::Finished;
                if ok { provisioned += 1 } else { failed += 1 }
                batch_done = matches!(remaining_now(&pipeline, &options.batch).await, Some(0));
            }
            _ = check.tick(), if busy == 0 => {
                batch_done = matches!(remaining_now(&pipeline, &options.batch).await, Some(0));
            }
        }
    };
    watching.store(false, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || watch_thread.join()).await;
    Ok(finish(&say, ending, provisioned, failed))
}

fn finish(
    say: &impl Fn(Option<usize>, &'static str, String),
    ending: Ending,
    provisioned: u32,
    failed: u32,
) -> Summary {
    let how = match ending {
        Ending::BatchDone => "batch done",
        Ending::Stopped => "stopped",
    };
    say(
        None,
        "finished",
        format!("{how}: {provisioned} provisioned here, {failed} failed"),
    );
    Summary {
        ending,
        provisioned,
        failed,
    }
}

/// One board in one slot, through the pipeline.
struct SlotJob {
    pipeline: Pipeline,
    batch: String,
    slot: usize,
    port: String,
    out: Out,
    json: bool,
}

impl SlotJob {
    /// Claims the batch's next device and provisions the board; `true` when it is provisioned.
    async fn run(self) -> bool {
        let claimant = format!("{}/slot-{}", self.pipeline.config().station, self.slot + 1);
        let emit = {
            let (out, json, slot, port) =
                (self.out.clone(), self.json, self.slot, self.port.clone());
            move |event: ProvisionEvent| {
                if worth_a_line(&event) {
                    print(&out, json, Some(slot), Some(&port), Said::Step(&event));
                }
            }
        };
        let device = match self.pipeline.claim_next(&self.batch, &claimant).await {
            Ok(device) => device,
            Err(refused) => {
                emit(ProvisionEvent::Failed {
                    step: Step::Claim,
                    reason: refused.reason,
                });
                return false;
            }
        };
        emit(ProvisionEvent::Claimed {
            device: Box::new(device.clone()),
        });
        self.pipeline
            .provision(&device, &self.port, emit)
            .await
            .is_ok()
    }
}

/// Every step is a line; the flash's byte-by-byte progress is not.
fn worth_a_line(event: &ProvisionEvent) -> bool {
    !matches!(
        event,
        ProvisionEvent::Flash {
            flash: FlashEvent::PartProgress { .. } | FlashEvent::PartVerifying { .. }
        }
    )
}

fn print(out: &Out, json: bool, slot: Option<usize>, port: Option<&str>, what: Said) {
    let text = if json {
        serde_json::to_string(&Line {
            slot: slot.map(|s| s + 1),
            port,
            what,
        })
        .unwrap_or_default()
    } else {
        let prefix = slot.map_or_else(|| "bench".to_owned(), |s| format!("slot {}", s + 1));
        let body = match what {
            Said::Step(event) => describe(event),
            Said::Bench { text, .. } => text,
        };
        format!("{prefix}: {body}")
    };
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// One step in words.
pub fn describe(event: &ProvisionEvent) -> String {
    match event {
        ProvisionEvent::Claimed { device } => {
            format!("{}: claimed ({})", device.serial_number, device.board)
        }
        ProvisionEvent::Prepared { firmware, parts } => format!(
            "planned firmware {firmware}: {} parts, {} bytes",
            parts.len(),
            parts.iter().map(|(_, n)| n).sum::<usize>()
        ),
        ProvisionEvent::Flash { flash } => {
            crate::provision::describe_flash(flash).unwrap_or_else(|| "flashing".into())
        }
        ProvisionEvent::Reported { device } => format!(
            "{}: flash recorded ({}, MAC {})",
            device.serial_number,
            device.chip.as_deref().unwrap_or("?"),
            device.mac.as_deref().unwrap_or("?")
        ),
        ProvisionEvent::Console { line } => format!("console: {line}"),
        ProvisionEvent::Verified { device } => {
            format!("{}: ✓ provisioned (first heartbeat)", device.serial_number)
        }
        ProvisionEvent::Failed { step, reason } => format!("✗ {step} failed: {reason}"),
    }
}

/// Devices of the batch still to provision (not yet provisioned, not revoked).
async fn remaining(pipeline: &Pipeline, batch: &str) -> Result<i64, HeadlessError> {
    let mut total = 0;
    for status in [Status::Manufactured, Status::Flashed] {
        let filter = DeviceFilter {
            batch: Some(batch.to_owned()),
            status: Some(status),
            limit: Some(1),
            ..Default::default()
        };
        let page = pipeline
            .client()
            .devices(&filter)
            .await
            .map_err(|e| HeadlessError::Batch {
                batch: batch.to_owned(),
                reason: e.reason(),
            })?;
        total += page.total;
    }
    if total == 0 {
        // An unknown batch lists no devices either: say so rather than "done".
        pipeline
            .client()
            .batch_record(batch)
            .await
            .map_err(|e| HeadlessError::Batch {
                batch: batch.to_owned(),
                reason: e.reason(),
            })?;
    }
    Ok(total)
}

/// [`remaining`], or `None` when the backend cannot say right now (asked again later).
async fn remaining_now(pipeline: &Pipeline, batch: &str) -> Option<i64> {
    remaining(pipeline, batch).await.ok()
}
