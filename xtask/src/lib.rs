//! The build system of KitchnTabs as a library: the binary (`cargo xtask`) parses the command
//! line and calls into it, and the tests, benches and fuzz targets use the same modules.
//!
//! Layering, lowest first (imports only point down; `tests/tidy.rs` checks it):
//! - facts and utilities: `arch`, `fsx`, `lock`, `rng`, `fingerprint`, `process`, `exit`,
//!   `package_json`, `prereq`;
//! - inputs: `config` (dist.yaml), `host` (what this machine has), `layout` (every path);
//! - readers, writers and executors: `verify`, `deb`, `engine`, `checkup`, `engine_checks`,
//!   `electron_source`, `afterpack`, `smoke`, `release_record`, `apt_repo`, `pyi_repack`;
//! - `plan`: typed steps, freshness, the runner that dispatches to the executors;
//! - `steps`: the steps each plan is built from;
//! - `commands`: one module per command, named as on the command line.

pub mod afterpack;
pub mod apt_repo;
pub mod arch;
pub mod checkup;
pub mod commands;
pub mod config;
pub mod deb;
#[cfg(test)]
mod differential;
pub mod electron_source;
pub mod engine;
pub mod engine_checks;
pub mod exit;
pub mod fingerprint;
pub mod fsx;
pub mod host;
pub mod layout;
pub mod lock;
pub mod package_json;
pub mod plan;
pub mod prereq;
pub mod process;
pub mod pyi_repack;
pub mod release_record;
pub mod rng;
pub mod smoke;
#[cfg(test)]
mod snapshot;
pub mod stand_in;
pub mod steps;
pub mod verify;
