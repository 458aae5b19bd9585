//! The verify readers against real fixtures (built by the tests with the cross compilers from
//! apt), corrupted and truncated copies, and seeded mutation runs.
#![allow(dead_code)] // the fixture helpers serve several of these modules

pub(crate) mod common;
mod containers;
mod corrupt;
mod deb;
mod elf_checks;
mod minifuzz;
mod pyinstaller;
mod report;
mod tarball;
mod walk;
