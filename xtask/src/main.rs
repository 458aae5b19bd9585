//! `cargo xtask`: builds, verifies and packages KitchnTabs. This file only parses flags and
//! dispatches; each command lives in the module of the same name (`xtask::commands`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use xtask::{arch::Arch, commands, config, config::EngineChoice, exit, plan::Force, steps};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build, verify and package KitchnTabs for ARM boards, x64 Linux and macOS"
)]
struct Cli {
    /// The checkout to act on (default: the nearest folder at or above the current one that
    /// holds dist.yaml, else the one of CARGO_MANIFEST_DIR, which `cargo run` sets).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the release for one arch: preflight, the build-base image (container builds), the
    /// Python services (natively, or in a container under QEMU or on a remote engine), each
    /// verified before it is installed. Prints a summary table; steps whose inputs are
    /// unchanged are skipped.
    Dist(DistArgs),
    /// Build only the Python services (all, or those named with --service).
    BuildServices(BuildServicesArgs),
    /// electron-builder's afterPack step: check an unpacked app is for the target, inject the
    /// per-arch service binaries (0755, atomically) and write their manifest.
    Afterpack(commands::afterpack::AfterpackArgs),
    /// Measure against the peer tool on the same input and record the ratios in BENCHMARKS.md.
    Bench(commands::bench::BenchArgs),
    /// Build a build-base image from Debian packages (debootstrap, `FROM scratch`), for
    /// machines that reach no image registry. The rootfs tarball is cached and reused.
    BaseImage(commands::base_image::BaseImageArgs),
    /// Check (and with --fix repair) what builds need: tools, the container engine, QEMU
    /// binfmt handlers, buildx platforms, disk space, the CA bundle. Exit 1 when a check fails.
    Doctor(commands::doctor::DoctorArgs),
    /// Check that binaries, unpacked apps, .debs and PyInstaller one-file executables can run
    /// on the target: ELF class/machine, ARM float ABI, interpreter, glibc floor, including
    /// every library inside PyInstaller archives. Exit 0 clean, 1 a check failed, 2 unreadable.
    Verify(commands::verify::VerifyArgs),
    /// Install the release's .deb into a cached Debian rootfs of the target (debootstrap with
    /// the package's Depends) and use it there under QEMU: dpkg -i, each service's
    /// --self-test, /usr/bin/<name>, then dpkg -r must leave nothing behind.
    SmokeTest(commands::smoke_test::SmokeTestArgs),
    /// Run every test — Python (pytest), Node (node --test), Rust (cargo test) and the
    /// end-to-end cross-builds — setting up what they need (venv, node_modules, Docker, QEMU).
    Test(commands::test::TestArgs),
    /// List the target arches with their Docker platform, Debian arch, electron-builder
    /// flags, ELF facts, and the engine and glibc floor dist.yaml gives them.
    Targets {
        #[arg(long)]
        json: bool,
    },
    /// Check the repository: fmt, clippy, dist.yaml, the env configs, Python (ruff, compile),
    /// Dockerfiles (hadolint and our rules), workflows (actionlint), versions. Each problem
    /// names its file and the fix; exit 1 when a check fails.
    Check(commands::check::CheckArgs),
    /// Install a git pre-commit hook that runs `cargo xtask check --staged`.
    InstallHooks,
    /// Install the release's .deb on boards over ssh (`--host pi@kitchen-1`, `--host @group`),
    /// self-test it there, roll back to the previous version on failure. Exit 1 unless every
    /// board is deployed.
    Deploy(commands::deploy::DeployArgs),
    /// Release a tag: refuse a dirty tree, a tag not at HEAD or not the package version; run
    /// `dist --env prod` per arch; merge one SHA256SUMS and dist-manifest.json; sign with
    /// KT_GPG_KEY. `--merge DIR` only merges (CI's publish job).
    Release(commands::release::ReleaseArgs),
    /// Publish the release's .debs into a static APT repository signed with KT_GPG_KEY:
    /// pool/, dists/<suite>/ (Packages, Release, InRelease, by-hash), the keyring and a
    /// deb822 .sources file; keeps the newest --keep versions per package and arch.
    AptRepo(commands::apt_repo::AptRepoArgs),
    /// The writer `bench deb` measures, in its own process (peak memory).
    #[command(name = "bench-deb-writer", hide = true)]
    BenchDebWriter {
        tree: PathBuf,
        out: PathBuf,
        level: u32,
        /// Reuse and fill this data.tar.xz block cache.
        #[arg(long)]
        block_cache: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TargetArgs {
    /// Target arch: armv7l (armhf, arm, arm/v7), arm64 (aarch64), x64 (amd64, x86_64),
    /// darwin-arm64 (mac). Default: this host's.
    #[arg(long)]
    arch: Option<Arch>,
    /// Which config.<env>.yaml the services bundle (names from dist.yaml `envs`).
    #[arg(long, default_value = "default")]
    env: String,
    /// Override the engine that dist.yaml chooses for the target.
    #[arg(long, value_enum)]
    engine: Option<EngineChoice>,
    /// Print the plan (steps, inputs, outputs and the exact commands) instead of running it.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: the plan as JSON. Otherwise: the plan and the run report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Rebuild every step, or only STEP (a step id from --dry-run, e.g. kt_service).
    #[arg(long, value_name = "STEP", num_args = 0..=1, require_equals = false)]
    force: Option<Option<String>>,
    /// Stream the tools' output instead of showing it only when a step fails.
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Args)]
struct DistArgs {
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args)]
struct BuildServicesArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Build only this service (repeatable).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
}

