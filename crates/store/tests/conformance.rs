//! One conformance suite for the registry, run against both engines: SQLite in a temporary
//! data folder and PostgreSQL in a throwaway cluster (a fresh database per check). Every
//! registry behaviour the backend relies on is asserted here from the outside, through the
//! `Store` trait, with expectations written from DESIGN.md (not read back from the engine).

#[path = "support/pg.rs"]
#[allow(dead_code)] // each test binary uses part of the helper
mod pg;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use vesper_core::config::{Config, Machine};
use vesper_core::eol::record::TestRecord;
use vesper_core::model::{
    AlertKind, AuditQuery, Board, DeployReceipt, DeployState, DeviceFilter, DeviceSort,
    DeviceUsers, FailureReport, FlashReport, MailContent, MailStatus, NewBatch, Push, Role,
    Sighting, Status, UserAccess,
};
use vesper_core::serial::SerialNumber;
use vesper_store::{PgStore, RegistryError, Store};

type Check = for<'a> fn(&'a dyn Store) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        const CHECKS: &[(&str, Check)] = &[$((stringify!($name), |s| Box::pin($name(s)))),*];
    };
}

checks!(
    a_batch_is_whole_with_its_audit_row_and_distinct_serial_numbers,
    a_refused_batch_leaves_nothing,
    slots_never_share_a_device_and_a_done_batch_says_so,
    concurrent_claims_take_every_device_once,
    a_lapsed_lease_frees_the_device,
    a_held_device_is_refused_to_others_and_renewed_for_its_holder,
    status_moves_forward_only_and_a_no_op_writes_no_audit_row,
    a_flash_report_guards_the_mac_and_the_identity,
    a_board_seen_before_its_report_is_provisioned_by_it,
    the_first_heartbeat_provisions_once,
    owners_and_users_get_access_until_revoked,
    tokens_are_found_by_hash_and_stop_when_revoked,
    the_device_list_filters_sorts_and_pages,
    the_search_ignores_case_and_keeps_personal_data_to_those_allowed,
    due_mail_comes_oldest_first_and_a_failed_one_waits,
    a_leased_message_goes_to_one_worker,
    sent_and_dead_are_final_until_a_dead_one_is_retried,
    an_assigned_device_that_becomes_active_gets_one_welcome,
    a_delivery_runs_once_and_a_finished_run_is_audited,
    stats_and_failing_devices_count_what_happened,
    a_list_past_the_count_cap_says_so_and_pages_in_order,
    access_changes_are_read_in_order_after_a_cursor,
    a_test_record_sent_twice_is_stored_once,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    for (name, check) in CHECKS {
        eprintln!("sqlite: {name}");
        let dir = tempfile::tempdir().unwrap();
        let store = vesper_store::open_store(None, dir.path()).await.unwrap();
        check(store.as_ref()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    let cluster = pg::PgCluster::start();
    for (i, (name, check)) in CHECKS.iter().enumerate() {
        eprintln!("postgres: {name}");
        let url = cluster.create_database(&format!("check_{i}"));
        let store = PgStore::connect(&url).await.unwrap();
        check(&store).await;
    }
}

/// A second start on a database another instance already migrated changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_migrations_apply_once_when_instances_start_together() {
    let cluster = pg::PgCluster::start();
    let url = cluster.create_database("twice");
    let (a, b) = tokio::join!(PgStore::connect(&url), PgStore::connect(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.create_token("one", Role::Viewer, "t").await.unwrap();
    assert_eq!(b.tokens().await.unwrap().len(), 1);
    assert!(!a.is_empty().await.unwrap());
}

fn board() -> Board {
    let dir = tempfile::tempdir().unwrap();
    let machine = Machine {
        station_name: "test".into(),
        firmware_cache: dir.path().join("cache"),
    };
    Config::example_at(&dir.path().join("config.toml"), &machine).boards[0].clone()
}

async fn batch_of(s: &dyn Store, quantity: u32) -> (String, Vec<String>) {
    let board = board();
    let batch = s
        .create_batch(
            &NewBatch {
                board: &board,
                quantity,
                subscription_plan: "standard".into(),
                available_outputs: 8,
            },
            "tech-1",
        )
        .await
        .unwrap();
    let sns = batch
        .devices
        .iter()
        .map(|d| d.serial_number.clone())
        .collect();
    (batch.summary.batch_id, sns)
}

fn report(mac: &str) -> FlashReport {
    FlashReport {
        chip: "ESP32".into(),
        mac: mac.into(),
        firmware_version: "1.0.1".into(),
        station: "bench-1".into(),
        force: false,
    }
}

async fn actions(s: &dyn Store, subject: &str) -> Vec<String> {
    let q = AuditQuery {
        subject: Some(subject.into()),
        limit: 100,
        ..Default::default()
    };
    let mut rows: Vec<String> = s
        .audit(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    rows.reverse();
    rows
}

const LEASE: Duration = Duration::from_secs(600);

async fn a_batch_is_whole_with_its_audit_row_and_distinct_serial_numbers(s: &dyn Store) {
    let (name, sns) = batch_of(s, 60).await;
    assert!(name.starts_with("B-"), "{name}");
    let mut distinct = sns.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 60);
    for sn in &sns {
        sn.parse::<SerialNumber>().unwrap();
    }
    let batch = s.batch(&name).await.unwrap();
    let again: Vec<String> = batch
        .devices
        .iter()
        .map(|d| d.serial_number.clone())
        .collect();
    assert_eq!(
        again, sns,
        "the batch's devices in the order they were made"
    );
    assert_eq!(batch.summary.quantity, 60);
    assert_eq!(batch.summary.created_by, "tech-1");
    assert_eq!(batch.summary.status_counts.get(Status::Manufactured), 60);
    assert_eq!(actions(s, &name).await, ["batch.create"]);
    let (second, _) = batch_of(s, 1).await;
    let listed: Vec<String> = s
        .batches(10, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.batch_id)
        .collect();
    assert_eq!(listed, [second.clone(), name.clone()], "newest first");
    assert_eq!(s.batches(10, 1).await.unwrap().len(), 1);
    assert!(matches!(
        s.batch("B-9999").await,
        Err(RegistryError::NoBatch(_))
    ));
    let d = s.device(&sns[0]).await.unwrap();
    assert_eq!(
        (d.status, d.batch_id.as_str(), d.available_outputs),
        (Status::Manufactured, name.as_str(), 8)
    );
}

async fn a_refused_batch_leaves_nothing(s: &dyn Store) {
    let board = board();
    for (quantity, plan, outputs) in [(0, "standard", 8), (1, "", 8), (1, "standard", 5000)] {
        let new = NewBatch {
            board: &board,
            quantity,
            subscription_plan: plan.into(),
            available_outputs: outputs,
        };
        assert!(matches!(
            s.create_batch(&new, "t").await,
            Err(RegistryError::Invalid(_))
        ));
    }
    assert!(s.batches(10, 0).await.unwrap().is_empty());
    assert!(
        s.audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
}

async fn slots_never_share_a_device_and_a_done_batch_says_so(s: &dyn Store) {
    let (batch, _) = batch_of(s, 3).await;
    let a = s.claim_next(&batch, "bench-1/1", LEASE, "t").await.unwrap();
    let b = s.claim_next(&batch, "bench-1/2", LEASE, "t").await.unwrap();
    let c = s.claim_next(&batch, "bench-2/1", LEASE, "t").await.unwrap();
    let mut sns = vec![&a.serial_number, &b.serial_number, &c.serial_number];
    sns.sort();
    sns.dedup();
    assert_eq!(sns.len(), 3);
    assert_eq!(a.claimed_by.as_deref(), Some("bench-1/1"));
    match s.claim_next(&batch, "bench-1/1", LEASE, "t").await {
        Err(RegistryError::BatchDone { in_progress: 3, .. }) => {}
        other => panic!("expected BatchDone, got {other:?}"),
    }
    s.release(&b.serial_number, "bench-1/2", "t").await.unwrap();
    let again = s.claim_next(&batch, "bench-1/3", LEASE, "t").await.unwrap();
    assert_eq!(again.serial_number, b.serial_number);
    assert_eq!(
        actions(s, &b.serial_number).await,
        ["device.claimed", "device.released", "device.claimed"]
    );
    // A flashed device leaves the pool.
    s.flashed(&a.serial_number, &report("24:0A:C4:00:00:01"), "t")
        .await
        .unwrap();
    s.release(&c.serial_number, "bench-2/1", "t").await.unwrap();
    let last = s.claim_next(&batch, "x/1", LEASE, "t").await.unwrap();
    assert_eq!(last.serial_number, c.serial_number);
    assert!(matches!(
        s.claim_next("B-9999", "x", LEASE, "t").await,
        Err(RegistryError::NoBatch(_))
    ));
    assert!(matches!(
        s.claim_next(&batch, "", LEASE, "t").await,
        Err(RegistryError::Invalid(_))
    ));
}

async fn concurrent_claims_take_every_device_once(s: &dyn Store) {
    let (batch, sns) = batch_of(s, 40).await;
    let claims = (0..8).map(|slot| {
        let batch = batch.clone();
        async move {
            let mut mine = Vec::new();
            loop {
                match s
                    .claim_next(&batch, &format!("bench/{slot}"), LEASE, "t")
                    .await
                {
                    Ok(d) => mine.push(d.serial_number),
                    Err(RegistryError::BatchDone { .. }) => return mine,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    });
    let mut taken: Vec<String> = futures_util::future::join_all(claims).await.concat();
    taken.sort();
    let mut expected = sns;
    expected.sort();
    assert_eq!(taken, expected, "every device claimed exactly once");
}

async fn a_lapsed_lease_frees_the_device(s: &dyn Store) {
    let (batch, _) = batch_of(s, 1).await;
    let a = s
        .claim_next(&batch, "dead-station/1", Duration::ZERO, "t")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = s.claim_next(&batch, "bench-1/1", LEASE, "t").await.unwrap();
    assert_eq!(a.serial_number, b.serial_number);
}

async fn a_held_device_is_refused_to_others_and_renewed_for_its_holder(s: &dyn Store) {
    let (batch, _) = batch_of(s, 1).await;
    let a = s.claim_next(&batch, "bench-1/1", LEASE, "t").await.unwrap();
    let sn = &a.serial_number;
    assert!(matches!(
        s.claim(sn, "wizard-2", LEASE, "t").await,
        Err(RegistryError::ClaimedElsewhere { .. })
    ));
    s.claim(sn, "bench-1/1", LEASE, "t").await.unwrap();
    s.release(sn, "wizard-2", "t").await.unwrap();
    assert!(
        s.claim(sn, "wizard-2", LEASE, "t").await.is_err(),
        "only the holder releases"
    );
    s.set_status(sn, Status::Revoked, "admin").await.unwrap();
    assert!(matches!(
        s.claim(sn, "bench-1/1", LEASE, "t").await,
        Err(RegistryError::Revoked(_))
    ));
    assert!(matches!(
        s.claim("PV-26A18-BC02R-X7KQA", "w", LEASE, "t").await,
        Err(RegistryError::NoDevice(_))
    ));
}

async fn status_moves_forward_only_and_a_no_op_writes_no_audit_row(s: &dyn Store) {
    let (_, sns) = batch_of(s, 2).await;
    let sn = &sns[0];
    s.set_status(sn, Status::Flashed, "t").await.unwrap();
    s.set_status(sn, Status::Flashed, "t").await.unwrap();
    let d = s.set_status(sn, Status::Provisioned, "t").await.unwrap();
    assert!(d.provisioned_at.is_some());
    assert!(matches!(
        s.set_status(sn, Status::Flashed, "t").await,
        Err(RegistryError::IllegalTransition { .. })
    ));
    assert_eq!(actions(s, sn).await, ["device.status", "device.status"]);
    let revoked = s
        .set_status(&sns[1], Status::Revoked, "admin")
        .await
        .unwrap();
    assert_eq!(revoked.status, Status::Revoked);
    assert!(matches!(
        s.set_status(&sns[1], Status::Active, "t").await,
        Err(RegistryError::IllegalTransition {
            from: Status::Revoked,
            to: Status::Active,
            ..
        })
    ));
    assert_eq!(
        s.device_status(&sns[1]).await.unwrap(),
        Some(Status::Revoked)
    );
    assert_eq!(s.device_status("PV-26A18-BC02R-X7KQA").await.unwrap(), None);
    let history = s.device(sn).await.unwrap().history.unwrap();
    assert_eq!(
        history[0].before.as_ref().unwrap()["status"],
        "manufactured"
    );
    assert_eq!(history[0].after.as_ref().unwrap()["status"], "flashed");
}

async fn a_flash_report_guards_the_mac_and_the_identity(s: &dyn Store) {
    let (_, sns) = batch_of(s, 3).await;
    let d = s
        .flashed(&sns[0], &report("24:0a:c4:00:00:01"), "t")
        .await
        .unwrap();
    assert_eq!(
        (d.status, d.mac.as_deref()),
        (Status::Flashed, Some("24:0A:C4:00:00:01"))
    );
    assert_eq!(d.claimed_until, None);
    assert!(matches!(
        s.flashed(&sns[1], &report("24:0A:C4:00:00:01"), "t").await,
        Err(RegistryError::MacInUse { ref other, .. }) if *other == sns[0]
    ));
    assert!(matches!(
        s.flashed(&sns[0], &report("24:0A:C4:00:00:02"), "t").await,
        Err(RegistryError::AlreadyFlashed { .. })
    ));
    let forced = FlashReport {
        force: true,
        ..report("24:0A:C4:00:00:01")
    };
    let moved = s.flashed(&sns[1], &forced, "t").await.unwrap();
    assert_eq!(moved.mac.as_deref(), Some("24:0A:C4:00:00:01"));
    assert_eq!(s.device(&sns[0]).await.unwrap().mac, None);
    assert_eq!(
        actions(s, &sns[0]).await,
        ["device.flashed", "device.mac_moved"]
    );
    assert!(matches!(
        s.flashed(&sns[2], &report("not-a-mac"), "t").await,
        Err(RegistryError::Invalid(_))
    ));
    s.set_status(&sns[2], Status::Revoked, "t").await.unwrap();
    assert!(matches!(
        s.flashed(&sns[2], &report("24:0A:C4:00:00:03"), "t").await,
        Err(RegistryError::Revoked(_))
    ));
    // A failure report keeps the status and writes one audit row.
    let failure = FailureReport {
        station: "bench-1".into(),
        step: "flash".into(),
        reason: "timeout".into(),
    };
    s.failed(&sns[1], &failure, "t").await.unwrap();
    assert_eq!(s.device(&sns[1]).await.unwrap().status, Status::Flashed);
    assert_eq!(actions(s, &sns[1]).await.last().unwrap(), "device.failed");
}

async fn a_board_seen_before_its_report_is_provisioned_by_it(s: &dyn Store) {
    let (_, sns) = batch_of(s, 1).await;
    let seen = Sighting {
        serial_number: sns[0].clone(),
        at: "2026-11-30T10:00:00.000Z".into(),
        heartbeat: true,
        firmware: None,
    };
    s.record_sightings(&[seen], "mqtt").await.unwrap();
    let d = s
        .flashed(&sns[0], &report("24:0A:C4:00:00:09"), "t")
        .await
        .unwrap();
    assert_eq!(d.status, Status::Provisioned);
    assert_eq!(
        d.provisioned_at.as_deref(),
        Some("2026-11-30T10:00:00.000Z")
    );
}

async fn the_first_heartbeat_provisions_once(s: &dyn Store) {
    let (_, sns) = batch_of(s, 2).await;
    s.flashed(&sns[0], &report("24:0A:C4:00:00:01"), "t")
        .await
        .unwrap();
    s.flashed(&sns[1], &report("24:0A:C4:00:00:02"), "t")
        .await
        .unwrap();
    let at = |t: &str| format!("2026-11-30T10:00:0{t}.000Z");
    let beat = |sn: &str, t: &str, heartbeat: bool| Sighting {
        serial_number: sn.into(),
        at: at(t),
        heartbeat,
        firmware: Some("1.0.2".into()),
    };
    let events = s
        .record_sightings(
            &[
                beat(&sns[0], "1", true),
                beat(&sns[0], "2", true),
                beat(&sns[1], "3", false),
                beat("PV-26A18-BC02R-X7KQA", "4", true),
            ],
            "mqtt-heartbeat",
        )
        .await
        .unwrap();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.serial_number.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("provisioned", sns[0].as_str()),
            ("seen", sns[0].as_str()),
            ("seen", sns[1].as_str())
        ]
    );
    let d = s.device(&sns[0]).await.unwrap();
    assert_eq!(
        (d.status, d.firmware_version.as_deref()),
        (Status::Provisioned, Some("1.0.2"))
    );
    assert_eq!(
        (d.provisioned_at, d.last_seen),
        (Some(at("1")), Some(at("2")))
    );
    assert_eq!(
        s.device(&sns[1]).await.unwrap().status,
        Status::Flashed,
        "a reading does not provision"
    );
    assert_eq!(
        actions(s, &sns[0]).await,
        ["device.flashed", "device.provisioned"]
    );
}

async fn owners_and_users_get_access_until_revoked(s: &dyn Store) {
    let (_, sns) = batch_of(s, 1).await;
    let sn = &sns[0];
    let users = DeviceUsers {
        owner: Some("ana".into()),
        users_list: vec!["zed".into(), "bo".into(), "Bo".into()],
    };
    let d = s.set_users(sn, &users, "admin").await.unwrap();
    assert_eq!(d.owner.as_deref(), Some("ana"));
    assert_eq!(d.users_list, ["Bo", "bo", "zed"], "users in byte order");
    for (user, want) in [
        ("ana", UserAccess::Allowed),
        ("bo", UserAccess::Allowed),
        ("eve", UserAccess::NotAllowed),
    ] {
        assert_eq!(s.user_access(user, sn).await.unwrap(), want, "{user}");
    }
    let fewer = DeviceUsers {
        owner: Some("ana".into()),
        users_list: vec![],
    };
    s.set_users(sn, &fewer, "admin").await.unwrap();
    assert_eq!(
        s.user_access("bo", sn).await.unwrap(),
        UserAccess::NotAllowed
    );
    s.set_status(sn, Status::Revoked, "admin").await.unwrap();
    assert_eq!(
        s.user_access("ana", sn).await.unwrap(),
        UserAccess::NotAllowed
    );
    let bad = DeviceUsers {
        owner: Some("a/b".into()),
        users_list: vec![],
    };
    assert!(matches!(
        s.set_users(sn, &bad, "admin").await,
        Err(RegistryError::Invalid(_))
    ));
}

async fn tokens_are_found_by_hash_and_stop_when_revoked(s: &dyn Store) {
    let token = s
        .create_token("bench-1", Role::Technician, "admin")
        .await
        .unwrap();
    assert!(token.starts_with("vst_") && token.len() == 68, "{token}");
    let who = s.authenticate_token(&token).await.unwrap().unwrap();
    assert_eq!((who.name.as_str(), who.role), ("bench-1", Role::Technician));
    assert!(matches!(
        s.create_token("bench-1", Role::Admin, "admin").await,
        Err(RegistryError::TokenExists(_))
    ));
    assert!(matches!(
        s.create_token("bad name", Role::Admin, "admin").await,
        Err(RegistryError::Invalid(_))
    ));
    assert!(s.authenticate_token("vst_0000").await.unwrap().is_none());
    assert!(
        s.authenticate_token(&token.replace("vst_", "xyz_"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.token_active("bench-1").await.unwrap());
    s.create_token("ci", Role::Publisher, "admin")
        .await
        .unwrap();
    let names: Vec<String> = s
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["ci", "bench-1"]);
    s.revoke_token("bench-1", "admin").await.unwrap();
    assert!(s.authenticate_token(&token).await.unwrap().is_none());
    assert!(!s.token_active("bench-1").await.unwrap());
    assert!(matches!(
        s.revoke_token("bench-1", "admin").await,
        Err(RegistryError::NoToken(_))
    ));
    assert_eq!(
        actions(s, "bench-1").await,
        ["token.create", "token.revoke"]
    );
}

async fn the_device_list_filters_sorts_and_pages(s: &dyn Store) {
    let (first, a) = batch_of(s, 3).await;
    let (_, b) = batch_of(s, 2).await;
    s.flashed(&a[1], &report("24:0A:C4:00:00:01"), "t")
        .await
        .unwrap();
    let page = |f: DeviceFilter| async move { s.devices(&f).await.unwrap() };
    let all = page(DeviceFilter::default()).await;
    assert_eq!(all.total, 5);
    let flashed = page(DeviceFilter {
        status: Some(Status::Flashed),
        ..Default::default()
    })
    .await;
    assert_eq!(
        (flashed.total, flashed.devices[0].serial_number.as_str()),
        (1, a[1].as_str())
    );
    let of_batch = page(DeviceFilter {
        batch: Some(first.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(of_batch.total, 3);
    let mut by_sn: Vec<String> = a.iter().chain(&b).cloned().collect();
    by_sn.sort();
    let sorted = page(DeviceFilter {
        sort: Some(DeviceSort::SerialNumber),
        ..Default::default()
    })
    .await;
    let got: Vec<String> = sorted
        .devices
        .iter()
        .map(|d| d.serial_number.clone())
        .collect();
    assert_eq!(got, by_sn);
    let paged = page(DeviceFilter {
        sort: Some(DeviceSort::SerialNumber),
        limit: Some(2),
        offset: Some(2),
        ..Default::default()
    })
    .await;
    let got: Vec<String> = paged
        .devices
        .iter()
        .map(|d| d.serial_number.clone())
        .collect();
    assert_eq!((paged.total, got.as_slice()), (5, &by_sn[2..4]));
    // Flashed, newest first: the unflashed (no time) come last, by serial number.
    let by_flash = page(DeviceFilter {
        sort: Some(DeviceSort::Flashed),
        ..Default::default()
    })
    .await;
    assert_eq!(by_flash.devices[0].serial_number, a[1]);
    let rest: Vec<String> = by_flash.devices[1..]
        .iter()
        .map(|d| d.serial_number.clone())
        .collect();
    let mut unflashed: Vec<String> = by_sn.iter().filter(|sn| **sn != a[1]).cloned().collect();
    unflashed.sort();
    assert_eq!(rest, unflashed);
    let ascending = page(DeviceFilter {
        sort: Some(DeviceSort::Flashed),
        desc: Some(false),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ascending.devices.last().unwrap().serial_number,
        a[1],
        "no time sorts first going up"
    );
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let later = page(DeviceFilter {
        created_from: Some(tomorrow),
        ..Default::default()
    })
    .await;
    assert_eq!(later.total, 0);
    assert!(matches!(
        s.devices(&DeviceFilter {
            created_from: Some("yesterday".into()),
            ..Default::default()
        })
        .await,
        Err(RegistryError::Invalid(_))
    ));
}

async fn the_search_ignores_case_and_keeps_personal_data_to_those_allowed(s: &dyn Store) {
    let (_, sns) = batch_of(s, 3).await;
    s.flashed(&sns[0], &report("24:0A:C4:AB:CD:EF"), "t")
        .await
        .unwrap();
    s.assign(&sns[1], "Ana.Lopez@example.com", Some("Ana"), "t")
        .await
        .unwrap();
    let search = |text: &str, personal: bool| {
        let f = DeviceFilter {
            text: Some(text.into()),
            personal,
            ..Default::default()
        };
        async move {
            s.devices(&f)
                .await
                .unwrap()
                .devices
                .into_iter()
                .map(|d| d.serial_number)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        search("ab:cd", false).await,
        [sns[0].clone()],
        "MAC, any case"
    );
    assert_eq!(
        search(&sns[2][12..].to_lowercase(), false).await,
        [sns[2].clone()],
        "serial number, any case"
    );
    assert_eq!(search("ana.lopez", true).await, [sns[1].clone()]);
    assert!(
        search("ana.lopez", false).await.is_empty(),
        "e-mail only for those who may see it"
    );
    assert!(
        search("100%", true).await.is_empty(),
        "% is a character, not a wildcard"
    );
    assert!(
        search("_", false).await.is_empty(),
        "_ is a character, not a wildcard"
    );
}

fn welcome(name: &str) -> MailContent {
    MailContent::Welcome {
        serial_number: "PV-26A18-BC02R-X7KQA".into(),
        name: Some(name.into()),
    }
}

async fn due_mail_comes_oldest_first_and_a_failed_one_waits(s: &dyn Store) {
    let a = s
        .enqueue_mail("a@example.com", &welcome("A"), "t")
        .await
        .unwrap();
    let b = s
        .enqueue_mail("b@example.com", &welcome("B"), "t")
        .await
        .unwrap();
    assert_ne!(a.message_key, b.message_key);
    assert_eq!(a.message_key.len(), 32);
    assert!(
        a.message_key
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let due: Vec<i64> = s.mail_due(10).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(due, [a.id, b.id]);
    assert_eq!(s.mail_due(1).await.unwrap().len(), 1, "bounded");
    let failed = s
        .mail_failed(a.id, "451 try later", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((failed.status, failed.attempts), (MailStatus::Pending, 1));
    assert_eq!(
        failed.message_key, a.message_key,
        "the key survives a retry"
    );
    let due: Vec<i64> = s.mail_due(10).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(due, [b.id], "not due before its next attempt");
    s.mail_failed(a.id, "451 try later", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(s.mail_due(10).await.unwrap()[0].id, a.id, "due again");
    assert!(s.mail_next_due().await.unwrap().is_some());
    assert!(
        s.enqueue_mail("not an address", &welcome("C"), "t")
            .await
            .is_err()
    );
}

async fn a_leased_message_goes_to_one_worker(s: &dyn Store) {
    let a = s
        .enqueue_mail("a@example.com", &welcome("A"), "t")
        .await
        .unwrap();
    let b = s
        .enqueue_mail("b@example.com", &welcome("B"), "t")
        .await
        .unwrap();
    let (one, two) = tokio::join!(s.mail_lease(10), s.mail_lease(10));
    let mut ids: Vec<i64> = one
        .unwrap()
        .into_iter()
        .chain(two.unwrap())
        .map(|m| m.id)
        .collect();
    ids.sort();
    assert_eq!(ids, [a.id, b.id], "each message to one worker");
    assert!(
        s.mail_lease(10).await.unwrap().is_empty(),
        "leased messages wait"
    );
    s.mail_failed(a.id, "451", Duration::ZERO).await.unwrap();
    let again: Vec<i64> = s
        .mail_lease(10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        again,
        [a.id],
        "a recorded failure hands it out again when due"
    );
}

async fn sent_and_dead_are_final_until_a_dead_one_is_retried(s: &dyn Store) {
    let a = s
        .enqueue_mail("a@example.com", &welcome("A"), "t")
        .await
        .unwrap();
    let b = s
        .enqueue_mail("b@example.com", &welcome("B"), "t")
        .await
        .unwrap();
    let sent = s.mail_sent(a.id, "250 queued as X").await.unwrap();
    assert_eq!((sent.status, sent.attempts), (MailStatus::Sent, 1));
    assert!(sent.sent_at.is_some());
    assert_eq!(sent.provider_answer.as_deref(), Some("250 queued as X"));
    let dead = s.mail_dead(b.id, "550 no such user").await.unwrap();
    assert_eq!(
        (dead.status, dead.last_error.as_deref()),
        (MailStatus::Dead, Some("550 no such user"))
    );
    assert!(s.mail_due(10).await.unwrap().is_empty());
    assert!(
        matches!(s.mail_retry(a.id, "t").await, Err(RegistryError::Invalid(m)) if m.contains("is sent"))
    );
    let revived = s.mail_retry(b.id, "t").await.unwrap();
    assert_eq!((revived.status, revived.attempts), (MailStatus::Pending, 0));
    assert_eq!(s.outbox(Some(MailStatus::Sent), 10).await.unwrap().len(), 1);
    assert_eq!(s.mail(b.id).await.unwrap().status, MailStatus::Pending);
    let all: Vec<String> = s
        .audit(&AuditQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        all,
        [
            "mail.retry",
            "mail.dead",
            "mail.sent",
            "mail.queued",
            "mail.queued"
        ]
    );
    let big = "x".repeat(5000);
    let c = s
        .enqueue_mail("c@example.com", &welcome("C"), "t")
        .await
        .unwrap();
    let failed = s.mail_failed(c.id, &big, Duration::ZERO).await.unwrap();
    assert_eq!(
        failed.last_error.unwrap().len(),
        1024,
        "a provider's answer is kept to 1 KiB"
    );
}

async fn an_assigned_device_that_becomes_active_gets_one_welcome(s: &dyn Store) {
    let (_, sns) = batch_of(s, 2).await;
    let (a, b) = (&sns[0], &sns[1]);
    let d = s
        .assign(a, "ada@example.com", Some("Ada"), "t")
        .await
        .unwrap();
    assert_eq!(d.assigned_email.as_deref(), Some("ada@example.com"));
    for sn in [a, b] {
        s.set_status(sn, Status::Flashed, "t").await.unwrap();
        s.set_status(sn, Status::Provisioned, "t").await.unwrap();
        s.set_status(sn, Status::Sold, "t").await.unwrap();
        s.set_status(sn, Status::Active, "t").await.unwrap();
    }
    let templates: Vec<(String, &str)> = s
        .outbox(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.recipient.clone(), m.content.template()))
        .collect();
    assert_eq!(
        templates,
        [
            ("ada@example.com".to_owned(), "welcome"),
            ("ada@example.com".to_owned(), "device_invite")
        ],
        "one welcome, and none for the device nobody was assigned"
    );
    let invite = s.device(a).await.unwrap().invite.unwrap();
    assert_eq!(invite.status, MailStatus::Pending);
    assert!(matches!(
        s.assign(b, "nobody", None, "t").await,
        Err(RegistryError::Invalid(_))
    ));
}

fn push(delivery: &str) -> Push {
    Push {
        delivery: delivery.into(),
        body_sha256: format!("body-of-{delivery}"),
        git_ref: "refs/heads/main".into(),
        commit: "a".repeat(40),
        repository: Some("factory/vesper".into()),
        pusher: Some("ada".into()),
    }
}

async fn a_delivery_runs_once_and_a_finished_run_is_audited(s: &dyn Store) {
    let DeployReceipt::Queued(run) = s.deploy_received(&push("d-1")).await.unwrap() else {
        panic!("a new push is queued");
    };
    assert_eq!(run.state, DeployState::Queued);
    assert_eq!(
        s.deploy_received(&push("d-1")).await.unwrap(),
        DeployReceipt::Duplicate,
        "a redelivery runs nothing again"
    );
    let mut replay = push("d-1-again");
    replay.body_sha256 = push("d-1").body_sha256;
    assert_eq!(
        s.deploy_received(&replay).await.unwrap(),
        DeployReceipt::Replayed,
        "the same signed body under another delivery is a replay"
    );
    s.deploy_started(run.id, "1.log").await.unwrap();
    let done = s
        .deploy_finished(run.id, DeployState::Failed, Some(2), Some("exit status 2"))
        .await
        .unwrap();
    assert_eq!(
        (done.state, done.exit_code, done.log.as_deref()),
        (DeployState::Failed, Some(2), Some("1.log"))
    );
    let audit = s
        .audit(&AuditQuery {
            action: Some("deploy.run".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit[0].after.as_ref().unwrap()["result"], "failed");
    let DeployReceipt::Queued(left) = s.deploy_received(&push("d-2")).await.unwrap() else {
        panic!("a new push is queued");
    };
    let interrupted = s.deploys_interrupted().await.unwrap();
    assert_eq!(
        interrupted.iter().map(|r| r.id).collect::<Vec<_>>(),
        [left.id]
    );
    assert_eq!(
        s.deploy_runs(10).await.unwrap()[0].state,
        DeployState::Failed
    );
}

async fn stats_and_failing_devices_count_what_happened(s: &dyn Store) {
    let (batch, sns) = batch_of(s, 3).await;
    s.flashed(&sns[0], &report("24:0A:C4:00:00:01"), "t")
        .await
        .unwrap();
    s.set_status(&sns[0], Status::Provisioned, "t")
        .await
        .unwrap();
    let failure = |reason: &str| FailureReport {
        station: "bench-1".into(),
        step: "flash".into(),
        reason: reason.into(),
    };
    for reason in ["no sync", "no sync", "timeout"] {
        s.failed(&sns[1], &failure(reason), "t").await.unwrap();
    }
    s.failed(&sns[2], &failure("once"), "t").await.unwrap();
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.total, 3);
    assert_eq!(
        (
            stats.by_status.get(Status::Provisioned),
            stats.by_status.get(Status::Manufactured),
            stats.by_status.get(Status::Revoked)
        ),
        (1, 2, 0)
    );
    assert_eq!(stats.by_board.values().sum::<i64>(), 3);
    assert_eq!(stats.provisioned_today, 1);
    assert_eq!(stats.provisioned_by_hour.len(), 24);
    assert_eq!(stats.recent.len(), 7);
    let failing = s.failing_devices(2, None).await.unwrap();
    assert_eq!(
        failing,
        [(batch.clone(), sns[1].clone(), 3, "timeout".to_owned())]
    );
    assert!(
        s.failing_devices(2, Some("2999-01-01T00:00:00.000Z"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.last_alert(AlertKind::FailedBoards)
            .await
            .unwrap()
            .is_none()
    );
    let alert = MailContent::Alert {
        alert: AlertKind::FailedBoards,
        summary: "boards fail".into(),
        details: vec![],
    };
    s.enqueue_mail("ops@example.com", &alert, "alerts")
        .await
        .unwrap();
    assert!(
        s.last_alert(AlertKind::FailedBoards)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.last_alert(AlertKind::BrokerDisconnected)
            .await
            .unwrap()
            .is_none()
    );
    s.record(
        "ci",
        "firmware.publish",
        Some("bellcore-v2/v1.0.1"),
        &serde_json::json!({"version": "1.0.1"}),
    )
    .await
    .unwrap();
    assert_eq!(actions(s, "bellcore-v2/v1.0.1").await, ["firmware.publish"]);
}

async fn a_list_past_the_count_cap_says_so_and_pages_in_order(s: &dyn Store) {
    let (big, _) = batch_of(s, 10_000).await;
    let (_, one) = batch_of(s, 1).await;
    let all = s.devices(&DeviceFilter::default()).await.unwrap();
    assert_eq!(
        (all.total, all.total_capped),
        (vesper_core::model::COUNT_CAP, true)
    );
    assert_eq!(all.devices[0].serial_number, one[0], "newest first");
    let of_batch = DeviceFilter {
        batch: Some(big),
        ..Default::default()
    };
    let page = s.devices(&of_batch).await.unwrap();
    assert_eq!(
        (page.total, page.total_capped),
        (10_000, false),
        "a whole batch is counted exactly"
    );
    // A text every device has: many matches, read in list order; the count says "more".
    let dense = DeviceFilter {
        text: Some("pv-".into()),
        limit: Some(20),
        ..Default::default()
    };
    let page = s.devices(&dense).await.unwrap();
    assert!(page.total_capped);
    assert_eq!(page.devices.len(), 20);
    assert_eq!(page.devices[0].serial_number, one[0]);
    let mut sorted = page.devices.clone();
    sorted.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(a.serial_number.cmp(&b.serial_number))
    });
    assert_eq!(sorted, page.devices, "newest first, then by serial number");
    // One device's own text: found by the index, counted exactly.
    let sparse = DeviceFilter {
        text: Some(one[0][12..].to_lowercase()),
        ..Default::default()
    };
    let page = s.devices(&sparse).await.unwrap();
    assert_eq!(
        (
            page.total,
            page.total_capped,
            page.devices[0].serial_number.as_str()
        ),
        (1, false, one[0].as_str())
    );
}

/// The broker plugin's control feed reads these: revocations and users changes, in the order
/// they happened, after a cursor; other actions are not in it.
async fn access_changes_are_read_in_order_after_a_cursor(s: &dyn Store) {
    let empty = s.access_changes(None, Duration::ZERO, 100).await.unwrap();
    assert!(empty.entries.is_empty());
    let (_, sns) = batch_of(s, 2).await;
    let start = s.access_changes(None, Duration::ZERO, 100).await.unwrap();
    assert!(start.entries.is_empty(), "without a cursor only the head");
    assert!(
        start.head > empty.head,
        "the batch's audit row moved the head"
    );
    let users = DeviceUsers {
        owner: Some("ana".into()),
        users_list: vec!["bo".into()],
    };
    s.set_users(&sns[0], &users, "admin").await.unwrap();
    s.set_status(&sns[0], Status::Flashed, "station")
        .await
        .unwrap();
    s.set_status(&sns[1], Status::Revoked, "admin")
        .await
        .unwrap();
    let changes = s
        .access_changes(Some(start.head), Duration::ZERO, 100)
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = changes
        .entries
        .iter()
        .map(|e| (e.action.as_str(), e.subject.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        seen,
        [
            ("device.users", sns[0].as_str()),
            ("device.status", sns[0].as_str()),
            ("device.status", sns[1].as_str()),
        ]
    );
    let revoked = &changes.entries[2];
    assert_eq!(revoked.after.as_ref().unwrap()["status"], "revoked");
    assert_eq!(revoked.before.as_ref().unwrap()["status"], "manufactured");
    assert_eq!(changes.head, revoked.id);
    assert!(changes.entries.windows(2).all(|w| w[0].id < w[1].id));
    let page = s
        .access_changes(Some(start.head), Duration::ZERO, 2)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 2, "at most the limit");
    let rest = s
        .access_changes(Some(page.entries[1].id), Duration::ZERO, 100)
        .await
        .unwrap();
    assert_eq!(rest.entries.len(), 1);
    assert_eq!(
        changes.settled, changes.head,
        "with no settle time everything is settled"
    );
    let unsettled = s
        .access_changes(Some(start.head), Duration::from_secs(3600), 100)
        .await
        .unwrap();
    assert_eq!(
        unsettled.settled, start.head,
        "rows of the last hour are not settled"
    );
    assert_eq!(unsettled.entries.len(), 3, "but they are read");
    let none = s
        .access_changes(Some(changes.head), Duration::ZERO, 100)
        .await
        .unwrap();
    assert!(none.entries.is_empty());
}

/// An end-of-line record as a station sends it (OpenHTF's field names, written by hand).
fn test_record(sn: &str, station: &str, start: i64, outcome: &str) -> TestRecord {
    serde_json::from_value(serde_json::json!({
        "dut_id": sn, "station_id": station,
        "start_time_millis": start, "end_time_millis": start + 4100,
        "outcome": outcome, "outcome_details": [], "marginal": false,
        "metadata": { "test_name": "eol", "batch": "B-1", "board": "bellcore-v2", "attempt": 1 },
        "phases": [{ "name": "power", "start_time_millis": start, "end_time_millis": start + 900,
            "outcome": if outcome == "PASS" { "PASS" } else { "FAIL" }, "marginal": false,
            "measurements": { "vbus": { "name": "vbus", "outcome": "PASS", "measured_value": 5.02,
                "units": "V", "validators": ["4.75 <= x <= 5.25"], "marginal": false } } }]
    }))
    .unwrap()
}

async fn a_test_record_sent_twice_is_stored_once(s: &dyn Store) {
    let (_, sns) = batch_of(s, 2).await;
    let sn = &sns[0];
    let first = test_record(sn, "bench-1/2", 1_765_152_000_000, "FAIL");
    let (stored, new) = s.record_test(sn, &first, "tech").await.unwrap();
    assert!(new);
    assert_eq!(stored.record, first);
    // The station retries after a lost answer: the same record, stored once, one audit row.
    let (again, new) = s.record_test(sn, &first, "tech").await.unwrap();
    assert_eq!((again.id, new), (stored.id, false));
    let retest = test_record(sn, "bench-1/2", 1_765_152_060_000, "PASS");
    let (second, new) = s.record_test(sn, &retest, "tech").await.unwrap();
    assert!(new && second.id > stored.id);
    let records: Vec<TestRecord> = s
        .test_records(sn)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.record)
        .collect();
    assert_eq!(records, [first, retest]);
    let tested = actions(s, sn)
        .await
        .iter()
        .filter(|a| *a == "device.tested")
        .count();
    assert_eq!(tested, 2);
    assert!(s.test_records(&sns[1]).await.unwrap().is_empty());
    // The batch's records: both of the first unit's, in order; another batch has none.
    let batch = s.device(sn).await.unwrap().batch_id;
    let ids: Vec<i64> = s
        .batch_test_records(&batch)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [stored.id, second.id]);
    let (other_batch, _) = batch_of(s, 1).await;
    assert!(s.batch_test_records(&other_batch).await.unwrap().is_empty());
    assert!(matches!(
        s.batch_test_records("B-9999").await,
        Err(RegistryError::NoBatch(_))
    ));
    // A record for another unit, or for no unit at all, is refused.
    let other = test_record(&sns[1], "bench-1/2", 1, "PASS");
    assert!(matches!(
        s.record_test(sn, &other, "tech").await,
        Err(RegistryError::Invalid(_))
    ));
    assert!(matches!(
        s.test_records("PV-26A18-BC02R-ZZZZZ").await,
        Err(RegistryError::NoDevice(_))
    ));
}
