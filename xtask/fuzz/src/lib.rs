//! The verify readers, included from the xtask by path (the xtask is a binary crate).
#[path = "../../src/verify/mod.rs"]
pub mod verify;