impl TargetArgs {
    fn request(&self, services: Vec<String>, package: bool) -> Result<steps::dist::Request> {
        let arch = match self.arch {
            Some(a) => a,
            None => Arch::host()
                .ok_or_else(|| anyhow::anyhow!("this host is not a known target; pass --arch ({})", Arch::choices()))?,
        };
        Ok(steps::dist::Request { arch, env: self.env.clone(), engine: self.engine, services, package })
    }

    fn mode(&self) -> commands::dist::Mode {
        commands::dist::Mode {
            dry_run: self.dry_run,
            json: self.json,
            force: Force::from_flag(self.force.clone()),
            verbose: self.verbose,
        }
    }
}

/// `--root`, else the checkout the command runs in (see [`config::find_root`]).
fn root(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(r) = explicit {
        // Absolute: tools run in other folders (PyInstaller resolves --add-data against its
        // --specpath), so a relative `--root .` would name other files there.
        return std::path::absolute(&r).map_err(|e| anyhow::anyhow!("--root {}: {e}", r.display()));
    }
    let cwd = std::env::current_dir().map_err(|e| anyhow::anyhow!("cannot read the current folder: {e}"))?;
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").filter(|d| !d.is_empty()).map(PathBuf::from);
    config::find_root(&cwd, manifest.as_deref())
}

/// The widest `--help` line: help wraps at the terminal's width, and at this many columns on a
/// wider terminal or when it is no terminal (a pipe, a file, CI's log).
const HELP_WIDTH: usize = 100;

/// The command line with the exit-code rule in every command's `--help`.
fn cli_command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
        .max_term_width(HELP_WIDTH)
        .after_help(exit::HELP)
        .mut_subcommands(|c| c.max_term_width(HELP_WIDTH).after_help(exit::HELP))
}

fn main() {
    exit::quiet_on_closed_stdout();
    let args: Vec<String> = std::env::args().collect();
    let json = exit::wants_json(&args);
    let parsed = cli_command().try_get_matches().and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            if json {
                let err = anyhow::anyhow!("{}", e.to_string().trim_end());
                println!("{}", exit::error_document(&err, exit::UNUSABLE));
            }
            let _ = e.print();
            std::process::exit(exit::UNUSABLE);
        }
    };
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = exit::code_of(&e);
            if json {
                println!("{}", serde_json::to_string_pretty(&exit::error_document(&e, code)).unwrap_or_default());
            }
            eprintln!("error: {e:#}");
            code
        }
    };
    std::process::exit(code);
}

