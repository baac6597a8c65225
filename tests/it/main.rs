//! Integration tests, one binary (see README: one test command installs what they need).

mod backend_support;
mod backup;
mod support;

mod acl_table;
mod backend_api;
mod backend_firmware;
mod backend_mqtt;
mod backend_process;
mod boards_import;
mod broker;
mod broker_hardening;
mod claims_race;
mod cli;
mod config;
mod deploy_hook;
mod deploy_nginx;
mod doctor;
mod embedded_broker;
mod firmware_build;
mod firmware_device;
mod flashing;
mod goauth_conformance;
mod headless_bench;
mod labels;
mod layout;
mod mail;
mod nvs_differential;
mod nvs_vectors;
mod partitions;
mod scale_out;
mod sim_peers;
mod station;
mod station_e2e;
mod station_tasks;
