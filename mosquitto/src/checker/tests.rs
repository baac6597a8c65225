//! The checker against a small HTTP backend on loopback (the real ureq client, real sockets).

use super::*;
use crate::options::DEFAULT_CACHE_SIZE;

fn checker_without_backend() -> Checker {
    // Port 9 (discard) on loopback: nothing listens, every question is an error.
    Checker::new(
        Options::parse([
            ("http_host", "127.0.0.1"),
            ("http_port", "9"),
            ("http_timeout", "1"),
        ])
        .unwrap(),
    )
}

#[test]
fn bad_clients_are_denied_without_asking() {
    // Any question that reached the (absent) backend would be an error, not a denial.
    let c = checker_without_backend();
    let long = "x".repeat(MAX_FIELD + 1);
    for (u, p, id) in [
        (None, Some("p"), Some("c")),
        (Some("u"), None, Some("u")),
        (Some(""), Some("p"), None),
        (Some("u"), Some(""), Some("u")),
        (Some("u+"), Some("p"), Some("u+")),
        (Some("u"), Some("p"), Some("u-#")),
        (Some("u"), Some(long.as_str()), Some("u")),
        (Some(long.as_str()), Some("p"), Some(long.as_str())),
        // client ids that are not the username's own
        (Some("u"), Some("p"), None),
        (Some("u"), Some("p"), Some("")),
        (Some("u"), Some("p"), Some("c")),
        (Some("u"), Some("p"), Some("PV-26A18-BC02R-X7KQA")),
        (Some("u"), Some("p"), Some("u-a/b")),
        (
            Some("u"),
            Some("p"),
            Some(&*format!("u-{}", "x".repeat(41))),
        ),
    ] {
        assert_eq!(c.login(u, p, id).0, Outcome::Deny, "{u:?} {p:?} {id:?}");
    }
    assert_eq!(c.acl(None, Some("c"), "t", 2).0, Outcome::Deny);
    assert_eq!(c.acl(Some("u"), Some("u"), &long, 2).0, Outcome::Deny);
    assert_eq!(
        c.acl(Some("u"), None, "t", 8).0,
        Outcome::Allow,
        "unsubscribe is never refused"
    );
    assert_eq!(c.cached_answers(), 0);
}

#[test]
fn a_backend_that_is_down_is_an_error_and_is_not_cached() {
    let c = checker_without_backend();
    assert_eq!(c.login(Some("u"), Some("p"), Some("u")).0, Outcome::Error);
    assert_eq!(c.acl(Some("u"), Some("u"), "t", 2).0, Outcome::Error);
    assert_eq!(c.cached_answers(), 0);
}

