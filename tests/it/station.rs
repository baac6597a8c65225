//! The station without a terminal: `update(Action)` of the bench and the wizard (including
//! failures and retries), global keys, and every screen rendered with ratatui's TestBackend at
//! 80 x 24 and 120 x 40, kept as insta snapshots.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

use vesper::flashing::FlashEvent;
use vesper::registry::{AuditEntry, Batch, BatchSummary, Device, DevicePage, Stats, Status};
use vesper::station::bench::{SlotState, Stage};
use vesper::station::theme::Mark;
use vesper::station::wizard::{FlashPhase, Step};
use vesper::station::{Action, App, AppSettings, Owner, Screen, Task, Theme};

const SNS: [&str; 4] = [
    "PV-26A18-BC02R-X7KQA",
    "PV-26A18-BC02R-M4TZC",
    "PV-26A18-BC02R-Q8WHN",
    "PV-26A18-BC02R-J6RTA",
];

fn device(sn: &str, status: Status, mac: Option<&str>) -> Device {
    serde_json::from_value(json!({
        "serial_number": sn, "hw_type": "BC", "hw_version": "02", "board": "bellcore-v2",
        "batch_id": "B-0042", "status": status, "subscription_plan": "standard",
        "available_outputs": 8, "created_at": "2026-01-18T09:00:00.000Z", "owner": null,
        "users_list": [], "assigned_email": null, "assigned_name": null,
        "chip": mac.map(|_| "esp32 rev v3.0"), "mac": mac,
        "firmware_version": mac.map(|_| "1.0.1"), "flashed_at": mac.map(|_| "2026-01-18T09:10:00.000Z"),
        "provisioned_at": null, "last_seen": null, "station": mac.map(|_| "bench-1"),
        "claimed_by": null, "claimed_until": null
    }))
    .unwrap()
}

fn batch_summary(quantity: i64, provisioned: i64) -> BatchSummary {
    serde_json::from_value(json!({
        "batch_id": "B-0042", "board": "bellcore-v2", "hw_type": "BC", "hw_version": "02",
        "quantity": quantity, "subscription_plan": "standard", "available_outputs": 8,
        "created_at": "2026-01-18T09:00:00.000Z", "created_by": "ana",
        "status_counts": { "manufactured": quantity - provisioned, "provisioned": provisioned }
    }))
    .unwrap()
}

fn settings(start: Screen) -> AppSettings {
    AppSettings {
        station: "bench-1".into(),
        boards: vec!["bellcore-v1".into(), "bellcore-v2".into()],
        slots: (0..4).map(|i| format!("/dev/ttyUSB{i}")).collect(),
        confirm_each_board: false,
        start,
        theme: Theme::plain(),
    }
}

/// An app at a pinned time, its start-up tasks taken.
fn app(start: Screen) -> (App, Instant) {
    let t0 = Instant::now();
    let mut app = App::new(settings(start));
    app.set_time(t0, "14:02:11");
    app.start();
    app.take_tasks();
    (app, t0)
}

fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(key(KeyCode::Char(c)));
    }
}

fn port_event(event: impl FnOnce(String) -> FlashEvent) -> FlashEvent {
    event("/dev/ttyUSB0".into())
}

fn flash_done(mac: &str) -> FlashEvent {
    port_event(|port| FlashEvent::Done {
        port,
        mac: mac.into(),
        chip: "esp32 rev v3.0".into(),
        seconds: 14.2,
        bytes: 300_000,
    })
}

