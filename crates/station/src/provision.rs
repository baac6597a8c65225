//! The one provisioning pipeline: claim a device, plan its flash (firmware bundle + its own NVS
//! image), flash it (refusing a board that already carries another identity), report the flash,
//! verify it by its first heartbeat while reading its console. Each step is a typed
//! [`ProvisionEvent`]; the bench, the wizard, the headless bench and `vesper flash` only render
//! them. No screen, no terminal: this module may not depend on ratatui or crossterm.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use vesper_client::{ApiClient, ClientError, ConflictCode, FirmwareRelease};
use vesper_core::config::Config;
use vesper_core::model::{Board, Device, DeviceFilter, FailureReport, FlashReport, Status};
use vesper_flash::{self as flashing, Bundle, FlashEvent, FlashOptions, FlashOutcome, FlashPlan};

/// The steps of the pipeline, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Claim,
    Plan,
    Flash,
    Report,
    Verify,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Claim => "claim",
            Step::Plan => "plan",
            Step::Flash => "flash",
            Step::Report => "report",
            Step::Verify => "verify",
        })
    }
}

/// What happened to one board, step by step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProvisionEvent {
    /// The backend gave this device (a serial number) to the board.
    Claimed { device: Box<Device> },
    /// The flash is planned: the firmware and the parts to write.
    Prepared {
        firmware: String,
        parts: Vec<(String, usize)>,
    },
    /// Progress of the flash itself.
    Flash { flash: FlashEvent },
    /// The backend recorded the flash (chip, MAC, firmware).
    Reported { device: Box<Device> },
    /// A line of the board's serial console while waiting for its heartbeat.
    Console { line: String },
    /// The board's first heartbeat arrived: the device is provisioned.
    Verified { device: Box<Device> },
    /// A step failed; the board stops here.
    Failed { step: Step, reason: String },
}

/// Where a pipeline's events go: called from the flash job's thread and the console reader's.
pub trait Emit: Fn(ProvisionEvent) + Clone + Send + Sync + 'static {}

impl<F: Fn(ProvisionEvent) + Clone + Send + Sync + 'static> Emit for F {}

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRefused {
    pub reason: String,
    /// The batch has no device left to flash.
    pub batch_done: bool,
}

/// The pipeline, bound to a backend and a configuration; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    client: ApiClient,
    config: Arc<Config>,
    /// Firmware bundles already fetched, by `board/version`.
    bundles: Arc<tokio::sync::Mutex<HashMap<String, Arc<Bundle>>>>,
}

impl Pipeline {
    pub fn new(client: ApiClient, config: Arc<Config>) -> Pipeline {
        Pipeline {
            client,
            config,
            bundles: Arc::default(),
        }
    }

    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Step 1 for a bench slot: the batch's next device, for `claimant` (e.g. `bench-1/slot-2`).
    pub async fn claim_next(&self, batch: &str, claimant: &str) -> Result<Device, ClaimRefused> {
        self.client
            .claim_next(batch, claimant)
            .await
            .map_err(refusal)
    }

    /// Step 1 for the wizard: one chosen device.
    pub async fn claim(&self, sn: &str, claimant: &str) -> Result<Device, ClaimRefused> {
        self.client.claim(sn, claimant).await.map_err(refusal)
    }

    /// Steps 2 to 5 for a claimed device on `port`: plan, flash, report, verify. Returns the
    /// provisioned device, or the step that failed and why (also sent as an event).
    pub async fn provision(
        &self,
        device: &Device,
        port: &str,
        emit: impl Emit,
    ) -> Result<Device, (Step, String)> {
        let report = self.flash(device, port, emit.clone()).await?;
        self.verify(&device.serial_number, port, report, emit).await
    }

    /// Steps 2 and 3: the plan, then the flash with the board check. Returns what to report.
    /// A failure is also reported to the backend (its repeats raise an alert).
    pub async fn flash(
        &self,
        device: &Device,
        port: &str,
        emit: impl Emit,
    ) -> Result<FlashReport, (Step, String)> {
        let result = self.plan_and_flash(device, port, emit).await;
        self.report_failure(&device.serial_number, &result).await;
        result
    }

