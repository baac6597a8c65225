//! The C entry points Mosquitto calls. Each converts C data to Rust, calls [`Checker`], and
//! converts back, inside `catch_unwind`: a panic becomes a denial, never an unwind into C.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::checker::{Checker, Command, Outcome};
use crate::ffi::*;
use crate::options::Options;

/// What the plugin keeps between calls; its pointer is the callbacks' `userdata`.
struct State {
    id: *mut mosquitto_plugin_id_t,
    checker: Checker,
}

fn log(level: c_int, message: &str) {
    let text =
        CString::new(format!("vesper-auth: {message}").replace('\0', " ")).unwrap_or_default();
    // SAFETY: a constant format string with one %s and a NUL-terminated argument.
    unsafe { mosquitto_log_printf(level, c"%s".as_ptr(), text.as_ptr()) };
}

/// A C string as UTF-8; `Err` for invalid UTF-8 (always denied), `Ok(None)` for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the returned reference.
unsafe fn text<'a>(p: *const c_char) -> Result<Option<&'a str>, ()> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller guarantees a valid C string.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map(Some)
        .map_err(|_| ())
}

/// Runs a callback body, turning a panic into `on_panic`.
fn guarded(on_panic: c_int, body: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        log(MOSQ_LOG_ERR, "internal error (panic caught); denying");
        on_panic
    })
}

/// The control topic the backend's service account publishes kick/forget commands on.
const CONTROL_TOPIC: &CStr = c"$CONTROL/vesper/v1";

fn no_event_data() -> *const c_void {
    std::ptr::null()
}

fn control_topic() -> *const c_void {
    CONTROL_TOPIC.as_ptr().cast()
}

/// Gives the event data a callback is registered with.
type EventData = fn() -> *const c_void;

/// The events the plugin handles: (event, callback, its event data).
const EVENTS: [(c_int, GenericCallback, EventData); 6] = [
    (MOSQ_EVT_BASIC_AUTH, on_basic_auth, no_event_data),
    (MOSQ_EVT_ACL_CHECK, on_acl_check, no_event_data),
    (MOSQ_EVT_EXT_AUTH_START, on_extended_auth, no_event_data),
    (MOSQ_EVT_EXT_AUTH_CONTINUE, on_extended_auth, no_event_data),
    (MOSQ_EVT_CONTROL, on_control, control_topic),
    (MOSQ_EVT_TICK, on_tick, no_event_data),
];

#[unsafe(no_mangle)]
pub extern "C" fn mosquitto_plugin_version(count: c_int, versions: *const c_int) -> c_int {
    guarded(-1, || {
        if versions.is_null() || count <= 0 {
            return -1;
        }
        // SAFETY: mosquitto passes `count` integers.
        let supported = unsafe { std::slice::from_raw_parts(versions, count as usize) };
        if supported.contains(&MOSQ_PLUGIN_VERSION) {
            MOSQ_PLUGIN_VERSION
        } else {
            -1
        }
    })
}

/// # Safety
/// Called by mosquitto with its plugin id, a place for our userdata and `count` options.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_init(
    id: *mut mosquitto_plugin_id_t,
    userdata: *mut *mut c_void,
    options: *mut mosquitto_opt,
    count: c_int,
) -> c_int {
    guarded(MOSQ_ERR_UNKNOWN, || {
        let mut pairs = Vec::new();
        if !options.is_null() && count > 0 {
            // SAFETY: mosquitto passes `count` options.
            for opt in unsafe { std::slice::from_raw_parts(options, count as usize) } {
                // SAFETY: option keys and values are NUL-terminated strings owned by mosquitto.
                match unsafe { (text(opt.key), text(opt.value)) } {
                    (Ok(Some(k)), Ok(Some(v))) => pairs.push((k, v)),
                    _ => {
                        log(MOSQ_LOG_ERR, "an option is not UTF-8");
                        return MOSQ_ERR_INVAL;
                    }
                }
            }
        }
        let options = match Options::parse(pairs) {
            Ok(o) => o,
            Err(e) => {
                log(MOSQ_LOG_ERR, &format!("bad configuration: {e}"));
                return MOSQ_ERR_INVAL;
            }
        };
        log(
            MOSQ_LOG_INFO,
            &format!(
                "backend http://{}:{} ({}, {} params, {} answers), auth cache {}s, acl cache {}s, at most {} answers cached, {} login workers (wait {} ms), control feed {}",
                options.host,
                options.port,
                options.getuser_uri,
                if options.params_mode == vesper_core::goauth::ParamsMode::Form {
                    "form"
                } else {
                    "json"
                },
                options.response_mode,
                options.auth_cache.as_secs(),
                options.acl_cache.as_secs(),
                options.cache_size,
                options.logins.workers,
                options.logins.wait.as_millis(),
                options.control.as_ref().map_or("off", |c| c.uri.as_str()),
            ),
        );
        let state = Box::into_raw(Box::new(State {
            id,
            checker: Checker::new(options),
        }));
        for (event, callback, event_data) in EVENTS {
            // SAFETY: registering with our own id and a pointer that lives until cleanup; the
            // control event's data is its topic, a static C string.
            let rc = unsafe {
                mosquitto_callback_register(id, event, callback, event_data(), state.cast())
            };
            if rc != MOSQ_ERR_SUCCESS {
                log(
                    MOSQ_LOG_ERR,
                    &format!("cannot register for event {event} (error {rc})"),
                );
                return rc;
            }
        }
        if !userdata.is_null() {
            // SAFETY: mosquitto gives us a place to store our userdata.
            unsafe { *userdata = state.cast() };
        }
        MOSQ_ERR_SUCCESS
    })
}