/// The bench's claim task for `slot`, with its job number.
fn claim_job(tasks: &[Task], slot: usize) -> u64 {
    tasks
        .iter()
        .find_map(|t| match t {
            Task::ClaimNext { owner, job, batch } if *owner == Owner::Slot(slot) => {
                assert_eq!(batch, "B-0042");
                Some(*job)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no claim for slot {slot} in {tasks:?}"))
}

fn plug(app: &mut App, slot: usize) {
    app.update(Action::Plugged {
        slot,
        port: format!("/dev/ttyUSB{slot}"),
    });
}

/// A flash event of slot 0's job `job`.
fn slot0_flash(app: &mut App, job: u64, event: FlashEvent) {
    app.update(Action::Flash {
        owner: Owner::Slot(0),
        job,
        event,
    });
}

/// [`flashing_slot`], and the flash done: the slot verifies; returns the job.
fn verifying_slot(app: &mut App) -> u64 {
    let job = flashing_slot(app);
    slot0_flash(app, job, flash_done("24:0A:C4:12:34:56"));
    job
}

/// A bench on batch B-0042 with a board claimed and flashing in slot 0; returns the job.
fn flashing_slot(app: &mut App) -> u64 {
    app.update(Action::UseBatch(batch_summary(15, 0)));
    plug(app, 0);
    let job = claim_job(&app.take_tasks(), 0);
    app.update(Action::Claimed {
        owner: Owner::Slot(0),
        job,
        device: device(SNS[0], Status::Manufactured, None),
    });
    let tasks = app.take_tasks();
    assert!(
        matches!(&tasks[..], [Task::Flash { owner: Owner::Slot(0), job: j, device, port }]
            if *j == job && device.serial_number == SNS[0] && port == "/dev/ttyUSB0"),
        "{tasks:?}"
    );
    job
}

#[test]
fn a_plugged_board_is_claimed_flashed_verified_and_done_without_a_key() {
    let (mut app, t0) = app(Screen::Bench);
    let job = flashing_slot(&mut app);
    app.update(Action::Prepared {
        owner: Owner::Slot(0),
        job,
        firmware: "1.0.1".into(),
        parts: vec![("firmware.bin".into(), 1000), ("nvs".into(), 24576)],
    });
    for event in [
        port_event(|port| FlashEvent::Connected {
            port,
            chip: "esp32 rev v3.0".into(),
            mac: "24:0A:C4:12:34:56".into(),
            flash_size: "4MB".into(),
        }),
        flash_done("24:0A:C4:12:34:56"),
    ] {
        app.update(Action::Flash {
            owner: Owner::Slot(0),
            job,
            event,
        });
    }
    // The pipeline reports and verifies by itself: the screen starts nothing, it shows.
    let tasks = app.take_tasks();
    assert!(tasks.is_empty(), "{tasks:?}");
    assert!(matches!(
        app.bench.slots[0].state,
        SlotState::Verifying { .. }
    ));
    assert_eq!(app.bench.slots[0].mac.as_deref(), Some("24:0A:C4:12:34:56"));
    app.set_time(t0 + Duration::from_secs(31), "14:02:42");
    app.update(Action::Verified {
        owner: Owner::Slot(0),
        job,
        device: device(SNS[0], Status::Provisioned, Some("24:0A:C4:12:34:56")),
    });
    let slot = &app.bench.slots[0];
    assert!(matches!(slot.state, SlotState::Done { seconds } if (seconds - 31.0).abs() < 0.01));
    assert_eq!(app.bench.done, 1);
    assert_eq!(app.bench.progress(), Some((1, 15)));
    assert!(
        !app.status
            .as_ref()
            .is_some_and(|(_, t)| t.contains("is done"))
    );
    assert!(
        app.bench.recent[0]
            .text
            .contains("provisioned (slot 1, 31 s)")
    );
    // Pulling the done board out empties the slot; the next board takes a new serial number.
    app.update(Action::Unplugged { slot: 0 });
    assert_eq!(app.bench.slots[0].state, SlotState::Empty);
    plug(&mut app, 0);
    assert!(claim_job(&app.take_tasks(), 0) > job);
}

#[test]
fn the_last_board_of_a_batch_says_the_batch_is_done() {
    let (mut app, _) = app(Screen::Bench);
    app.update(Action::UseBatch(batch_summary(1, 0)));
    plug(&mut app, 0);
    let job = claim_job(&app.take_tasks(), 0);
    app.update(Action::Claimed {
        owner: Owner::Slot(0),
        job,
        device: device(SNS[0], Status::Manufactured, None),
    });
    app.update(Action::Verified {
        owner: Owner::Slot(0),
        job,
        device: device(SNS[0], Status::Provisioned, Some("24:0A:C4:12:34:56")),
    });
    assert_eq!(app.bench.progress(), Some((1, 1)));
    let (mark, text) = app.status.clone().expect("a status line");
    assert_eq!(mark, Mark::Done);
    assert_eq!(text, "batch B-0042 is done: 1/1 provisioned");
}

#[test]
fn a_failure_stays_on_its_slot_and_one_key_retries_with_the_same_serial_number() {
    let (mut app, _) = app(Screen::Bench);
    let job = flashing_slot(&mut app);
    slot0_flash(
        &mut app,
        job,
        port_event(|port| FlashEvent::Failed {
            port,
            error: "no sync: hold BOOT and press EN, or check the cable".into(),
        }),
    );
    assert!(matches!(
        &app.bench.slots[0].state,
        SlotState::Failed { stage: Stage::Flash, reason } if reason.starts_with("no sync")
    ));
    assert_eq!(app.bench.failed, 1);
    app.update(key(KeyCode::Char('r')));
    let tasks = app.take_tasks();
    let retry_job = match &tasks[..] {
        [Task::Flash { job, device, .. }] => {
            assert_eq!(
                device.serial_number, SNS[0],
                "a retry keeps the serial number"
            );
            *job
        }
        other => panic!("{other:?}"),
    };
    assert!(retry_job > job);
    assert_eq!(app.bench.slots[0].attempts, 1);
    // A report of the old job can no longer touch the slot.
    slot0_flash(&mut app, job, flash_done("24:0A:C4:99:99:99"));
    assert!(matches!(app.bench.slots[0].state, SlotState::Flashing(_)));
    assert!(app.take_tasks().is_empty());
}

#[test]
fn skip_gives_the_serial_number_back_and_a_verify_timeout_is_explained() {
    let (mut app, _) = app(Screen::Bench);
    let job = verifying_slot(&mut app);
    app.take_tasks();
    app.update(Action::VerifyFailed {
        owner: Owner::Slot(0),
        job,
        reason: "no heartbeat within 60 s: the board did not reach the broker".into(),
    });
    assert!(matches!(
        app.bench.slots[0].state,
        SlotState::Failed {
            stage: Stage::Verify,
            ..
        }
    ));
    app.update(key(KeyCode::Char('s')));
    let tasks = app.take_tasks();
    assert_eq!(
        tasks,
        vec![Task::Release {
            sn: SNS[0].into(),
            owner: Owner::Slot(0)
        }]
    );
    assert_eq!(app.bench.slots[0].state, SlotState::SetAside);
    assert!(app.bench.slots[0].device.is_none());
}

#[test]
fn another_batch_starts_waiting_boards_but_never_a_finished_or_set_aside_one() {
    let (mut app, _) = app(Screen::Bench);
    // Slot 0: a provisioned board still plugged in.
    let job = flashing_slot(&mut app);
    app.update(Action::Verified {
        owner: Owner::Slot(0),
        job,
        device: device(SNS[0], Status::Provisioned, Some("24:0A:C4:12:34:56")),
    });
    // Slot 1: a board set aside after a failure.
    plug(&mut app, 1);
    let job = claim_job(&app.take_tasks(), 1);
    app.update(Action::ClaimRefused {
        owner: Owner::Slot(1),
        job,
        reason: "the backend answered 503".into(),
        batch_done: false,
    });
    app.update(key(KeyCode::Right));
    app.update(key(KeyCode::Char('s')));
    assert_eq!(app.bench.slots[1].state, SlotState::SetAside);
    // Slot 2: a new board that found the batch finished.
    plug(&mut app, 2);
    let job = claim_job(&app.take_tasks(), 2);
    app.update(Action::ClaimRefused {
        owner: Owner::Slot(2),
        job,
        reason: "no device left".into(),
        batch_done: true,
    });
    app.take_tasks();

    let mut next = batch_summary(10, 0);
    next.batch_id = "B-0043".into();
    app.update(Action::UseBatch(next));
    let tasks = app.take_tasks();
    assert!(
        matches!(&tasks[..], [Task::ClaimNext { owner: Owner::Slot(2), batch, .. }] if batch == "B-0043"),
        "only the waiting board starts: {tasks:?}"
    );
    assert!(matches!(app.bench.slots[0].state, SlotState::Done { .. }));
    assert_eq!(app.bench.slots[1].state, SlotState::SetAside);
}

#[test]
fn unplugging_while_flashing_fails_the_slot_and_replugging_retries_it() {
    let (mut app, _) = app(Screen::Bench);
    let job = flashing_slot(&mut app);
    app.update(Action::Unplugged { slot: 0 });
    assert!(matches!(
        &app.bench.slots[0].state,
        SlotState::Failed { reason, .. } if reason.contains("unplugged")
    ));
    slot0_flash(
        &mut app,
        job,
        port_event(|port| FlashEvent::Failed {
            port,
            error: "the board was unplugged".into(),
        }),
    );
    assert_eq!(
        app.bench.failed, 1,
        "the stale failure is not counted twice"
    );
    plug(&mut app, 0);
    let tasks = app.take_tasks();
    assert!(
        matches!(&tasks[..], [Task::Flash { device, .. }] if device.serial_number == SNS[0]),
        "{tasks:?}"
    );
}

#[test]
fn no_batch_blocks_and_a_done_batch_says_so() {
    let (mut app, _) = app(Screen::Bench);
    plug(&mut app, 1);
    assert!(
        app.take_tasks().is_empty(),
        "nothing is flashed without a batch"
    );
    assert!(matches!(&app.bench.slots[1].state, SlotState::Blocked(r) if r.contains("no batch")));
    app.update(Action::UseBatch(batch_summary(1, 1)));
    let job = claim_job(&app.take_tasks(), 1);
    app.update(Action::ClaimRefused {
        owner: Owner::Slot(1),
        job,
        reason: "batch B-0042 has no device left to flash".into(),
        batch_done: true,
    });
    assert!(
        matches!(&app.bench.slots[1].state, SlotState::Blocked(r) if r.contains("B-0042 is done"))
    );
    assert_eq!(app.bench.failed, 0);
}

#[test]
fn confirm_mode_waits_for_enter_on_the_selected_slot() {
    let (mut app, _) = app(Screen::Bench);
    app.update(key(KeyCode::Char('c')));
    assert!(app.bench.confirm_each_board);
    app.update(Action::UseBatch(batch_summary(4, 0)));
    plug(&mut app, 2);
    assert!(app.take_tasks().is_empty());
    assert_eq!(app.bench.slots[2].state, SlotState::Ready);
    app.update(key(KeyCode::Enter));
    assert!(
        app.take_tasks().is_empty(),
        "Enter acts on the selected slot only"
    );
    app.update(key(KeyCode::Char('3')));
    app.update(key(KeyCode::Enter));
    claim_job(&app.take_tasks(), 2);
}

#[test]
fn two_slots_claim_separately_and_reports_reach_only_their_slot() {
    let (mut app, _) = app(Screen::Bench);
    app.update(Action::UseBatch(batch_summary(4, 0)));
    plug(&mut app, 0);
    plug(&mut app, 1);
    let tasks = app.take_tasks();
    let (a, b) = (claim_job(&tasks, 0), claim_job(&tasks, 1));
    assert_ne!(a, b);
    app.update(Action::Claimed {
        owner: Owner::Slot(1),
        job: b,
        device: device(SNS[1], Status::Manufactured, None),
    });
    app.update(Action::ClaimRefused {
        owner: Owner::Slot(0),
        job: a,
        reason: "cannot reach the backend".into(),
        batch_done: false,
    });
    assert!(matches!(
        app.bench.slots[0].state,
        SlotState::Failed {
            stage: Stage::Claim,
            ..
        }
    ));
    assert!(matches!(app.bench.slots[1].state, SlotState::Flashing(_)));
}

/// Takes `sn` into the wizard's flash step with `ports` to pick from.
fn wizard_at_flash_step(app: &mut App, sn: &str, ports: &[&str]) {
    app.update(Action::Go(Screen::Wizard));
    typed(app, sn);
    app.update(key(KeyCode::Enter));
    app.update(Action::DeviceLoaded(device(sn, Status::Manufactured, None)));
    assert_eq!(app.wizard.step, Step::Flash);
    app.update(Action::Ports(ports.iter().map(|p| p.to_string()).collect()));
    app.take_tasks();
}

#[test]
fn the_wizard_and_the_bench_never_work_on_the_same_port() {
    // The bench is flashing the board on /dev/ttyUSB0: the wizard refuses that port.
    let (mut app, _) = app(Screen::Bench);
    flashing_slot(&mut app);
    wizard_at_flash_step(&mut app, SNS[2], &["/dev/ttyUSB0", "/dev/ttyUSB1"]);
    app.update(key(KeyCode::Enter));
    assert_eq!(app.take_tasks(), vec![]);
    let error = app.wizard.error.clone().expect("an explanation");
    assert!(error.contains("slot 1 of the bench"), "{error}");
    // Another port is fine.
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Enter));
    assert!(matches!(
        &app.take_tasks()[..],
        [Task::Claim {
            owner: Owner::Wizard,
            ..
        }]
    ));

    // The wizard is flashing /dev/ttyUSB1 when a board shows up in the slot on that port: the
    // slot waits, and r starts it once the wizard is done.
    let wizard_job = app.wizard.job;
    app.update(Action::Go(Screen::Bench));
    app.update(Action::Plugged {
        slot: 1,
        port: "/dev/ttyUSB1".into(),
    });
    assert!(
        matches!(&app.bench.slots[1].state, SlotState::Failed { reason, .. } if reason.contains("wizard")),
        "{:?}",
        app.bench.slots[1].state
    );
    assert!(app.take_tasks().is_empty());
    app.update(Action::ClaimRefused {
        owner: Owner::Wizard,
        job: wizard_job,
        reason: "taken elsewhere".into(),
        batch_done: false,
    });
    app.update(Action::Go(Screen::Wizard));
    app.update(key(KeyCode::Backspace));
    app.update(Action::Go(Screen::Bench));
    app.update(key(KeyCode::Right));
    app.update(key(KeyCode::Char('r')));
    claim_job(&app.take_tasks(), 1);
    assert_eq!(app.bench.slots[1].state, SlotState::Claiming);
}

#[test]
fn the_wizard_takes_a_scanned_serial_number_through_the_four_steps() {
    let (mut app, t0) = app(Screen::Wizard);
    // A scanner types the serial number and Enter.
    typed(&mut app, SNS[2]);
    app.take_tasks();
    app.update(key(KeyCode::Enter));
    assert_eq!(app.take_tasks(), vec![Task::Device(SNS[2].into())]);
    app.update(Action::DeviceLoaded(device(
        SNS[2],
        Status::Manufactured,
        None,
    )));
    assert_eq!(app.wizard.step, Step::Flash);
    assert_eq!(app.take_tasks(), vec![Task::ListPorts]);
    app.update(Action::Ports(vec![
        "/dev/ttyUSB0".into(),
        "/dev/ttyACM0".into(),
    ]));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Enter));
    let job = match &app.take_tasks()[..] {
        [
            Task::Claim {
                owner: Owner::Wizard,
                job,
                sn,
            },
        ] if sn == SNS[2] => *job,
        other => panic!("{other:?}"),
    };
    app.update(Action::Claimed {
        owner: Owner::Wizard,
        job,
        device: device(SNS[2], Status::Manufactured, None),
    });
    assert!(matches!(&app.take_tasks()[..], [Task::Flash { port, .. }] if port == "/dev/ttyACM0"));
    app.update(Action::Flash {
        owner: Owner::Wizard,
        job,
        event: port_event(|port| FlashEvent::Failed {
            port,
            error: "verify failed".into(),
        }),
    });
    assert!(matches!(app.wizard.phase, FlashPhase::Failed(_)));
    app.update(key(KeyCode::Char('r')));
    let job = match &app.take_tasks()[..] {
        [Task::Claim { job, .. }] => *job,
        other => panic!("{other:?}"),
    };
    app.update(Action::Claimed {
        owner: Owner::Wizard,
        job,
        device: device(SNS[2], Status::Manufactured, None),
    });
    app.take_tasks();
    app.update(Action::Flash {
        owner: Owner::Wizard,
        job,
        event: flash_done("24:0A:C4:00:00:07"),
    });
    assert_eq!(app.wizard.step, Step::Verify);
    assert!(app.take_tasks().is_empty());
    app.update(Action::VerifyFailed {
        owner: Owner::Wizard,
        job,
        reason: "no heartbeat within 60 s".into(),
    });
    // A retry verifies again without flashing again, with what the flash found.
    app.update(key(KeyCode::Char('r')));
    assert!(
        matches!(&app.take_tasks()[..], [Task::Verify { mac, .. }] if mac == "24:0A:C4:00:00:07")
    );
    app.set_time(t0 + Duration::from_secs(40), "14:02:51");
    app.update(Action::Verified {
        owner: Owner::Wizard,
        job,
        device: device(SNS[2], Status::Provisioned, Some("24:0A:C4:00:00:07")),
    });
    assert_eq!(app.wizard.step, Step::Done);
    assert!((app.wizard.total_seconds - 40.0).abs() < 0.01);
    // "Next device" keeps the board for quick-create and clears the rest.
    app.update(key(KeyCode::Char('n')));
    assert_eq!(app.wizard.step, Step::Select);
    assert_eq!(
        app.screen,
        Screen::Wizard,
        "n here is next device, not new batch"
    );
    assert_eq!(app.wizard.input.value(), "");
}

