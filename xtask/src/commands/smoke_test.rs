//! `cargo xtask smoke-test --arch armv7l`: install the release's .deb into a Debian rootfs of
//! the target's arch (debootstrap with the package's Depends, cached) and use it there under
//! QEMU, as a board would: `dpkg -i`, every service's `--self-test`, `/usr/bin/<name>`
//! resolving to the app, then `dpkg -r` leaving nothing behind. No board needed.
//!
//! `--upgrade-from <previous .deb | repository URL>` tests the upgrade a board gets from the
//! project's signed APT repository instead: the previous version installed with apt from that
//! repository (signature verified; a tampered index and a wrong key refused), then upgraded to
//! this .deb, conffile edits kept, the kiosk unit restarted, unattended-upgrades seeing the new
//! version when the package opts in, and `apt-get purge` leaving nothing behind.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

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
    /// Test the upgrade from this previous version: a .deb (published with the new one into a
    /// throwaway repository signed with KT_GPG_KEY or a throwaway key), or the URL of a
    /// repository that holds both (`file:/srv/repo`, `http://127.0.0.1:8080/repo`).
    #[arg(long, value_name = "DEB|URL")]
    upgrade_from: Option<String>,
    /// The repository's keyring (binary, `gpg --export`), for `--upgrade-from URL`.
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,
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

/// What the rootfs holds: the package's Depends, and what the upgrade test needs there (the
/// rootfs has no network: apt can only install what is already in it): the maintainer
/// scripts' deb-systemd-helper and unattended-upgrades.
fn rootfs_packages(depends: &[String]) -> Vec<String> {
    let mut packages = package_names(depends);
    // dbus-x11: debootstrap does not resolve virtual alternatives, and GTK's dconf-service
    // needs `default-dbus-session-bus | dbus-session-bus`, which apt would satisfy with dbus.
    for p in ["dbus-x11", "init-system-helpers", "unattended-upgrades"] {
        if !packages.iter().any(|q| q == p) {
            packages.push(p.into());
        }
    }
    packages
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
    // One rootfs for both tests, cached under a name of its package list (two checkouts with
    // other Depends do not rebuild each other's): debootstrapping a second one under QEMU
    // costs minutes, the upgrade test's extras only seconds of unpacking.
    let packages = rootfs_packages(&config.dist.packaging.deb.depends);
    let digest = crate::fingerprint::hex(&<sha2::Sha256 as sha2::Digest>::digest(packages.join(",").as_bytes()));
    let name = format!("{}-{debian}-runtime-{}", args.suite.name(), &digest[..8]);
    let (rootfs, tar) =
        crate::steps::base_image::rootfs_step(&config.root, arch, args.suite, &tools.cache, &name, &packages)?;
    let scratch = config.root.join("target/xtask/smoke").join(arch.name());
    let package = config.dist.product.name.clone();
    let services: Vec<String> = config.dist.services.keys().cloned().collect();
    let Some(from) = &args.upgrade_from else {
        if args.keyring.is_some() {
            bail!("--keyring is the keyring of an --upgrade-from repository URL; pass --upgrade-from too");
        }
        let mut smoke =
            Step::new("smoke-test", format!("install and use {} in it", deb.display()), StepKind::Preflight);
        smoke.always = true;
        smoke.actions.push(Action::Clean { path: scratch.clone() });
        smoke.actions.push(Action::SmokeTest { rootfs: tar, deb, scratch: scratch.clone(), package, services });
        smoke.actions.push(Action::Clean { path: scratch });
        let header = Header { arch: Some(arch), ..Header::new("smoke-test", config) };
        return Ok(Plan { header, root: config.root.clone(), steps: vec![preflight, rootfs, smoke] });
    };

    preflight.actions.push(Action::Prerequisites {
        needs: vec![
            crate::prereq::Prereq::runs("gpg", &["--version"], &["gnupg"]),
            crate::prereq::Prereq::runs("dpkg-deb", &["--version"], &["dpkg"]),
        ],
    });
    let mut step = Step::new(
        "upgrade-test",
        format!("upgrade {package} from {from} to {} through apt", deb.display()),
        StepKind::Preflight,
    );
    step.always = true;
    step.actions.push(Action::Clean { path: scratch.clone() });
    let source = if from.contains("://") || from.starts_with("file:") {
        let keyring = args.keyring.clone().with_context(|| {
            format!("--upgrade-from {from} is a repository: pass --keyring FILE, its binary keyring (gpg --export)")
        })?;
        crate::smoke::Source::Repo { url: from.clone(), keyring }
    } else {
        if args.keyring.is_some() {
            bail!(
                "--keyring is for an --upgrade-from repository URL; {from} is a .deb, published with a key of its own"
            );
        }
        let gnupg = scratch.join("gnupg");
        let key =
            match std::env::var("KT_GPG_KEY").ok().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()) {
                Some(k) => crate::smoke::SigningKey { key: k, gnupg_home: None },
                None => {
                    let uid = format!("{package} smoke-test throwaway key <smoke-test@{package}.invalid>");
                    // gpg makes neither the folder nor its parents; it wants it private.
                    step.actions.push(Action::Run(
                        crate::process::Command::new("install", &config.root).args(["-d", "-m", "700"]).arg(&gnupg),
                    ));
                    step.actions.push(Action::Run(
                        crate::process::Command::new("gpg", &config.root)
                            .env("GNUPGHOME", gnupg.to_string_lossy())
                            .args(["--batch", "--passphrase", "", "--quick-gen-key", &uid, "ed25519", "sign", "never"]),
                    ));
                    crate::smoke::SigningKey { key: uid, gnupg_home: Some(gnupg) }
                }
            };
        crate::smoke::Source::Deb { previous: PathBuf::from(from), key }
    };
    step.actions.push(Action::SmokeUpgrade(Box::new(crate::smoke::Upgrade {
        rootfs: tar,
        deb,
        scratch: scratch.clone(),
        package,
        services,
        source,
        origin: crate::steps::package::unattended_origin(config),
        unattended: config.dist.packaging.deb.unattended_upgrades,
    })));
    step.actions.push(Action::Clean { path: scratch });
    let header = Header { arch: Some(arch), ..Header::new("smoke-test", config) };
    Ok(Plan { header, root: config.root.clone(), steps: vec![preflight, rootfs, step] })
}

#[cfg(test)]
mod tests {
    #[test]
    fn depends_become_package_names() {
        let names =
            super::package_names(&["libc6 (>= 2.36)".into(), "libgtk-3-0".into(), "libasound2 | libasound2t64".into()]);
        assert_eq!(names, ["libc6", "libgtk-3-0", "libasound2"]);
        let rootfs = super::rootfs_packages(&["init-system-helpers (>= 1.54~)".into(), "libnss3".into()]);
        assert_eq!(rootfs, ["init-system-helpers", "libnss3", "dbus-x11", "unattended-upgrades"]);
    }
}
