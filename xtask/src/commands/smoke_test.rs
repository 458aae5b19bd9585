//! `cargo xtask smoke-test --arch armv7l`: install the release's .deb into a Debian rootfs of
//! the target's arch (debootstrap with the package's Depends, cached) and use it there under
//! QEMU, as a board would: `dpkg -i`, every service's `--self-test`, `/usr/bin/<name>`
//! resolving to the app, then `dpkg -r` leaving nothing behind. No board needed.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::plan::Header;
use crate::{
    arch::Arch,
    config::{Config, Suite},
    host::Host,
    plan::{self, Action, Force, Plan, RunOptions, Step, StepKind},
};

#[derive(clap::Args)]
pub struct SmokeTestArgs {
    /// Target arch of the package (armv7l, arm64, x64 and their aliases).
    #[arg(long)]
    arch: Arch,
    /// The .deb (default: release/<version>/<name>_<version>_<debarch>.deb from `dist`).
    #[arg(long, value_name = "FILE")]
    deb: Option<PathBuf>,
    /// Debian release of the rootfs: the OS the boards run.
    #[arg(long, value_enum, default_value = "bookworm")]
    suite: Suite,
    /// Print the plan instead of running it.
    #[arg(long)]
    dry_run: bool,
    /// Stream debootstrap's and dpkg's output.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(config: &Config, args: &SmokeTestArgs, what: &str) -> Result<()> {
    let tools = Host::probe(config);
    let plan = plan(config, args, &tools)?;
    if args.dry_run {
        print!("{}", plan.render(&Force::None)?);
        return Ok(());
    }
    // The rootfs step locks its cache entry; the scratch tree is this checkout's own.
    let _lock = crate::lock::TreeLock::acquire(&config.root.join("target/xtask/smoke.lock"), what)?;
    plan::run(&plan, &RunOptions { force: Force::None, verbose: args.verbose, keep_going: false })?;
    Ok(())
}

/// The package names of a Depends list: `libc6 (>= 2.36)` → `libc6`; alternatives take the first.
fn package_names(depends: &[String]) -> Vec<String> {
    depends
        .iter()
        .map(|d| d.split('|').next().unwrap_or(d).split_whitespace().next().unwrap_or_default().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

pub fn plan(config: &Config, args: &SmokeTestArgs, tools: &Host) -> Result<Plan> {
    let arch = args.arch;
    let debian = arch.debian_arch().with_context(|| format!("{arch} has no .deb to smoke-test"))?;
    let deb = match &args.deb {
        Some(d) => d.clone(),
        None => crate::layout::release_dir(config)
            .join(crate::layout::deb_name(config, arch).expect("a Debian arch has a .deb name")),
    };
    let mut preflight = Step::new("preflight", "check the host can run a rootfs of the target", StepKind::Preflight);
    preflight.always = true;
    preflight.check_all = true;
    crate::steps::base_image::add_preflight(&mut preflight);
    if Arch::host() != Some(arch) {
        preflight.actions.push(Action::RegisterBinfmt { arches: vec![arch] });
    }
    let mut packages = package_names(&config.dist.packaging.deb.depends);
    // debootstrap does not resolve virtual alternatives: GTK's dconf-service needs
    // `default-dbus-session-bus | dbus-session-bus`, which apt would satisfy with dbus.
    packages.push("dbus-x11".into());
    let name = format!("{}-{debian}-runtime", args.suite.name());
    let (rootfs, tar) =
        crate::steps::base_image::rootfs_step(&config.root, arch, args.suite, &tools.cache, &name, &packages)?;
    let mut smoke = Step::new("smoke-test", format!("install and use {} in it", deb.display()), StepKind::Preflight);
    smoke.always = true;
    let scratch = config.root.join("target/xtask/smoke").join(arch.name());
    smoke.actions.push(Action::Clean { path: scratch.clone() });
    smoke.actions.push(Action::SmokeTest {
        rootfs: tar,
        deb,
        scratch: scratch.clone(),
        package: config.dist.product.name.clone(),
        services: config.dist.services.keys().cloned().collect(),
    });
    smoke.actions.push(Action::Clean { path: scratch });
    let header = Header { arch: Some(arch), ..Header::new("smoke-test", config) };
    Ok(Plan { header, root: config.root.clone(), steps: vec![preflight, rootfs, smoke] })
}

#[cfg(test)]
mod tests {
    #[test]
    fn depends_become_package_names() {
        let names =
            super::package_names(&["libc6 (>= 2.36)".into(), "libgtk-3-0".into(), "libasound2 | libasound2t64".into()]);
        assert_eq!(names, ["libc6", "libgtk-3-0", "libasound2"]);
    }
}