/// # Safety
/// Called once by mosquitto with the userdata set in `mosquitto_plugin_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mosquitto_plugin_cleanup(
    userdata: *mut c_void,
    _options: *mut mosquitto_opt,
    _count: c_int,
) -> c_int {
    guarded(MOSQ_ERR_SUCCESS, || {
        if userdata.is_null() {
            return MOSQ_ERR_SUCCESS;
        }
        // SAFETY: the pointer came from Box::into_raw in init and is released only here.
        let state = unsafe { Box::from_raw(userdata.cast::<State>()) };
        for (event, callback, event_data) in EVENTS {
            // SAFETY: unregistering what init registered with the same id.
            unsafe { mosquitto_callback_unregister(state.id, event, callback, event_data()) };
        }
        MOSQ_ERR_SUCCESS
    })
}

fn report(check: &str, who: &str, outcome: Outcome, detail: Option<String>) {
    match outcome {
        Outcome::Allow => {}
        Outcome::Deny => log(
            MOSQ_LOG_INFO,
            &format!(
                "{check} denied for `{who}`{}",
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            ),
        ),
        Outcome::Error => log(
            MOSQ_LOG_ERR,
            &format!(
                "{check} for `{who}` failed, backend unavailable: {}",
                detail.unwrap_or_default()
            ),
        ),
    }
}

unsafe extern "C" fn on_basic_auth(
    _event: c_int,
    data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guarded(MOSQ_ERR_AUTH, || {
        if data.is_null() || userdata.is_null() {
            return MOSQ_ERR_AUTH;
        }
        // SAFETY: mosquitto passes its basic-auth event and our userdata.
        let (event, state) = unsafe {
            (
                &*data.cast::<mosquitto_evt_basic_auth>(),
                &*userdata.cast::<State>(),
            )
        };
        // SAFETY: username and password are NULL or C strings; the client is valid for the call.
        let (username, password, client_id) = unsafe {
            (
                text(event.username),
                text(event.password),
                text(mosquitto_client_id(event.client)),
            )
        };
        let (Ok(username), Ok(password), Ok(client_id)) = (username, password, client_id) else {
            log(MOSQ_LOG_INFO, "login denied: credentials are not UTF-8");
            return MOSQ_ERR_AUTH;
        };
        let (outcome, detail) = state.checker.login(username, password, client_id);
        report("login", username.unwrap_or("(anonymous)"), outcome, detail);
        match outcome {
            Outcome::Allow => MOSQ_ERR_SUCCESS,
            Outcome::Deny => MOSQ_ERR_AUTH,
            Outcome::Error => MOSQ_ERR_UNKNOWN,
        }
    })
}

