//! Integration tests, one binary (see README: one test command installs what they need).

mod support;

mod acl_table;
mod cli;
mod config;
mod nvs_differential;
mod nvs_vectors;
mod partitions;
