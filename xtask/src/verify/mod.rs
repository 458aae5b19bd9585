//! Release binary verification: make sure no release carries a binary that
//! cannot run on its target (architecture, float ABI, loader, glibc floor),
//! looking inside directories, .deb packages, tarballs, PyInstaller one-file archives, and
//! the asar, zip, gzip and tar archives nested in any of them.
//!

mod asar;
mod containers;
pub mod deb;
mod decode;
pub mod elf;
pub mod links;
mod members;
pub mod object;
pub mod pyinstaller;
pub mod report;
pub mod tarball;
mod target;
pub mod walk;

pub use target::Target;
pub use walk::{Options, verify_paths};

// The rest of the readers' surface, used by the tests.
#[cfg(test)]
pub use report::{Check, Finding, InputError, InputErrorKind, Report, Severity};
#[cfg(any(test, fuzzing))]
pub use walk::{verify_archive_bytes, verify_bytes};

/// `dist`'s check of freshly built binaries: any error stops the release, naming the file
/// and the cause.
pub fn check_release(
    paths: &[std::path::PathBuf],
    arch: crate::arch::Arch,
    glibc: Option<crate::config::GlibcVersion>,
) -> anyhow::Result<()> {
    let target = Target::for_arch(arch, glibc);
    let report = verify_paths(paths, &target, Options::default());
    if !report.input_errors.is_empty() {
        let errors: Vec<String> = report.input_errors.iter().map(ToString::to_string).collect();
        anyhow::bail!("verify: {}", errors.join("\nverify: "));
    }
    if report.has_errors() {
        anyhow::bail!(
            "verify: these binaries cannot run on {}:\n{}{}",
            target.describe(),
            report.render_table(),
            report.verdict(&target.describe())
        );
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
