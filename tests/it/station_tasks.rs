//! The station's background tasks against real parts: the demo's in-process backend, embedded
//! broker and a simulated board on a pseudo-terminal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use vesper::client::BatchOrder;
use vesper::flashing::FlashEvent;
use vesper::registry::Status;
use vesper::station::tasks::Runner;
use vesper::station::{Action, Owner, Task};

/// Waits for `pick` to accept a report, keeping every report seen on the way.
async fn expect<T>(
    rx: &mut mpsc::UnboundedReceiver<Action>,
    seen: &mut Vec<Action>,
    what: &str,
    mut pick: impl FnMut(&Action) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            let action = rx.recv().await.expect("the runner is alive");
            let found = pick(&action);
            seen.push(action);
            if let Some(found) = found {
                return found;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within 60 s; seen: {seen:?}"))
}

/// The flash of `job` ended: `Ok((chip, mac))` or `Err(error)`.
fn flash_end(job: u64) -> impl FnMut(&Action) -> Option<Result<(String, String), String>> {
    move |action| match action {
        Action::Flash {
            job: j,
            event: FlashEvent::Done { chip, mac, .. },
            ..
        } if *j == job => Some(Ok((chip.clone(), mac.clone()))),
        Action::Flash {
            job: j,
            event: FlashEvent::Failed { error, .. },
            ..
        } if *j == job => Some(Err(error.clone())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_board_that_already_has_a_serial_number_is_never_written_again() {
    let demo = crate::support::quiet_demo(1).await;
    let client = demo.client();
    let port = demo.config.station_settings.slots[0].display().to_string();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let labels = tempfile::tempdir().unwrap();
    let runner = Runner::new(
        client.clone(),
        Arc::new(demo.config.clone()),
        tx,
        labels.path().to_owned(),
    );
    let batch = client
        .create_batch(&BatchOrder::of(&demo.config.boards[0].name, 2))
        .await
        .unwrap();
    let slot = Task::claimant(&demo.config.station, Owner::Slot(0));
    let mut seen = Vec::new();

    // The first serial number goes onto the board and is provisioned by its heartbeat.
    let first = client
        .claim_next(&batch.summary.batch_id, &slot)
        .await
        .unwrap();
    runner.spawn(Task::Flash {
        owner: Owner::Slot(0),
        job: 1,
        device: Box::new(first.clone()),
        port: port.clone(),
    });
    let (_, mac) = expect(&mut rx, &mut seen, "first flash", flash_end(1))
        .await
        .expect("the first flash succeeds");
    // The pipeline goes on to report the flash and wait for the first heartbeat by itself.
    let status = expect(&mut rx, &mut seen, "verification", |a| match a {
        Action::Verified { job: 1, device, .. } => Some(device.status),
        Action::VerifyFailed { job: 1, reason, .. } => panic!("verify failed: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(status, Status::Provisioned);

    // The same board comes back (plugged in again by mistake) with the next serial number:
    // it is identified and refused before a byte is written.
    let second = client
        .claim_next(&batch.summary.batch_id, &slot)
        .await
        .unwrap();
    assert_ne!(second.serial_number, first.serial_number);
    seen.clear();
    runner.spawn(Task::Flash {
        owner: Owner::Slot(0),
        job: 2,
        device: Box::new(second.clone()),
        port: port.clone(),
    });
    let error = expect(&mut rx, &mut seen, "second flash", flash_end(2))
        .await
        .expect_err("the second flash is refused");
    assert!(
        error.contains(&first.serial_number)
            && error.contains(&mac)
            && error.contains("nothing was written"),
        "{error}"
    );
    let written = seen.iter().any(|a| {
        matches!(
            a,
            Action::Flash {
                job: 2,
                event: FlashEvent::PartStarted { .. } | FlashEvent::PartProgress { .. },
                ..
            }
        )
    });
    assert!(!written, "no part was started: {seen:?}");
    assert!(
        seen.iter().any(|a| matches!(a, Action::Flash { job: 2, event: FlashEvent::Connected { mac: m, .. }, .. } if *m == mac)),
        "the board was identified first"
    );
    // The registry is unchanged: the first device keeps the board, the second is untouched.
    let first_now = client.device(&first.serial_number).await.unwrap();
    assert_eq!(first_now.status, Status::Provisioned);
    assert_eq!(first_now.mac.as_deref(), Some(mac.as_str()));
    let second_now = client.device(&second.serial_number).await.unwrap();
    assert_eq!(second_now.status, Status::Manufactured);
    assert_eq!(second_now.mac, None);
    // The refusal is on the device's record for the backend's failing-boards alert (the
    // pipeline reports it right after the flash's own failure event).
    let mut failure = None;
    for _ in 0..100 {
        let history = client
            .device(&second.serial_number)
            .await
            .unwrap()
            .history
            .unwrap();
        failure = history.into_iter().find(|e| e.action == "device.failed");
        if failure.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = failure.expect("the failure was reported").after.unwrap();
    assert_eq!(after["step"], "flash");
    assert!(
        after["reason"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{after}"
    );

    drop(runner);
    demo.stop().await;
}