#[test]
fn local_rules_decide_topics_and_the_registry_still_decides_a_device_every_few_seconds() {
    use std::sync::atomic::Ordering::SeqCst;
    let backend = FakeBackend::start(200, Duration::ZERO);
    let c = backend.checker(&[("local_acl", "true"), ("service_account", "svc")]);
    let a = "PV-26A18-BC02R-X7KQA";
    let b = "PV-26L31-BP01R-ZZ234";
    let own = format!("vesper/{a}/data");
    assert_eq!(c.acl(Some(a), Some(a), &own, 2).0, Outcome::Allow);
    assert_eq!(
        c.acl(Some(a), Some(a), &format!("vesper/{b}/data"), 2).0,
        Outcome::Deny
    );
    assert_eq!(
        c.acl(Some(a), Some(a), &format!("vesper/{a}/control"), 4).0,
        Outcome::Allow
    );
    assert_eq!(c.acl(Some(a), Some(a), "vesper/+/data", 4).0, Outcome::Deny);
    // The topics were decided here; the device's standing was asked once, then cached.
    assert_eq!(backend.asked.load(SeqCst), 1);
    assert_eq!(c.acl(Some("svc"), Some("svc"), &own, 1).0, Outcome::Allow);
    assert_eq!(
        c.acl(Some("svc"), Some("svc"), "$CONTROL/vesper/v1", 2).0,
        Outcome::Allow
    );
    assert_eq!(
        c.acl(Some("svc"), Some("svc"), &format!("vesper/{a}/control"), 2)
            .0,
        Outcome::Deny
    );
    assert_eq!(
        backend.asked.load(SeqCst),
        1,
        "the service account is not a device"
    );
    // Users depend on the registry: asked.
    assert_eq!(
        c.acl(Some("uid-1"), Some("uid-1"), &own, 4).0,
        Outcome::Allow
    );
    assert_eq!(backend.asked.load(SeqCst), 2);
    // A kick or forget drops the device's standing: asked again at its next message.
    c.forget(a);
    assert_eq!(c.acl(Some(a), Some(a), &own, 2).0, Outcome::Allow);
    assert_eq!(backend.asked.load(SeqCst), 3);

    // The registry says no (revoked): the device's own topics are refused, whatever the
    // local rules allow (issue 25, finding 1: the kick may never have arrived).
    let revoked = FakeBackend::start(403, Duration::ZERO);
    let c = revoked.checker(&[("local_acl", "true"), ("service_account", "svc")]);
    let (outcome, why) = c.acl(Some(a), Some(a), &own, 2);
    assert_eq!(outcome, Outcome::Deny);
    assert!(why.unwrap().contains("no longer allowed"));
    assert_eq!(c.acl(Some("svc"), Some("svc"), &own, 1).0, Outcome::Allow);
    // The answer is trusted a few seconds at most.
    for (seconds, ok) in [("5", true), ("6", false)] {
        let parsed = Options::parse([
            ("http_host", "h"),
            ("http_port", "1"),
            ("local_acl", "true"),
            ("status_cache_seconds", seconds),
        ]);
        assert_eq!(parsed.is_ok(), ok, "{seconds}");
    }
    // Templates are options, checked like the backend's.
    let seed = Options::parse([
        ("http_host", "h"),
        ("http_port", "1"),
        ("local_acl", "true"),
        ("topic_data", "/vesper/{sn}/data"),
    ])
    .unwrap();
    assert_eq!(
        seed.local_acl.unwrap().topics.data.to_string(),
        "/vesper/{sn}/data"
    );
    for bad in [("topic_data", "vesper/data"), ("local_acl", "yes")] {
        assert!(
            Options::parse([
                ("http_host", "h"),
                ("http_port", "1"),
                ("local_acl", "true"),
                bad
            ])
            .is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn control_commands() {
    assert_eq!(
        Command::parse(br#"{"command":"kick","username":"PV-26A18-BC02R-X7KQA"}"#),
        Some(Command::Kick("PV-26A18-BC02R-X7KQA".into()))
    );
    assert_eq!(
        Command::parse(br#"{"command":"forget","username":"uid-1"}"#),
        Some(Command::Forget("uid-1".into()))
    );
    for bad in [
        &br#"{"command":"reboot","username":"u"}"#[..],
        br#"{"command":"kick","username":""}"#,
        br#"{"command":"kick","username":"a+b"}"#,
        br#"{"command":"kick"}"#,
        b"kick u",
        b"",
    ] {
        assert_eq!(Command::parse(bad), None, "{bad:?}");
    }
    let huge = format!(
        r#"{{"command":"kick","username":"{}"}}"#,
        "u".repeat(4 * MAX_FIELD)
    );
    assert_eq!(Command::parse(huge.as_bytes()), None);
}

/// A tiny HTTP/1.1 backend on loopback (keep-alive) that answers every question (POST) with
/// `status` after `delay` and counts them, and answers reads of the control feed
/// (`GET /mqtt/control`) with the pages queued in `feed` (an empty page at the last cursor
/// when none is queued; a page `"down"` answers 503). Written from go-auth's protocol and the
/// feed's documented answer, not from the plugin's code.
struct FakeBackend {
    port: u16,
    asked: Arc<std::sync::atomic::AtomicUsize>,
    feed: Arc<Mutex<std::collections::VecDeque<String>>>,
}

impl FakeBackend {
    fn start(status: u16, delay: Duration) -> FakeBackend {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let feed = Arc::new(Mutex::new(std::collections::VecDeque::<String>::new()));
        let (counter, pages) = (asked.clone(), feed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (counter, pages) = (counter.clone(), pages.clone());
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut last_page = r#"{"next":0}"#.to_owned();
                    loop {
                        let mut length = 0usize;
                        let mut line = String::new();
                        let mut request_line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if request_line.is_empty() {
                                request_line = line.clone();
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(v) = lower.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let answer = if request_line.starts_with("GET /mqtt/control") {
                            let page = lock(&pages).pop_front();
                            match page.as_deref() {
                                Some("down") => {
                                    "HTTP/1.1 503 X\r\ncontent-length: 0\r\n\r\n".to_owned()
                                }
                                _ => {
                                    if let Some(page) = page {
                                        // Later reads stand at this page's cursor.
                                        let next: serde_json::Value =
                                            serde_json::from_str(&page).unwrap();
                                        last_page = format!(r#"{{"next":{}}}"#, next["next"]);
                                        format!(
                                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{page}",
                                            page.len()
                                        )
                                    } else {
                                        format!(
                                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{last_page}",
                                            last_page.len()
                                        )
                                    }
                                }
                            }
                        } else {
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(delay);
                            format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n")
                        };
                        if writer.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeBackend { port, asked, feed }
    }

    /// A checker asking this backend; the control feed is off unless `extra` names it.
    fn checker(&self, extra: &[(&str, &str)]) -> Checker {
        let port = self.port.to_string();
        let mut options = vec![
            ("http_host", "127.0.0.1"),
            ("http_port", port.as_str()),
            ("http_control_uri", ""),
        ];
        options.extend_from_slice(extra);
        Checker::new(Options::parse(options).unwrap())
    }

    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn queue_page(&self, page: &str) {
        lock(&self.feed).push_back(page.to_owned());
    }
}

#[test]
fn a_flood_of_distinct_bad_logins_leaves_the_cache_at_its_budget() {
    let backend = FakeBackend::start(403, Duration::ZERO);
    let c = Arc::new(backend.checker(&[("cache_size", "1000"), ("login_wait_ms", "2000")]));
    assert_eq!(c.options().cache_size.get(), 1000);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    let user = format!("user-{t}-{i}");
                    assert_eq!(
                        c.login(Some(&user), Some("wrong"), Some(&user)).0,
                        Outcome::Deny
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(backend.asked(), 4000);
    assert_eq!(c.cached_answers(), 1000, "the cache stays at its budget");
    // The newest answers are the ones kept.
    assert_eq!(
        c.login(Some("user-0-999"), Some("wrong"), Some("user-0-999"))
            .0,
        Outcome::Deny
    );
    assert!(backend.asked() <= 4001);
}

#[test]
fn the_default_budget_holds_under_200000_distinct_bad_logins() {
    let backend = FakeBackend::start(403, Duration::ZERO);
    let c = Arc::new(backend.checker(&[("login_wait_ms", "2000")]));
    assert_eq!(c.options().cache_size.get(), DEFAULT_CACHE_SIZE);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..50_000 {
                    let user = format!("flood-{t}-{i}");
                    c.login(Some(&user), Some("wrong"), Some(&user));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(backend.asked(), 200_000);
    assert_eq!(c.cached_answers(), DEFAULT_CACHE_SIZE);
}

/// Issue 25, finding 11: a login never holds mosquitto's thread for the backend's answer
/// longer than `login_wait_ms`, and not at all while an older question is still unanswered;
/// the answer, when it comes, is cached for the client's retry. A question asked on the
/// thread (a topic check) holds it at most the budget (default 2 s, even with a longer
/// `http_timeout`).
#[test]
fn a_slow_backend_holds_the_broker_briefly_and_answers_the_retry() {
    let backend = FakeBackend::start(200, Duration::from_millis(600));
    let c = backend.checker(&[("login_wait_ms", "100")]);
    let started = Instant::now();
    let (outcome, why) = c.login(Some("dev"), Some("pw"), Some("dev"));
    let held = started.elapsed();
    assert_eq!(outcome, Outcome::Error);
    assert!(why.unwrap().contains("kept for the client's retry"));
    assert!(
        held >= Duration::from_millis(100) && held < Duration::from_millis(400),
        "{held:?}"
    );
    // A second, different login while the first is older than the wait: not waited for.
    let started = Instant::now();
    assert_eq!(
        c.login(Some("other"), Some("pw"), Some("other")).0,
        Outcome::Error
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    // The retry, once the backend has answered: from the cache, not asked again.
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        c.login(Some("dev"), Some("pw"), Some("dev")).0,
        Outcome::Allow
    );
    assert_eq!(backend.asked(), 2);

    let slower = FakeBackend::start(200, Duration::from_secs(4));
    let c = slower.checker(&[("http_timeout", "10")]);
    assert_eq!(c.options().budget, Duration::from_secs(2));
    let started = Instant::now();
    assert_eq!(
        c.acl(Some("uid-1"), Some("uid-1"), "t/1", 2).0,
        Outcome::Error
    );
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(1900) && held < Duration::from_millis(2900),
        "{held:?}"
    );
    assert_eq!(c.cached_answers(), 0);
    for bad in [
        [("budget_seconds", "0"), ("login_wait_ms", "0")],
        [("budget_seconds", "1"), ("login_wait_ms", "1001")],
        [("login_workers", "0"), ("login_wait_ms", "10")],
        [("login_queue", "0"), ("login_wait_ms", "10")],
    ] {
        let mut options = vec![("http_host", "h"), ("http_port", "1")];
        options.extend_from_slice(&bad);
        assert!(Options::parse(options).is_err(), "{bad:?}");
    }
}

/// A flood of logins against a backend that answers in 2 s: past the first, none holds the
/// thread, and past the queue none is even asked.
#[test]
fn a_login_flood_against_a_slow_backend_does_not_hold_the_broker() {
    let backend = FakeBackend::start(403, Duration::from_secs(2));
    let c = backend.checker(&[("login_queue", "100")]);
    let started = Instant::now();
    let mut refused_unasked = 0;
    for i in 0..1000 {
        let user = format!("flood-{i}");
        let (outcome, why) = c.login(Some(&user), Some("wrong"), Some(&user));
        assert_eq!(outcome, Outcome::Error);
        if why.unwrap().contains("refused unasked") {
            refused_unasked += 1;
        }
    }
    let held = started.elapsed();
    assert!(
        held < Duration::from_millis(300),
        "1,000 logins held the thread {held:?}"
    );
    assert!(refused_unasked >= 800, "{refused_unasked}");
}

#[test]
fn a_stampede_of_identical_questions_is_asked_once() {
    let backend = FakeBackend::start(200, Duration::from_millis(300));
    let c = Arc::new(backend.checker(&[("login_wait_ms", "2000")]));
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (c, barrier) = (c.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.login(Some("dev"), Some("secret"), Some("dev")).0
            })
        })
        .collect();
    let outcomes: Vec<Outcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(outcomes.contains(&Outcome::Allow), "{outcomes:?}");
    assert_eq!(backend.asked(), 1, "one question reached the backend");
}

#[test]
fn forgetting_a_username_drops_only_its_answers() {
    let backend = FakeBackend::start(200, Duration::ZERO);
    let c = backend.checker(&[]);
    for user in ["a", "b"] {
        assert_eq!(c.login(Some(user), Some("p"), Some(user)).0, Outcome::Allow);
        assert_eq!(c.acl(Some(user), Some(user), "t/1", 2).0, Outcome::Allow);
    }
    assert_eq!((c.cached_answers(), backend.asked()), (4, 4));
    assert_eq!(c.forget("a"), 2);
    assert_eq!(c.cached_answers(), 2);
    c.login(Some("a"), Some("p"), Some("a"));
    c.login(Some("b"), Some("p"), Some("b"));
    assert_eq!(backend.asked(), 5, "a is asked again, b still cached");
}

/// Waits until `done` holds, at most 5 s.
fn eventually(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "not within 5 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Issue 25, finding 1: the control feed is the durable path for kicks. While it is fresh, a
/// device's topic checks need no question; a kick read from it refuses the device at once and
/// is handed to mosquitto's thread; a feed that started over, or went stale, sends every device
/// back to its own question.
#[test]
fn the_control_feed_confirms_devices_and_carries_kicks() {
    let backend = FakeBackend::start(200, Duration::ZERO);
    let c = backend.checker(&[
        ("local_acl", "true"),
        ("http_control_uri", "/mqtt/control"),
        ("control_poll_ms", "50"),
        ("control_trust_seconds", "1"),
        ("status_cache_seconds", "1"),
    ]);
    let (a, b) = ("PV-26A18-BC02R-X7KQA", "PV-26L31-BP01R-ZZ234");
    let data = |sn: &str| format!("vesper/{sn}/data");
    backend.queue_page(r#"{"next":4,"commands":[]}"#);
    eventually(|| backend.feed.lock().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(100));
    for sn in [a, b] {
        assert_eq!(c.acl(Some(sn), Some(sn), &data(sn), 2).0, Outcome::Allow);
    }
    assert_eq!(
        backend.asked(),
        0,
        "the fresh feed answered for both devices"
    );

    let kick = r#"{"next":4,"commands":[{"seq":5,"command":"kick","username":"PV-26A18-BC02R-X7KQA"},
            {"seq":6,"command":"reboot","username":"PV-26L31-BP01R-ZZ234"}]}"#;
    // Sent again until settled: carried out once.
    backend.queue_page(kick);
    backend.queue_page(kick);
    backend.queue_page(&kick.replace(r#""next":4"#, r#""next":6"#));
    eventually(|| c.acl(Some(a), Some(a), &data(a), 2).0 == Outcome::Deny);
    let (_, why) = c.acl(Some(a), Some(a), &data(a), 2);
    assert!(why.unwrap().contains("no longer allowed"));
    eventually(|| backend.feed.lock().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.take_kicks(), [a.to_owned()]);
    assert!(c.take_kicks().is_empty(), "each kick is handed over once");
    assert_eq!(
        c.acl(Some(b), Some(b), &data(b), 2).0,
        Outcome::Allow,
        "an unknown command is ignored"
    );
    assert_eq!(backend.asked(), 0);

    // The feed started over: each device is confirmed by the backend once, then by the feed.
    backend.queue_page(r#"{"next":90,"reset":true}"#);
    eventually(|| backend.feed.lock().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.acl(Some(b), Some(b), &data(b), 2).0, Outcome::Allow);
    assert_eq!(backend.asked(), 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.acl(Some(b), Some(b), &data(b), 2).0, Outcome::Allow);
    assert_eq!(
        backend.asked(),
        1,
        "vetted since the reset: the feed answers again"
    );

    // The feed goes down: past control_trust_seconds each device is asked on its own.
    for _ in 0..100 {
        backend.queue_page("down");
    }
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(c.acl(Some(b), Some(b), &data(b), 2).0, Outcome::Allow);
    assert_eq!(backend.asked(), 2);
}
