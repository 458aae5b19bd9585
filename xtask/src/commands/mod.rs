//! The commands, one module each, named as on the command line: each parses its flags, builds
//! its plan or reads its inputs, runs, and reports.

pub mod bench;
pub mod check;
pub mod doctor;
pub mod install_hooks;
pub mod release;
pub mod smoke_test;
pub mod targets;
pub mod test;
