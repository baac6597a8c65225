//! The simulated board's own readers of what was flashed, written from Espressif's documented
//! formats as a real second-stage bootloader and a real firmware have theirs. They share no code
//! with the product's writers, so a board that boots proves the writers right, not merely
//! consistent with themselves.

pub mod app_image;
pub mod nvs;
pub mod partition_table;
