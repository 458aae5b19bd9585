//! `cargo xtask base-image`: a build-base image from Debian packages (debootstrap, `FROM
//! scratch`), for machines that reach no image registry.

use anyhow::Result;

use crate::plan::Header;
use crate::{
    arch::Arch,
    config::Suite,
    plan::{Force, Plan, RunOptions, Step, StepKind},
};

#[derive(clap::Args)]
pub struct BaseImageArgs {
    /// Target arch of the image (armv7l, arm64, x64 and their aliases).
    #[arg(long)]
    arch: Arch,
    /// Debian release: bookworm (glibc 2.36) or bullseye (glibc 2.31).
    #[arg(long, value_enum, default_value = "bookworm")]
    suite: Suite,
    /// Container engine that will use the image (its store receives it).
    #[arg(long, value_enum)]
    engine: Option<crate::config::EngineChoice>,
    /// Print the plan instead of running it.
    #[arg(long)]
    dry_run: bool,
    /// The plan (with --dry-run), or the plan and the run report, as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Rebuild the rootfs and the image, or only STEP (rootfs, base-image).
    #[arg(long, value_name = "STEP", num_args = 0..=1)]
    force: Option<Option<String>>,
    /// Stream debootstrap's and the engine's output.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(config: &crate::config::Config, args: &BaseImageArgs) -> Result<()> {
    let tools = crate::host::Host::probe(config);
    // A base image is built for a container engine even where the target is native.
    let choice = match args.engine {
        Some(crate::config::EngineChoice::Native) | Some(crate::config::EngineChoice::Auto) | None => {
            crate::config::EngineChoice::Docker
        }
        Some(other) => other,
    };
    let engine = crate::engine::engine_for(config, args.arch, Arch::host(), Some(choice), &tools)?;
    let mut preflight = Step::new("preflight", "check the host can build a base image", StepKind::Preflight);
    preflight.always = true;
    preflight.check_all = true;
    crate::steps::base_image::add_preflight(&mut preflight);
    let (steps, _) = crate::steps::base_image::steps(&config.root, args.arch, args.suite, &engine, &tools.cache)?;
    let header = Header { arch: Some(args.arch), engine: Some(engine), ..Header::new("base-image", config) };
    let plan = Plan { header, root: config.root.clone(), steps: std::iter::once(preflight).chain(steps).collect() };
    let force = Force::from_flag(args.force.clone());
    super::show_or_run(&plan, &RunOptions { force, verbose: args.verbose, keep_going: false }, args.dry_run, args.json)
}