#[test]
fn the_wizard_quick_creates_a_device_and_leaving_gives_the_claim_back() {
    let (mut app, _) = app(Screen::Wizard);
    app.update(ctrl('b'));
    app.update(ctrl('n'));
    let tasks = app.take_tasks();
    assert!(
        matches!(&tasks[..], [Task::CreateBatch(order)] if order.quantity == 1 && order.board == "bellcore-v2"),
        "{tasks:?}"
    );
    let created = Batch {
        summary: batch_summary(1, 0),
        devices: vec![device(SNS[3], Status::Manufactured, None)],
    };
    app.update(Action::BatchCreated(created));
    assert_eq!(app.wizard.step, Step::Flash);
    app.take_tasks();
    app.update(key(KeyCode::Backspace));
    assert_eq!(
        app.take_tasks(),
        vec![Task::Release {
            sn: SNS[3].into(),
            owner: Owner::Wizard
        }]
    );
    assert_eq!(app.wizard.step, Step::Select);
    // A typo gets a clear error, not a silent nothing.
    typed(&mut app, "PV-26A18-BC02R-X7KQ");
    app.update(key(KeyCode::Enter));
    assert!(
        app.wizard
            .error
            .as_deref()
            .unwrap()
            .contains("not a serial number")
    );
}

#[test]
fn global_keys_help_navigation_and_a_guarded_quit() {
    let (mut app, t0) = app(Screen::Dashboard);
    app.update(key(KeyCode::Char('?')));
    assert!(app.help);
    app.update(key(KeyCode::Char('x')));
    assert!(!app.help, "any key closes the help");
    app.update(key(KeyCode::Char('d')));
    assert_eq!(app.screen, Screen::Devices);
    assert!(matches!(&app.take_tasks()[..], [Task::Devices { .. }]));
    app.update(key(KeyCode::Char('e')));
    app.update(key(KeyCode::Char('q')));
    assert_eq!(app.screen, Screen::Devices, "q goes back");
    app.update(key(KeyCode::Char('q')));
    assert_eq!(app.screen, Screen::Dashboard);
    // Busy: the first q only warns.
    app.bench.slots[0].state = SlotState::Claiming;
    app.update(key(KeyCode::Char('q')));
    assert!(!app.quit);
    assert!(app.status.as_ref().unwrap().1.contains("press again"));
    app.set_time(t0 + Duration::from_secs(1), "14:02:12");
    app.update(ctrl('c'));
    assert!(app.quit);
}