    async fn plan_and_flash(
        &self,
        device: &Device,
        port: &str,
        emit: impl Emit,
    ) -> Result<FlashReport, (Step, String)> {
        let fail = |step, reason| failed(&emit, step, reason);
        let (plan, mut options) = match self.plan(device).await {
            Ok(p) => p,
            Err(reason) => return Err(fail(Step::Plan, reason)),
        };
        options.reset = !is_pty(port);
        emit(ProvisionEvent::Prepared {
            firmware: plan.firmware_version.clone(),
            parts: plan
                .parts
                .iter()
                .map(|p| (p.name.clone(), p.data.len()))
                .collect(),
        });
        let (client, sn, runtime) = (
            self.client.clone(),
            device.serial_number.clone(),
            tokio::runtime::Handle::current(),
        );
        let (port_name, firmware) = (port.to_owned(), plan.firmware_version.clone());
        let events = emit.clone();
        let flashed = tokio::task::spawn_blocking(move || {
            let check = |mac: &str| runtime.block_on(board_is_free(&client, mac, &sn));
            flash_step(&port_name, &plan, &options, &check, |flash| {
                events(ProvisionEvent::Flash { flash })
            })
        })
        .await
        .map_err(|e| fail(Step::Flash, format!("the flash job stopped: {e}")))?;
        // The engine has already said why in its `Failed` event.
        let outcome = flashed.map_err(|reason| (Step::Flash, reason))?;
        Ok(FlashReport {
            chip: outcome.chip,
            mac: outcome.mac,
            firmware_version: firmware,
            station: self.config.station.clone(),
            force: false,
        })
    }

    /// Steps 4 and 5: report the flash, then wait for the first heartbeat while reading the
    /// board's console. Also a retry on its own (a board that was slow to reach the broker).
    /// A failure is also reported to the backend.
    pub async fn verify(
        &self,
        sn: &str,
        port: &str,
        report: FlashReport,
        emit: impl Emit,
    ) -> Result<Device, (Step, String)> {
        let result = self.report_and_verify(sn, port, report, emit).await;
        self.report_failure(sn, &result).await;
        result
    }

    /// Tells the backend that a step failed for `sn`; best effort (the board's own failure is
    /// what the technician sees; a backend that cannot hear it changes nothing on the bench).
    async fn report_failure<T>(&self, sn: &str, result: &Result<T, (Step, String)>) {
        let Err((step, reason)) = result else { return };
        let report = FailureReport {
            station: self.config.station.clone(),
            step: step.to_string(),
            reason: reason.clone(),
        };
        let _ = self.client.failed(sn, &report).await;
    }

