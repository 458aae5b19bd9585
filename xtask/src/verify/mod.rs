//! Release binary verification: make sure no release carries a binary that
//! cannot run on its target (architecture, float ABI, loader, glibc floor),
//! looking inside directories, .deb packages, tarballs and PyInstaller one-file archives.
//!

pub mod deb;
mod decode;
pub mod elf;
pub mod links;
mod members;
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
pub use walk::verify_bytes;

// The command-line glue below needs the rest of the xtask; the fuzz targets (xtask/fuzz)
// include this module alone, built with `--cfg fuzzing`.

/// `cargo xtask verify`: exit 0 clean, 1 when a check fails, 2 when an input cannot be read.
#[cfg(not(fuzzing))]
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Binaries, unpacked app folders, .deb packages, tarballs (.tar, .tar.gz, .tgz, .tar.xz,
    /// .tar.zst) or PyInstaller one-file executables.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<std::path::PathBuf>,
    /// The target they must run on (armv7l, arm64, x64, darwin-arm64 or an alias).
    #[arg(long, value_parser = crate::parse_arch)]
    arch: crate::arch::Arch,
    /// The highest glibc they may need (default: the target's floor in dist.yaml).
    #[arg(long, value_name = "X.Y")]
    glibc: Option<crate::config::GlibcVersion>,
    /// The findings as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// An input that holds no regular file passes (else it is an error: a build step wrote nothing).
    #[arg(long)]
    allow_empty: bool,
}

/// Exit code for a report: 0 clean, 1 a check failed, 2 an input could not be read (the
/// other inputs are still checked and reported).
#[cfg(not(fuzzing))]
pub fn run(config: &crate::config::Config, args: &VerifyArgs) -> anyhow::Result<i32> {
    let floor = match args.glibc {
        Some(g) => Some(g),
        None => config.dist.targets.get(&args.arch).and_then(|t| t.glibc),
    };
    let target = Target::for_arch(args.arch, floor);
    let report = verify_paths(&args.paths, &target, Options { allow_empty: args.allow_empty });
    for err in &report.input_errors {
        eprintln!("error: {err}");
    }
    if args.json {
        let doc: serde_json::Value = serde_json::from_str(&report.to_json()?)?;
        crate::exit::print_json(doc, report.exit_code() == 0)?;
    } else {
        if !report.findings.is_empty() {
            print!("{}", report.render_table());
        }
        println!("{}", report.verdict(&target.describe()));
    }
    Ok(report.exit_code())
}

/// `dist`'s check of freshly built binaries: any error stops the release, naming the file
/// and the cause.
#[cfg(not(fuzzing))]
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