#[test]
fn a_batch_form_creates_and_hands_the_batch_to_the_bench() {
    let (mut app, _) = app(Screen::Dashboard);
    app.update(key(KeyCode::Char('n')));
    assert_eq!(app.screen, Screen::Batches);
    typed(&mut app, "4x");
    assert_eq!(app.batches.form.as_ref().unwrap().quantity.value(), "4");
    app.update(key(KeyCode::BackTab));
    app.update(key(KeyCode::Right));
    app.take_tasks();
    app.update(key(KeyCode::Enter));
    let tasks = app.take_tasks();
    assert!(
        matches!(&tasks[..], [Task::CreateBatch(o)] if o.quantity == 4 && o.board == "bellcore-v2"),
        "{tasks:?}"
    );
    app.update(Action::BatchCreated(Batch {
        summary: batch_summary(4, 0),
        devices: SNS
            .iter()
            .map(|sn| device(sn, Status::Manufactured, None))
            .collect(),
    }));
    assert!(app.batches.detail.is_some());
    app.update(key(KeyCode::Char('e')));
    assert_eq!(app.screen, Screen::Bench);
    assert_eq!(app.bench.batch.as_ref().unwrap().batch_id, "B-0042");
}

// ---- snapshots -------------------------------------------------------------------------

fn stats() -> Stats {
    let mut hours = vec![0; 24];
    for (h, n) in [(8, 3), (9, 12), (10, 15), (11, 9), (13, 14)] {
        hours[h] = n;
    }
    Stats {
        total: 1234,
        by_status: serde_json::from_value(json!({
            "manufactured": 400, "flashed": 12, "provisioned": 700, "sold": 80,
            "claimed": 20, "active": 20, "revoked": 2
        }))
        .unwrap(),
        by_board: serde_json::from_value(json!({ "bellcore-v1": 300, "bellcore-v2": 934 }))
            .unwrap(),
        provisioned_today: 53,
        provisioned_by_hour: hours,
        recent: (0..6)
            .map(|i| AuditEntry {
                id: i,
                at: format!("2026-01-18T14:0{i}:11.000Z"),
                actor: "bench-1".into(),
                action: if i % 2 == 0 {
                    "device.provisioned".into()
                } else {
                    "device.flashed".into()
                },
                subject: Some(SNS[i as usize % 4].into()),
                before: None,
                after: None,
            })
            .collect(),
    }
}

