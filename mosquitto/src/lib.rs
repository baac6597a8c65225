//! A Mosquitto 2 auth plugin (plugin API v5) that forwards logins and ACL checks to an HTTP
//! backend in mosquitto-go-auth's protocol: the same options (written `plugin_opt_http_host`
//! etc.), the same requests (json or form params), the same reading of answers (status, json or
//! text mode; 2xx allow, other 4xx deny, 5xx or timeout error), and a cache of grants and
//! denials (`auth_cache_seconds`, `acl_cache_seconds`; errors never cached).
//!
//! It denies what go-auth setups are often caught out by: MQTT 5 extended authentication
//! (which would skip the password check), anonymous clients, empty passwords, and usernames or
//! client ids with `+` or `#`. No panic crosses into the broker, and a backend that is down is
//! an error (the login is refused), never a crash.
//!
//! It depends on `vesper-core` only (the ACL rules, client-id rules, serial numbers and the
//! go-auth protocol it shares with the backend), never on the backend, its database or the
//! station: the broker loads a small library.
//!
//! ```text
//! plugin /usr/lib/vesper/libvesper_mosquitto.so
//! plugin_opt_http_host 127.0.0.1
//! plugin_opt_http_port 8081
//! ```

mod cache;
pub mod checker;
pub mod feed;
mod logins;
pub mod options;

// The C entry points, for the broker to load (off for builds that only use the parsers, such
// as the fuzz targets: they would need mosquitto's symbols to link).
#[cfg(all(not(test), feature = "plugin"))]
mod ffi;
#[cfg(all(not(test), feature = "plugin"))]
mod plugin;
