//! The part of Mosquitto 2.0's plugin interface (`mosquitto_broker.h`, `mosquitto_plugin.h`,
//! `mosquitto.h`) this plugin uses, written by hand: a few structs, functions and constants.
//! Layouts follow the headers of Debian's `mosquitto-dev` 2.0.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

/// Opaque client handle.
#[repr(C)]
pub struct mosquitto {
    _private: [u8; 0],
}

/// Opaque plugin identifier.
#[repr(C)]
pub struct mosquitto_plugin_id_t {
    _private: [u8; 0],
}

#[repr(C)]
pub struct mosquitto_opt {
    pub key: *mut c_char,
    pub value: *mut c_char,
}

#[repr(C)]
pub struct mosquitto_evt_basic_auth {
    pub future: *mut c_void,
    pub client: *mut mosquitto,
    pub username: *mut c_char,
    pub password: *mut c_char,
    pub future2: [*mut c_void; 4],
}

#[repr(C)]
pub struct mosquitto_evt_acl_check {
    pub future: *mut c_void,
    pub client: *mut mosquitto,
    pub topic: *const c_char,
    pub payload: *const c_void,
    pub properties: *mut c_void,
    pub access: c_int,
    pub payloadlen: u32,
    pub qos: u8,
    pub retain: bool,
    pub future2: [*mut c_void; 4],
}

#[repr(C)]
pub struct mosquitto_evt_control {
    pub future: *mut c_void,
    pub client: *mut mosquitto,
    pub topic: *const c_char,
    pub payload: *const c_void,
    pub properties: *const c_void,
    pub reason_string: *mut c_char,
    pub payloadlen: u32,
    pub qos: u8,
    pub reason_code: u8,
    pub retain: bool,
    pub future2: [*mut c_void; 4],
}

pub type GenericCallback =
    unsafe extern "C" fn(event: c_int, event_data: *mut c_void, userdata: *mut c_void) -> c_int;

pub const MOSQ_PLUGIN_VERSION: c_int = 5;

pub const MOSQ_EVT_ACL_CHECK: c_int = 2;
pub const MOSQ_EVT_BASIC_AUTH: c_int = 3;
pub const MOSQ_EVT_EXT_AUTH_START: c_int = 4;
pub const MOSQ_EVT_EXT_AUTH_CONTINUE: c_int = 5;
pub const MOSQ_EVT_CONTROL: c_int = 6;
pub const MOSQ_EVT_TICK: c_int = 9;

pub const MOSQ_ERR_SUCCESS: c_int = 0;
pub const MOSQ_ERR_INVAL: c_int = 3;
pub const MOSQ_ERR_AUTH: c_int = 11;
pub const MOSQ_ERR_ACL_DENIED: c_int = 12;
pub const MOSQ_ERR_UNKNOWN: c_int = 13;

pub const MOSQ_ACL_UNSUBSCRIBE: c_int = 0x08;

pub const MOSQ_LOG_INFO: c_int = 0x01;
pub const MOSQ_LOG_NOTICE: c_int = 0x02;
pub const MOSQ_LOG_ERR: c_int = 0x08;

unsafe extern "C" {
    pub fn mosquitto_callback_register(
        identifier: *mut mosquitto_plugin_id_t,
        event: c_int,
        cb: GenericCallback,
        event_data: *const c_void,
        userdata: *mut c_void,
    ) -> c_int;
    pub fn mosquitto_callback_unregister(
        identifier: *mut mosquitto_plugin_id_t,
        event: c_int,
        cb: GenericCallback,
        event_data: *const c_void,
    ) -> c_int;
    pub fn mosquitto_client_id(client: *const mosquitto) -> *const c_char;
    pub fn mosquitto_client_username(client: *const mosquitto) -> *const c_char;
    pub fn mosquitto_log_printf(level: c_int, fmt: *const c_char, ...);
    pub fn mosquitto_kick_client_by_username(username: *const c_char, with_will: bool) -> c_int;
}