fn health() -> Action {
    Action::Health(Ok(serde_json::from_value(json!({
        "status": "ok", "registry": "ok", "broker": "connected"
    }))
    .unwrap()))
}

fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    terminal.backend().to_string()
}

fn snapshot(name: &str, app: &App) {
    for (w, h) in [(80, 24), (120, 40)] {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), render(app, w, h));
    }
}

/// The screen in colour at 120 x 40 with every cell's style, readable: a run of cells in one
/// style starts with `[foreground on background +MODIFIERS]`, the terminal's default with `[-]`.
fn styled(app: &mut App) -> String {
    let plain = app.theme;
    app.theme = Theme::colored();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    app.theme = plain;
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..40 {
        let mut current = None;
        for x in 0..120 {
            let cell = &buffer[(x, y)];
            let style = (cell.fg, cell.bg, cell.modifier);
            if current != Some(style) {
                out.push_str(&describe_style(style));
                current = Some(style);
            }
            out.push_str(cell.symbol());
        }
        out.push('\n');
    }
    out
}

fn describe_style(
    (fg, bg, modifier): (
        ratatui::style::Color,
        ratatui::style::Color,
        ratatui::style::Modifier,
    ),
) -> String {
    use ratatui::style::{Color, Modifier};
    if fg == Color::Reset && bg == Color::Reset && modifier == Modifier::empty() {
        return "[-]".into();
    }
    let mods = if modifier.is_empty() {
        String::new()
    } else {
        format!(" +{modifier:?}")
    };
    format!("[{fg:?} on {bg:?}{mods}]")
}

fn styled_snapshot(name: &str, app: &mut App) {
    insta::assert_snapshot!(format!("{name}_styled"), styled(app));
}

