//! Vesper Station: the manufacturing workstation and sync backend for ESP32-based devices.
//!
//! The library holds every capability; the `vesper` binary only parses arguments and prints.
//! Modules by domain:
//! - [`serial`]: serial numbers `PV-YYMDD-BBTTR-XXXXX`;
//! - [`credentials`]: per-device MQTT passwords derived from the master secret;
//! - [`acl`]: MQTT topic templates and who may publish or subscribe where;
//! - [`clientid`]: which MQTT client ids a login may use;
//! - [`nvs`]: NVS partition images, byte-identical to Espressif's generator;
//! - [`partitions`]: ESP-IDF partition tables;
//! - [`config`]: the configuration file.

pub mod acl;
pub mod broker;
pub mod client;
pub mod clientid;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod files;
pub mod firmware;
pub mod flashing;
pub mod goauth;
pub mod labels;
pub mod nvs;
pub mod partitions;
pub mod registry;
pub mod serial;
pub mod server;
pub mod sim;
pub mod station;
pub mod users;
