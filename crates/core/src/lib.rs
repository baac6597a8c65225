//! Vesper's core: the domain model and the exact contracts, with no I/O.
//!
//! Everything here is a pure function of its inputs: no files, sockets, clocks of a runtime,
//! databases or environment variables (where a contract needs a file, such as an NVS CSV's `file`
//! rows or a config's partition tables, the caller passes a [`ReadFile`]). This crate may not
//! depend on tokio, reqwest, rusqlite, dirs or any other crate of the other layers; every other
//! Vesper crate depends on it. Modules by domain:
//! - [`serial`]: serial numbers `PV-YYMDD-BBTTR-XXXXX`;
//! - [`credentials`]: per-device MQTT passwords derived from the master secret;
//! - [`acl`]: MQTT topic templates and who may publish or subscribe where;
//! - [`clientid`]: which MQTT client ids a login may use;
//! - [`goauth`]: mosquitto-go-auth's HTTP protocol;
//! - [`sightings`]: reading what devices publish (heartbeats, status);
//! - [`nvs`]: NVS partition images, byte-identical to Espressif's generator;
//! - [`partitions`]: ESP-IDF partition tables;
//! - [`firmware`]: firmware bundles (ESP Web Tools manifests) and app images;
//! - [`model`]: devices, statuses, batches, boards, roles, audit rows;
//! - [`config`]: the configuration file, parsed from text;
//! - [`stock`]: label stocks (sheets and rolls);
//! - [`wire`]: the API's requests and answers, shared by the server and the client.

pub mod acl;
pub mod clientid;
pub mod config;
pub mod credentials;
pub mod device;
pub mod eol;
pub mod firmware;
pub mod goauth;
pub mod model;
pub mod nvs;
pub mod partitions;
pub mod platformio;
pub mod serial;
pub mod sightings;
pub mod stock;
pub mod wire;

/// Reads a file a contract names (a CSV's `file` row, a config's partition table): the caller's
/// window on the file system, so that this crate does none itself.
pub type ReadFile = dyn Fn(&std::path::Path) -> std::io::Result<Vec<u8>>;