/// A bench in every slot state: flashing, verifying, failed, done.
fn busy_bench() -> App {
    let (mut app, t0) = app(Screen::Bench);
    app.update(health());
    app.update(Action::UseBatch(batch_summary(15, 11)));
    for slot in 0..4 {
        plug(&mut app, slot);
    }
    let tasks = app.take_tasks();
    let jobs: Vec<u64> = (0..4).map(|s| claim_job(&tasks, s)).collect();
    for (slot, job) in jobs.iter().enumerate() {
        app.update(Action::Claimed {
            owner: Owner::Slot(slot),
            job: *job,
            device: device(SNS[slot], Status::Manufactured, None),
        });
        app.update(Action::Prepared {
            owner: Owner::Slot(slot),
            job: *job,
            firmware: "1.0.1".into(),
            parts: vec![
                ("bootloader.bin".into(), 26_000),
                ("partitions.bin".into(), 3072),
                ("firmware.bin".into(), 900_000),
                ("nvs".into(), 24_576),
            ],
        });
        app.update(Action::Flash {
            owner: Owner::Slot(slot),
            job: *job,
            event: FlashEvent::Connected {
                port: format!("/dev/ttyUSB{slot}"),
                chip: "esp32 rev v3.0".into(),
                mac: format!("24:0A:C4:12:34:5{slot}"),
                flash_size: "4MB".into(),
            },
        });
    }
    let progress = |part: &str, done: usize, total: usize| FlashEvent::PartProgress {
        port: "/dev/ttyUSB0".into(),
        part: part.into(),
        done,
        total,
    };
    for (part, total) in [("bootloader.bin", 26_000), ("partitions.bin", 3072)] {
        app.update(Action::Flash {
            owner: Owner::Slot(0),
            job: jobs[0],
            event: FlashEvent::PartStarted {
                port: "/dev/ttyUSB0".into(),
                part: part.into(),
                offset: 0x1000,
                bytes: total,
            },
        });
        app.update(Action::Flash {
            owner: Owner::Slot(0),
            job: jobs[0],
            event: FlashEvent::PartDone {
                port: "/dev/ttyUSB0".into(),
                part: part.into(),
            },
        });
    }
    app.update(Action::Flash {
        owner: Owner::Slot(0),
        job: jobs[0],
        event: progress("firmware.bin", 549_000, 900_000),
    });
    app.update(Action::Flash {
        owner: Owner::Slot(1),
        job: jobs[1],
        event: flash_done("24:0A:C4:12:34:51"),
    });
    app.update(Action::Console {
        owner: Owner::Slot(1),
        job: jobs[1],
        line: "I (812) wifi: connected".into(),
    });
    app.update(Action::Flash {
        owner: Owner::Slot(2),
        job: jobs[2],
        event: FlashEvent::Failed {
            port: "/dev/ttyUSB2".into(),
            error: "no sync: hold BOOT and press EN, or check the cable".into(),
        },
    });
    app.update(Action::Flash {
        owner: Owner::Slot(3),
        job: jobs[3],
        event: flash_done("24:0A:C4:12:34:53"),
    });
    app.set_time(t0 + Duration::from_secs(6), "14:02:17");
    app.update(Action::Verified {
        owner: Owner::Slot(3),
        job: jobs[3],
        device: device(SNS[3], Status::Provisioned, Some("24:0A:C4:12:34:53")),
    });
    app.take_tasks();
    app
}

#[test]
fn snapshots_of_the_bench() {
    let mut bench = busy_bench();
    snapshot("bench", &bench);
    styled_snapshot("bench", &mut bench);
    let (mut empty, _) = app(Screen::Bench);
    empty.update(health());
    snapshot("bench_no_batch", &empty);
}

#[test]
fn snapshot_of_the_help_overlay() {
    let mut app = busy_bench();
    app.update(key(KeyCode::Char('?')));
    snapshot("help_bench", &app);
}

#[test]
fn snapshots_of_the_dashboard() {
    let (mut app, _) = app(Screen::Dashboard);
    snapshot("dashboard_loading", &app);
    let (mut down, _) = self::app(Screen::Dashboard);
    down.update(Action::Health(Err(
        "cannot reach the backend at http://10.0.0.5:8080/healthz: connection refused".into(),
    )));
    snapshot("dashboard_backend_down", &down);
    app.update(Action::Stats(stats()));
    app.update(health());
    snapshot("dashboard", &app);
}

fn devices_page(total: i64) -> DevicePage {
    DevicePage {
        devices: SNS
            .iter()
            .enumerate()
            .map(|(i, sn)| {
                let status = [
                    Status::Provisioned,
                    Status::Manufactured,
                    Status::Flashed,
                    Status::Revoked,
                ][i];
                let mac = format!("24:0A:C4:12:34:5{i}");
                device(sn, status, (status != Status::Manufactured).then_some(&mac))
            })
            .collect(),
        total,
        total_capped: false,
        limit: 200,
        offset: 0,
    }
}

