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
mod md5sums;
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

/// [`check_release`] for the .deb at `tmp`, named `shown` in errors (the path it is about to
/// be renamed to), whose data.tar must decompress to `expect` (see
/// [`deb::verify_deb_expecting`]). Errors name the file, and a data.tar that is not what
/// was written says so (kind [`InputErrorKind::Mismatch`], see [`DebCheckError`]).
pub fn check_deb_release(
    tmp: &std::path::Path,
    shown: &std::path::Path,
    target: &Target,
    check_binaries: bool,
    expect: Option<&[(u64, [u8; 32])]>,
) -> Result<(), DebCheckError> {
    let file =
        std::fs::File::open(tmp).map_err(|e| DebCheckError::Other(report::InputError::io(tmp, &e).to_string()))?;
    let mut report = deb::verify_deb_expecting(std::io::BufReader::with_capacity(1 << 16, file), shown, target, expect);
    if !check_binaries {
        report.findings.clear();
    } else if report.files_checked == 0 && report.input_errors.is_empty() {
        report.findings.push(walk::nothing_checked(shown));
    }
    report.sort();
    if let Some(e) = report.input_errors.iter().find(|e| e.kind == report::InputErrorKind::Mismatch) {
        return Err(DebCheckError::Mismatch(format!("verify: {e}")));
    }
    if !report.input_errors.is_empty() {
        let errors: Vec<String> = report.input_errors.iter().map(ToString::to_string).collect();
        return Err(DebCheckError::Other(format!("verify: {}", errors.join("\nverify: "))));
    }
    if report.has_errors() {
        return Err(DebCheckError::Binaries(format!(
            "verify: these binaries cannot run on {}:\n{}{}",
            target.describe(),
            report.render_table(),
            report.verdict(&target.describe())
        )));
    }
    Ok(())
}

/// Why [`check_deb_release`] refused a package.
#[derive(Debug)]
pub enum DebCheckError {
    /// data.tar decompressed to other bytes than its writer recorded.
    Mismatch(String),
    /// The package could not be read whole.
    Other(String),
    /// Read whole and as written, with binaries that cannot run on the target.
    Binaries(String),
}

impl std::fmt::Display for DebCheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DebCheckError::Mismatch(s) | DebCheckError::Other(s) | DebCheckError::Binaries(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for DebCheckError {}

#[cfg(test)]
pub(crate) mod tests;
