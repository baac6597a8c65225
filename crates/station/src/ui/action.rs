//! What happens in the station. Key presses, ticks and the reports of background tasks all
//! become [`Action`]s, and the screens change state only in `update(Action)`. Everything that
//! does I/O is a [`Task`] the screens ask for and the runtime runs: a screen never waits.

use crossterm::event::KeyEvent;

use vesper_client::{BatchOrder, Health};
use vesper_core::model::{Batch, BatchSummary, Device, DeviceFilter, DevicePage, Stats, Status};
use vesper_flash::FlashEvent;

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Screen {
    Dashboard,
    Batches,
    Devices,
    Wizard,
    Bench,
}

impl Screen {
    pub fn title(self) -> &'static str {
        match self {
            Screen::Dashboard => "Dashboard",
            Screen::Batches => "Batches",
            Screen::Devices => "Devices",
            Screen::Wizard => "Provision",
            Screen::Bench => "Bench",
        }
    }
}

/// A bench slot's current job: reports from an older job (a board since unplugged or
/// retried) carry an older number and are ignored, so they can never touch the wrong board.
pub type Job = u64;

/// Everything that changes the station's state.
#[derive(Debug, Clone)]
pub enum Action {
    Key(KeyEvent),
    /// Time passed (elapsed times, spinners, periodic refresh).
    Tick,
    Quit,
    Go(Screen),

    // The backend.
    Health(Result<Health, String>),
    Stats(Stats),
    Batches(Vec<BatchSummary>),
    BatchLoaded(Batch),
    BatchCreated(Batch),
    DevicePage {
        request: u64,
        page: DevicePage,
    },
    /// The device list request `request` failed (the reason comes as [`Action::Failed`]).
    DevicePageFailed {
        request: u64,
    },
    DeviceLoaded(Device),
    /// A device changed through the station (status, assignment).
    DeviceChanged(Device),
    /// Search results of the wizard's select step.
    Matches {
        request: u64,
        devices: Vec<Device>,
    },
    /// A request failed; the text says what and why.
    Failed(String),
    /// Something worth a line in the status bar.
    Notice(String),
    /// The bench works on this batch from now on.
    UseBatch(BatchSummary),

    // Serial ports (bench slots and the wizard's port picker).
    Ports(Vec<String>),
    Plugged {
        slot: usize,
        port: String,
    },
    Unplugged {
        slot: usize,
    },

    // A flash job (bench slot or wizard), keyed by who runs it.
    Claimed {
        owner: Owner,
        job: Job,
        device: Device,
    },
    ClaimRefused {
        owner: Owner,
        job: Job,
        reason: String,
        batch_done: bool,
    },
    /// The flash plan is ready: firmware version and the parts to write.
    Prepared {
        owner: Owner,
        job: Job,
        firmware: String,
        parts: Vec<(String, usize)>,
    },
    Flash {
        owner: Owner,
        job: Job,
        event: FlashEvent,
    },
    /// A line of the board's serial console after the flash (its boot log).
    Console {
        owner: Owner,
        job: Job,
        line: String,
    },
    Verified {
        owner: Owner,
        job: Job,
        device: Device,
    },
    VerifyFailed {
        owner: Owner,
        job: Job,
        reason: String,
    },
}

/// Who runs a flash job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    Slot(usize),
    Wizard,
}

/// I/O the screens ask for; the runtime runs each in the background and reports with actions.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Health,
    Stats,
    Batches,
    Batch(String),
    CreateBatch(BatchOrder),
    Devices {
        request: u64,
        filter: DeviceFilter,
    },
    Device(String),
    SetStatus {
        sn: String,
        status: Status,
    },
    Assign {
        sn: String,
        email: String,
    },
    Search {
        request: u64,
        text: String,
    },
    /// Save (and print, if a printer is configured) the labels of a batch.
    Labels {
        batch: String,
        print: bool,
    },
    /// Save (and print, if a printer is configured) one device's label.
    DeviceLabel(Box<Device>),
    /// Take the batch's next device for a bench slot.
    ClaimNext {
        owner: Owner,
        job: Job,
        batch: String,
    },
    /// Take one chosen device.
    Claim {
        owner: Owner,
        job: Job,
        sn: String,
    },
    Release {
        sn: String,
        owner: Owner,
    },
    /// Flash a claimed device's firmware and NVS image onto the board at `port`.
    Flash {
        owner: Owner,
        job: Job,
        device: Box<Device>,
        port: String,
    },
    /// Report the flash and wait for the first heartbeat.
    Verify {
        owner: Owner,
        job: Job,
        sn: String,
        port: String,
        chip: String,
        mac: String,
        firmware_version: String,
    },
    /// List the serial ports (the wizard's picker).
    ListPorts,
}

impl Task {
    /// The station name a claim is recorded under, e.g. `bench-1/slot-2`.
    pub fn claimant(station: &str, owner: Owner) -> String {
        match owner {
            Owner::Slot(i) => format!("{station}/slot-{}", i + 1),
            Owner::Wizard => format!("{station}/wizard"),
        }
    }
}