    async fn report_and_verify(
        &self,
        sn: &str,
        port: &str,
        report: FlashReport,
        emit: impl Emit,
    ) -> Result<Device, (Step, String)> {
        let fail = |step, reason| failed(&emit, step, reason);
        match self.client.flashed(sn, &report).await {
            Ok(device) => emit(ProvisionEvent::Reported {
                device: Box::new(device),
            }),
            Err(e) => {
                let reason = format!("the backend did not record the flash: {}", e.reason());
                return Err(fail(Step::Report, reason));
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let console = {
            let (stop, port, emit) = (stop.clone(), port.to_owned(), emit.clone());
            std::thread::spawn(move || {
                flashing::read_console(&port, &stop, |line| emit(ProvisionEvent::Console { line }))
            })
        };
        let timeout = self.config.station_settings.verify_timeout;
        let result = self
            .client
            .wait_for_status(sn, Status::Provisioned, timeout)
            .await;
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || console.join()).await;
        let reason = match result {
            Ok((true, device)) => {
                emit(ProvisionEvent::Verified {
                    device: Box::new(device.clone()),
                });
                return Ok(device);
            }
            Ok((false, device)) if device.status == Status::Revoked => {
                format!("{sn} was revoked while waiting")
            }
            Ok((false, _)) => format!(
                "no heartbeat within {} s: the board did not reach the broker. Check its Wi-Fi, \
                 the broker address it was given (mqtt.host) and the boot log",
                timeout.as_secs()
            ),
            Err(e) => format!("cannot ask the backend: {e}"),
        };
        Err(fail(Step::Verify, reason))
    }

    /// Step 2: the flash plan (firmware + this device's NVS image) and how to flash it.
    pub async fn plan(&self, device: &Device) -> Result<(FlashPlan, FlashOptions), String> {
        let board = self
            .config
            .board(&device.board)
            .map_err(|e| e.to_string())?
            .clone();
        let nvs = self
            .client
            .nvs_image(&device.serial_number)
            .await
            .map_err(|e| format!("cannot get the NVS image: {e}"))?;
        let bundle = self.bundle(&board).await?;
        let plan = FlashPlan::new(&board, &bundle, nvs).map_err(|e| e.to_string())?;
        let options = FlashOptions {
            baud: self.config.station_settings.baud,
            chip: flashing::espflash_chip(board.chip),
            ..FlashOptions::default()
        };
        Ok((plan, options))
    }

    /// The newest firmware bundle of a board, fetched from the backend once and cached.
    async fn bundle(&self, board: &Board) -> Result<Arc<Bundle>, String> {
        let release = self
            .client
            .firmware(&board.hw_type.to_string(), &board.hw_version.to_string())
            .await
            .map_err(|e| format!("no firmware for {}: {e}", board.name))?;
        let version = release.manifest.version.clone();
        let key = format!("{}/{version}", board.name);
        let mut cache = self.bundles.lock().await;
        if let Some(b) = cache.get(&key) {
            return Ok(b.clone());
        }
        let dir = cache_dir(
            &self.config.station_settings.firmware_cache,
            &board.name,
            &version,
        )?;
        let bundle = match Bundle::load(&dir).ok().filter(|b| b.parts(board).is_ok()) {
            Some(b) => b,
            None => self.download(&release, board, &dir).await?,
        };
        let bundle = Arc::new(bundle);
        cache.insert(key, bundle.clone());
        Ok(bundle)
    }

    /// Downloads a release (its manifest and parts) into `dir`, checking every part.
    async fn download(
        &self,
        release: &FirmwareRelease,
        board: &Board,
        dir: &Path,
    ) -> Result<Bundle, String> {
        let fail = |e: String| format!("cannot download the firmware: {e}");
        let original = self
            .client
            .download(&release.manifest_url)
            .await
            .map_err(|e| fail(e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        for part in release.manifest.builds.iter().flat_map(|b| &b.parts) {
            let url = part.path.as_str();
            let name = url.rsplit('/').next().unwrap_or_default();
            if name.is_empty() || name.starts_with('.') {
                return Err(fail(format!("bad part URL {url}")));
            }
            let bytes = self
                .client
                .download(url)
                .await
                .map_err(|e| fail(e.to_string()))?;
            write_atomic(&dir.join(name), &bytes).map_err(|e| fail(e.to_string()))?;
        }
        write_atomic(&dir.join("manifest.json"), &original).map_err(|e| fail(e.to_string()))?;
        let bundle = Bundle::load(dir).map_err(|e| fail(e.to_string()))?;
        bundle.parts(board).map_err(|e| fail(e.to_string()))?;
        Ok(bundle)
    }
}

/// Where a release of `board` is cached: `{cache}/{board}/v{version}`, for a semantic version
/// only. The version comes from the backend's answer; anything else (`../..`, a path) is refused
/// before it becomes a folder name.
fn cache_dir(cache: &Path, board: &str, version: &str) -> Result<PathBuf, String> {
    match vesper_core::firmware::release_version_problem(version) {
        None => Ok(cache.join(board).join(format!("v{version}"))),
        Some(problem) => Err(format!(
            "the backend offers a release whose {problem}; refused"
        )),
    }
}

/// Step 3 on its own, blocking: flashes `plan` onto the board at `port`, refusing the board if
/// `check` says so once its MAC is known; every engine event goes to `emit`. Used by the
/// pipeline and by `vesper flash` (which flashes files, with no backend to claim from).
pub fn flash_step(
    port: &str,
    plan: &FlashPlan,
    options: &FlashOptions,
    check: flashing::BoardCheck,
    emit: impl Fn(FlashEvent) + Sync,
) -> Result<FlashOutcome, String> {
    let (events, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let job = s.spawn(|| {
            let result = flashing::flash(port, plan, options, &events, check);
            drop(events);
            result
        });
        for event in rx {
            emit(event);
        }
        match job.join() {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("the flash job stopped unexpectedly".into()),
        }
    })
}

/// A flash event in words, for a line of output; `None` for byte-by-byte progress.
pub fn describe_flash(event: &FlashEvent) -> Option<String> {
    Some(match event {
        FlashEvent::Connecting { port, attempt } if *attempt > 1 => {
            format!("{port}: connecting (attempt {attempt})")
        }
        FlashEvent::Connecting { port, .. } => format!("{port}: connecting"),
        FlashEvent::Connected {
            port,
            chip,
            mac,
            flash_size,
        } => format!("{port}: {chip} · {mac} · {flash_size} flash"),
        FlashEvent::PartStarted {
            port,
            part,
            offset,
            bytes,
        } => format!("{port}: {part} → 0x{offset:x} ({bytes} bytes)"),
        FlashEvent::PartProgress { .. } | FlashEvent::PartVerifying { .. } => return None,
        FlashEvent::PartDone { port, part } => format!("{port}: {part} ✓ verified"),
        FlashEvent::Retrying {
            port,
            attempt,
            reason,
        } => format!("{port}: {reason}; retrying ({attempt})"),
        FlashEvent::Done {
            port,
            mac,
            seconds,
            bytes,
            ..
        } => format!("{port}: ✓ flashed {mac} in {seconds:.1} s ({bytes} bytes)"),
        FlashEvent::Failed { port, error } => format!("{port}: ✗ {error}"),
    })
}

/// Says that `step` failed and why, and returns both for the caller's `Err`.
fn failed(emit: &impl Fn(ProvisionEvent), step: Step, reason: String) -> (Step, String) {
    emit(ProvisionEvent::Failed {
        step,
        reason: reason.clone(),
    });
    (step, reason)
}

fn refusal(e: ClientError) -> ClaimRefused {
    ClaimRefused {
        reason: e.reason(),
        batch_done: e.is_conflict(ConflictCode::BatchDone),
    }
}

/// Refuses a board whose MAC the registry already binds to another serial number: writing it
/// would overwrite an identity in use (a finished board plugged in again by mistake). When the
/// backend cannot say, the board is refused too.
async fn board_is_free(client: &ApiClient, mac: &str, sn: &str) -> Result<(), String> {
    let filter = DeviceFilter {
        text: Some(mac.to_owned()),
        limit: Some(10),
        ..Default::default()
    };
    let page = client.devices(&filter).await.map_err(|e| {
        format!(
            "cannot ask the backend whether this board already has a serial number: {}",
            e.reason()
        )
    })?;
    let owner = page.devices.iter().find(|d| {
        d.serial_number != sn
            && d.mac
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(mac))
    });
    match owner {
        Some(d) => Err(format!(
            "this board (MAC {mac}) is already {} ({}): nothing was written; set it aside and \
             plug in a new board",
            d.serial_number,
            d.status.as_str()
        )),
        None => Ok(()),
    }
}

/// Pseudo-terminals (simulated boards) have no DTR/RTS lines to reset with.
pub fn is_pty(port: &str) -> bool {
    std::fs::canonicalize(port)
        .map(|p| p.starts_with("/dev/pts"))
        .unwrap_or(false)
}

/// Writes a file whole or not at all: a temporary file, synced, renamed into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 25, finding 11: the version in the backend's answer becomes a folder name only when
    /// it is a semantic version.
    #[test]
    fn a_release_is_cached_under_its_semantic_version_only() {
        let cache = Path::new("/cache");
        assert_eq!(
            cache_dir(cache, "bellcore-v2", "1.0.1").unwrap(),
            Path::new("/cache/bellcore-v2/v1.0.1")
        );
        assert_eq!(
            cache_dir(cache, "bellcore-v2", "2.0.0-rc.1+b5").unwrap(),
            Path::new("/cache/bellcore-v2/v2.0.0-rc.1+b5")
        );
        for hostile in [
            "../../../etc",
            "1.0.0/../../x",
            "/abs",
            "1.0",
            "",
            "1.0.0\n",
        ] {
            let err = cache_dir(cache, "bellcore-v2", hostile).unwrap_err();
            assert!(
                err.contains("is not a semantic version"),
                "{hostile:?}: {err}"
            );
        }
    }
}