/// The command's exit code (see [`exit`]); an error is reported by `main`.
fn run(cli: Cli) -> Result<i32> {
    let root = root(cli.root)?;
    let what = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let what = format!("cargo xtask {what}");
    let done = |r: Result<()>| r.map(|()| exit::OK);
    match cli.command {
        Command::Dist(a) => {
            let config = config::Config::load(&root)?;
            done(commands::dist::run(&config, &a.target.request(Vec::new(), true)?, &a.target.mode(), &what))
        }
        Command::BuildServices(a) => {
            let config = config::Config::load(&root)?;
            done(commands::dist::run(&config, &a.target.request(a.services.clone(), false)?, &a.target.mode(), &what))
        }
        Command::BaseImage(a) => done(commands::base_image::run(&config::Config::load(&root)?, &a)),
        Command::Doctor(a) => commands::doctor::run(&config::Config::load(&root)?, &a),
        Command::Test(a) => done(commands::test::run(&config::Config::load(&root)?, &a)),
        Command::SmokeTest(a) => done(commands::smoke_test::run(&config::Config::load(&root)?, &a, &what)),
        Command::Afterpack(a) => done(commands::afterpack::run(&config::Config::load(&root)?, &a)),
        Command::Bench(a) => done(commands::bench::run(&config::Config::load(&root)?, &a)),
        Command::Verify(a) => commands::verify::run(&config::Config::load(&root)?, &a),
        Command::Targets { json } => done(commands::targets::run(&config::Config::load(&root)?, json)),
        Command::Check(a) => commands::check::run(&root, &a),
        Command::InstallHooks => done(commands::install_hooks::run(&root)),
        Command::Deploy(a) => commands::deploy::run(&config::Config::load(&root)?, &a),
        Command::Release(a) => done(commands::release::run(&config::Config::load(&root)?, &a)),
        Command::AptRepo(a) => done(commands::apt_repo::run(&config::Config::load(&root)?, &a)),
        Command::BenchDebWriter { tree, out, level, block_cache } => {
            done(xtask::deb::bench::bench_child(&tree, &out, level, block_cache.as_deref()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every line `--help` prints for `cmd` and each of its subcommands, with their names.
    fn help_lines(cmd: &mut clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        let help = cmd.render_long_help().to_string();
        out.extend(help.lines().map(|l| (path.to_string(), l.to_string())));
        for sub in cmd.get_subcommands_mut() {
            let path = format!("{path} {}", sub.get_name());
            help_lines(sub, &path, out);
        }
    }

    #[test]
    fn no_help_line_is_wider_than_the_help_width() {
        let mut cmd = cli_command();
        cmd.build();
        let mut lines = Vec::new();
        help_lines(&mut cmd, "cargo xtask", &mut lines);
        assert!(lines.len() > 200, "every subcommand's help is rendered: {} lines", lines.len());
        let wide: Vec<String> = lines
            .iter()
            .filter(|(_, l)| l.chars().count() > HELP_WIDTH)
            .map(|(cmd, l)| format!("{cmd} --help ({} columns): {l}", l.chars().count()))
            .collect();
        assert!(wide.is_empty(), "lines wider than {HELP_WIDTH} columns:\n{}", wide.join("\n"));
    }

    #[test]
    fn force_takes_an_optional_step() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(["xtask", "dist"].iter().chain(args)).unwrap();
            match cli.command {
                Command::Dist(a) => Force::from_flag(a.target.force),
                _ => unreachable!(),
            }
        };
        assert_eq!(parse(&[]), Force::None);
        assert_eq!(parse(&["--force"]), Force::All);
        assert_eq!(parse(&["--force", "kt_service"]), Force::Step("kt_service".into()));
        assert_eq!(parse(&["--force", "--dry-run"]), Force::All);
    }

    #[test]
    fn arch_flag_takes_aliases_and_rejects_others_with_the_list() {
        let cli = Cli::try_parse_from(["xtask", "dist", "--arch", "armhf"]).unwrap();
        let Command::Dist(a) = cli.command else { unreachable!() };
        assert_eq!(a.target.arch, Some(Arch::Armv7l));
        let err = Cli::try_parse_from(["xtask", "dist", "--arch", "i386"]).err().unwrap().to_string();
        assert!(err.contains("unknown arch `i386`, expected one of armv7l (armhf"), "{err}");
    }
}