#[test]
fn the_devices_filter_line_sets_board_batch_and_dates_and_a_failed_query_stops_loading() {
    let (mut app, _) = app(Screen::Devices);
    app.take_tasks();
    app.update(key(KeyCode::Char('/')));
    typed(
        &mut app,
        "board:bellcore-v1 24:0A:C4 batch:B-0042 from:2026-11-01 to:2026-11-30 to: bench",
    );
    let tasks = app.take_tasks();
    let Some(Task::Devices { request, filter }) = tasks.last() else {
        panic!("{tasks:?}");
    };
    assert_eq!(filter.board.as_deref(), Some("bellcore-v1"));
    assert_eq!(filter.batch.as_deref(), Some("B-0042"));
    assert_eq!(filter.created_from.as_deref(), Some("2026-11-01"));
    assert_eq!(filter.created_to.as_deref(), Some("2026-11-30"));
    // A MAC keeps its colons, and an empty `to:` is just text.
    assert_eq!(filter.text.as_deref(), Some("24:0A:C4 to: bench"));
    assert_eq!(filter.offset, Some(0));
    assert!(app.devices.loading);
    // The backend refuses (say, a bad date): the screen stops waiting and says why.
    app.update(Action::DevicePageFailed { request: *request });
    app.update(Action::Failed(
        "cannot list devices: `yesterday` is not a date".into(),
    ));
    assert!(!app.devices.loading);
    assert!(app.status.as_ref().unwrap().1.contains("not a date"));
    // Clearing the line clears the field filters too.
    for _ in 0..80 {
        app.update(key(KeyCode::Backspace));
    }
    let tasks = app.take_tasks();
    let Some(Task::Devices { filter, .. }) = tasks.last() else {
        panic!("{tasks:?}");
    };
    assert_eq!(
        (
            &filter.board,
            &filter.batch,
            &filter.created_from,
            &filter.text
        ),
        (&None, &None, &None, &None)
    );
}

#[test]
fn snapshots_of_the_devices_screen() {
    let (mut app, _) = app(Screen::Dashboard);
    app.update(health());
    app.update(key(KeyCode::Char('d')));
    let request = match &app.take_tasks()[..] {
        [Task::Devices { request, .. }] => *request,
        other => panic!("{other:?}"),
    };
    app.update(Action::DevicePage {
        request,
        page: devices_page(100_000),
    });
    snapshot("devices", &app);
    styled_snapshot("devices", &mut app);
    app.update(key(KeyCode::Enter));
    let mut detail = device(SNS[0], Status::Provisioned, Some("24:0A:C4:12:34:50"));
    detail.history = Some(vec![AuditEntry {
        id: 1,
        at: "2026-01-18T09:10:00.000Z".into(),
        actor: "bench-1".into(),
        action: "device.flashed".into(),
        subject: Some(SNS[0].into()),
        before: None,
        after: None,
    }]);
    detail.assigned_email = Some("ada@example.com".into());
    detail.invite = Some(vesper::model::InviteState {
        id: 7,
        status: vesper::model::MailStatus::Sent,
        attempts: 1,
        sent_at: Some("2026-01-18T09:12:00.000Z".into()),
        last_error: None,
    });
    app.update(Action::DeviceLoaded(detail));
    snapshot("device_detail", &app);
    app.take_tasks();
    app.update(key(KeyCode::Char('x')));
    snapshot("device_revoke_confirm", &app);
    app.update(key(KeyCode::Char('n')));
    assert!(
        app.take_tasks().is_empty(),
        "anything but y cancels a revoke"
    );
}

#[test]
fn snapshots_of_the_batches_screens() {
    let (mut app, _) = app(Screen::Batches);
    app.update(health());
    app.update(Action::Batches(vec![batch_summary(15, 11), {
        let mut b = batch_summary(4, 4);
        b.batch_id = "B-0041".into();
        b
    }]));
    snapshot("batches", &app);
    app.update(key(KeyCode::Char('n')));
    typed(&mut app, "15");
    snapshot("batch_form", &app);
    app.update(key(KeyCode::Esc));
    app.update(Action::BatchLoaded(Batch {
        summary: batch_summary(4, 1),
        devices: devices_page(4).devices,
    }));
    snapshot("batch_detail", &app);
}

#[test]
fn a_verifying_slot_shows_the_firmwares_own_console_lines_over_boot_noise() {
    let (mut app, _) = app(Screen::Bench);
    let job = verifying_slot(&mut app);
    for line in [
        "ets Jul 29 2019 12:21:46",
        "vesper: boot sn=PV-26A18-BC02R-X7KQA hw=BC02 fw=1.0.1 mac=24:0A:C4:12:34:56 chip=esp32",
        "I (210) wifi: mac 24:0a:c4:12:34:56",
        "vesper: wifi connected ip=10.0.0.7",
        "I (300) phy: calibration done",
    ] {
        app.update(Action::Console {
            owner: Owner::Slot(0),
            job,
            line: line.into(),
        });
    }
    let screen = render(&app, 120, 40);
    assert!(
        screen.contains("vesper: boot sn=PV-26A18-BC02R-X7KQA"),
        "{screen}"
    );
    assert!(
        screen.contains("vesper: wifi connected ip=10.0.0.7"),
        "{screen}"
    );
    assert!(!screen.contains("calibration done"), "{screen}");
    // The full log (o) shows everything.
    app.update(key(KeyCode::Char('o')));
    assert!(render(&app, 120, 40).contains("calibration done"));
}

