//! `cargo xtask verify`: check that binaries, unpacked apps, .debs, tarballs and PyInstaller
//! one-file executables can run on a target, and report what cannot.

use crate::verify::{Options, Target, verify_paths};

/// `cargo xtask verify`: exit 0 clean, 1 when a check fails, 2 when an input cannot be read.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Binaries, unpacked app folders, .deb packages, tarballs (.tar, .tar.gz, .tgz, .tar.xz,
    /// .tar.zst) or PyInstaller one-file executables.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<std::path::PathBuf>,
    /// The target they must run on (armv7l, arm64, x64, darwin-arm64 or an alias).
    #[arg(long)]
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
        crate::exit::print_json(doc, report.exit_code())?;
    } else {
        if !report.findings.is_empty() {
            print!("{}", report.render_table());
        }
        println!("{}", report.verdict(&target.describe()));
    }
    Ok(report.exit_code())
}