unsafe extern "C" fn on_acl_check(
    _event: c_int,
    data: *mut c_void,
    userdata: *mut c_void,
) -> c_int {
    guarded(MOSQ_ERR_ACL_DENIED, || {
        if data.is_null() || userdata.is_null() {
            return MOSQ_ERR_ACL_DENIED;
        }
        // SAFETY: mosquitto passes its ACL event and our userdata.
        let (event, state) = unsafe {
            (
                &*data.cast::<mosquitto_evt_acl_check>(),
                &*userdata.cast::<State>(),
            )
        };
        // SAFETY: the client is valid for the call; the topic is a C string.
        let (username, client_id, topic) = unsafe {
            (
                text(mosquitto_client_username(event.client)),
                text(mosquitto_client_id(event.client)),
                text(event.topic),
            )
        };
        let (Ok(username), Ok(client_id), Ok(Some(topic))) = (username, client_id, topic) else {
            return MOSQ_ERR_ACL_DENIED;
        };
        if event.access == MOSQ_ACL_UNSUBSCRIBE {
            return MOSQ_ERR_SUCCESS;
        }
        let (outcome, detail) = state.checker.acl(username, client_id, topic, event.access);
        if outcome != Outcome::Allow {
            report(
                &format!("acl {} on `{topic}`", event.access),
                username.unwrap_or("(anonymous)"),
                outcome,
                detail,
            );
        }
        match outcome {
            Outcome::Allow => MOSQ_ERR_SUCCESS,
            Outcome::Deny => MOSQ_ERR_ACL_DENIED,
            Outcome::Error => MOSQ_ERR_UNKNOWN,
        }
    })
}

/// MQTT 5 extended authentication would skip the password check entirely: always refused.
unsafe extern "C" fn on_extended_auth(
    _event: c_int,
    _data: *mut c_void,
    _userdata: *mut c_void,
) -> c_int {
    guarded(MOSQ_ERR_AUTH, || {
        log(
            MOSQ_LOG_NOTICE,
            "MQTT 5 extended authentication refused: log in with a username and password",
        );
        MOSQ_ERR_AUTH
    })
}

/// Disconnects the usernames the control feed kicked (mosquitto's kick functions may only be
/// called on its own thread; the feed is read on another).
unsafe extern "C" fn on_tick(_event: c_int, _data: *mut c_void, userdata: *mut c_void) -> c_int {
    guarded(MOSQ_ERR_SUCCESS, || {
        if userdata.is_null() {
            return MOSQ_ERR_SUCCESS;
        }
        // SAFETY: our userdata, set in init.
        let state = unsafe { &*userdata.cast::<State>() };
        for username in state.checker.take_kicks() {
            kick(&username);
            log(
                MOSQ_LOG_NOTICE,
                &format!("kicked `{username}` (control feed)"),
            );
        }
        MOSQ_ERR_SUCCESS
    })
}

/// Disconnects every client of `username`, sending their wills so subscribers see them go.
fn kick(username: &str) {
    if let Ok(name) = CString::new(username) {
        // SAFETY: a NUL-terminated username, valid for the call, on mosquitto's thread.
        unsafe { mosquitto_kick_client_by_username(name.as_ptr(), true) };
    }
}

/// A message on `$CONTROL/vesper/v1`. The broker has already asked the ACL whether this client
/// may publish there (only the backend's service account may), so the command is carried out:
/// cached answers about the username are dropped, and for `kick` its clients are disconnected.
unsafe extern "C" fn on_control(_event: c_int, data: *mut c_void, userdata: *mut c_void) -> c_int {
    guarded(MOSQ_ERR_SUCCESS, || {
        if data.is_null() || userdata.is_null() {
            return MOSQ_ERR_SUCCESS;
        }
        // SAFETY: mosquitto passes its control event and our userdata.
        let (event, state) = unsafe {
            (
                &*data.cast::<mosquitto_evt_control>(),
                &*userdata.cast::<State>(),
            )
        };
        let payload = if event.payload.is_null() {
            &[][..]
        } else {
            // SAFETY: the payload holds payloadlen bytes for the duration of the call.
            unsafe {
                std::slice::from_raw_parts(event.payload.cast::<u8>(), event.payloadlen as usize)
            }
        };
        let Some(command) = Command::parse(payload) else {
            log(MOSQ_LOG_NOTICE, "ignored a malformed control command");
            return MOSQ_ERR_SUCCESS;
        };
        let forgotten = state.checker.forget(command.username());
        if let Command::Kick(username) = &command {
            kick(username);
        }
        let done = match command {
            Command::Kick(_) => "kicked",
            Command::Forget(_) => "forgot",
        };
        log(
            MOSQ_LOG_NOTICE,
            &format!(
                "{done} `{}`: {forgotten} cached answers dropped",
                command.username()
            ),
        );
        MOSQ_ERR_SUCCESS
    })
}