#[test]
fn the_devices_screen_reloads_when_entered_and_follows_a_verified_board() {
    let (mut app, _) = app(Screen::Devices);
    app.update(health());
    let request = |tasks: &[Task]| {
        tasks
            .iter()
            .find_map(|t| match t {
                Task::Devices { request, .. } => Some(*request),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no device list asked for: {tasks:?}"))
    };
    app.update(Action::Go(Screen::Dashboard));
    app.take_tasks();
    app.update(Action::Go(Screen::Devices));
    let first = request(&app.take_tasks());
    app.update(Action::DevicePage {
        request: first,
        page: devices_page(4),
    });
    // SNS[1] is manufactured in the list; the bench verifies it.
    let mut provisioned = device(SNS[1], Status::Provisioned, Some("24:0A:C4:12:34:51"));
    provisioned.provisioned_at = Some("2026-01-18T09:12:00.000Z".into());
    app.update(Action::Verified {
        owner: Owner::Slot(0),
        job: 1,
        device: provisioned,
    });
    let screen = render(&app, 120, 40);
    let row = screen.lines().find(|l| l.contains(SNS[1])).unwrap();
    assert!(row.contains("provisioned"), "{screen}");
    // Leaving and coming back asks again (the list may have changed elsewhere).
    app.update(Action::Go(Screen::Dashboard));
    app.take_tasks();
    app.update(Action::Go(Screen::Devices));
    assert!(request(&app.take_tasks()) > first);
}

#[test]
fn the_batch_detail_follows_its_boards_and_reloads_when_entered() {
    let (mut app, _) = app(Screen::Batches);
    app.update(health());
    app.update(Action::Batches(vec![batch_summary(4, 0)]));
    let devices: Vec<Device> = SNS
        .iter()
        .map(|sn| device(sn, Status::Manufactured, None))
        .collect();
    app.update(Action::BatchLoaded(Batch {
        summary: batch_summary(4, 0),
        devices: devices.clone(),
    }));
    assert!(render(&app, 120, 40).contains("0/4 done"));
    // The bench verifies two boards of the batch while the detail is open.
    for (job, sn) in SNS[..2].iter().enumerate() {
        let mut provisioned = device(sn, Status::Provisioned, Some("24:0A:C4:00:00:01"));
        provisioned.provisioned_at = Some("2026-01-18T09:12:00.000Z".into());
        app.update(Action::Verified {
            owner: Owner::Slot(job),
            job: job as u64 + 1,
            device: provisioned,
        });
    }
    let screen = render(&app, 120, 40);
    assert!(screen.contains("2/4 done"), "{screen}");
    let rows: Vec<&str> = screen
        .lines()
        .filter(|l| SNS.iter().any(|sn| l.contains(sn)))
        .collect();
    assert_eq!(rows.len(), 4, "{screen}");
    assert!(
        rows[0].contains("provisioned") && rows[1].contains("provisioned"),
        "{screen}"
    );
    assert!(
        rows[2].contains("manufactured") && rows[3].contains("manufactured"),
        "{screen}"
    );
    // A device of another batch changes nothing here.
    let mut other = device("PV-26A18-BC02R-ZZZZA", Status::Provisioned, None);
    other.batch_id = "B-0007".into();
    app.update(Action::DeviceChanged(other));
    assert!(render(&app, 120, 40).contains("2/4 done"));
    // Entering the screen again asks the backend for the list and the open batch.
    app.update(Action::Go(Screen::Dashboard));
    app.take_tasks();
    app.update(Action::Go(Screen::Batches));
    let tasks = app.take_tasks();
    assert!(
        tasks.iter().any(|t| matches!(t, Task::Batches)),
        "{tasks:?}"
    );
    assert!(
        tasks
            .iter()
            .any(|t| matches!(t, Task::Batch(id) if id == "B-0042")),
        "{tasks:?}"
    );
}

#[test]
fn snapshots_of_the_wizard_steps() {
    let (mut app, t0) = app(Screen::Wizard);
    app.update(health());
    typed(&mut app, "X7K");
    let request = match &app.take_tasks()[..] {
        [.., Task::Search { request, .. }] => *request,
        other => panic!("{other:?}"),
    };
    app.update(Action::Matches {
        request,
        devices: vec![device(SNS[0], Status::Manufactured, None)],
    });
    snapshot("wizard_select", &app);
    app.update(key(KeyCode::Enter));
    app.update(Action::Ports(vec![
        "/dev/ttyUSB0".into(),
        "/dev/ttyACM0".into(),
    ]));
    snapshot("wizard_flash_port", &app);
    app.update(key(KeyCode::Enter));
    let job = match &app.take_tasks()[..] {
        [.., Task::Claim { job, .. }] => *job,
        other => panic!("{other:?}"),
    };
    app.update(Action::Claimed {
        owner: Owner::Wizard,
        job,
        device: device(SNS[0], Status::Manufactured, None),
    });
    app.update(Action::Prepared {
        owner: Owner::Wizard,
        job,
        firmware: "1.0.1".into(),
        parts: vec![("firmware.bin".into(), 900_000), ("nvs".into(), 24_576)],
    });
    app.update(Action::Flash {
        owner: Owner::Wizard,
        job,
        event: FlashEvent::PartProgress {
            port: "/dev/ttyUSB0".into(),
            part: "firmware.bin".into(),
            done: 300_000,
            total: 900_000,
        },
    });
    snapshot("wizard_flashing", &app);
    styled_snapshot("wizard_flashing", &mut app);
    app.update(Action::Flash {
        owner: Owner::Wizard,
        job,
        event: flash_done("24:0A:C4:12:34:50"),
    });
    for line in [
        "ets Jul 29 2019 12:21:46",
        "I (31) boot: ESP-IDF v5.1.2",
        "I (812) wifi: connected",
    ] {
        app.update(Action::Console {
            owner: Owner::Wizard,
            job,
            line: line.into(),
        });
    }
    app.set_time(t0 + Duration::from_secs(4), "14:02:15");
    snapshot("wizard_verify", &app);
    app.update(Action::Verified {
        owner: Owner::Wizard,
        job,
        device: device(SNS[0], Status::Provisioned, Some("24:0A:C4:12:34:50")),
    });
    snapshot("wizard_done", &app);
}

#[test]
fn no_color_keeps_the_symbols() {
    let app = busy_bench();
    let text = render(&app, 120, 40);
    for symbol in ["✓", "◌", "▶", "✗"] {
        assert!(text.contains(symbol), "{symbol} missing:\n{text}");
    }
}
