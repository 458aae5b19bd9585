//! `cargo xtask apt-repo --into DIR`: publish the release's .debs (release/<version>/*.deb, or
//! those named with --deb) into a static APT repository signed with KT_GPG_KEY (see
//! `crate::apt_repo`). Flags override dist.yaml's `apt_repo:`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use crate::{
    apt_repo::{Publish, debs_in, lock_path, plan},
    arch::Arch,
    commands::release::SigningKey,
    config::Config,
};

#[derive(Args, Debug, Default)]
pub struct AptRepoArgs {
    /// The repository folder (default: dist.yaml's apt_repo.into).
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,
    /// The suite (and codename), default apt_repo.suite or `stable`.
    #[arg(long)]
    pub suite: Option<String>,
    /// Versions kept per package and arch (default apt_repo.keep or 3).
    #[arg(long)]
    pub keep: Option<usize>,
    /// Publish only these arches' .debs from release/<version>/ (repeatable).
    #[arg(long = "arch")]
    pub arches: Vec<Arch>,
    /// Publish these .debs instead of release/<version>/'s (repeatable).
    #[arg(long = "deb", value_name = "FILE")]
    pub debs: Vec<PathBuf>,
    /// The URL clients fetch from, for the .sources file (default apt_repo.url, else file:DIR).
    #[arg(long)]
    pub url: Option<String>,
    /// Publish without KT_GPG_KEY: clients then need `Trusted: yes` ([trusted=yes]).
    #[arg(long)]
    pub unsigned: bool,
    /// Print what a run writes, links, signs and removes, without doing it.
    #[arg(long)]
    pub dry_run: bool,
    /// The plan (with --dry-run) or the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The .debs of `release/<version>/`, those of `arches` only when given.
fn release_debs(config: &Config, arches: &[Arch]) -> Result<Vec<PathBuf>> {
    let dir = config.root.join("release").join(&config.version);
    let mut debs = debs_in(&dir)?;
    if !arches.is_empty() {
        let wanted: Vec<&str> = arches.iter().filter_map(|a| a.debian_arch()).collect();
        debs.retain(|p| wanted.iter().any(|w| deb_arch_of_name(p) == Some(*w)));
        if debs.is_empty() {
            bail!("{}: no .deb for {}; build it with `cargo xtask dist --arch ...`", dir.display(), wanted.join(", "));
        }
    }
    if debs.is_empty() {
        bail!("{}: no .deb; build them with `cargo xtask dist`", dir.display());
    }
    Ok(debs)
}

/// `<name>_<version>_<debarch>.deb` → debarch.
fn deb_arch_of_name(p: &Path) -> Option<&str> {
    p.file_stem()?.to_str()?.rsplit('_').next()
}

/// The request: flags over dist.yaml over defaults.
pub fn request(config: &Config, args: &AptRepoArgs, key: Option<SigningKey>) -> Result<Publish> {
    if key.is_none() && !args.unsigned {
        bail!(
            "KT_GPG_KEY is not set: set it to the key that signs the repository, or pass --unsigned \
             (clients must then mark the source `Trusted: yes` / [trusted=yes])"
        );
    }
    let into = args.into.as_deref().map(absolute).transpose()?;
    let mut p = Publish::from_config(config, into, key.map(|k| k.0))?;
    p.debs = if args.debs.is_empty() {
        release_debs(config, &args.arches)?
    } else {
        args.debs.iter().map(|d| absolute(d)).collect::<Result<_>>()?
    };
    if let Some(s) = &args.suite {
        p.suite = s.clone();
    }
    if let Some(k) = args.keep {
        p.keep = k;
    }
    if let Some(u) = &args.url {
        crate::apt_repo::check_url(u, "--url")?;
        p.url = Some(u.clone());
    }
    Ok(p)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

pub fn run(config: &Config, args: &AptRepoArgs) -> Result<()> {
    let publish = request(config, args, SigningKey::from_env())?;
    let _lock = if args.dry_run {
        None
    } else {
        Some(crate::lock::TreeLock::acquire_transient(&lock_path(&publish.into)?, "apt-repo")?)
    };
    let plan = plan(&publish)?;
    if args.dry_run {
        if args.json {
            crate::exit::print_json(serde_json::to_value(&plan)?, crate::exit::OK)?;
        } else {
            print!("{}", plan.render());
        }
        return Ok(());
    }
    let published = plan.run()?;
    if args.json {
        crate::exit::print_json(serde_json::to_value(&published)?, crate::exit::OK)?;
    }
    let list: Vec<String> = published.packages.iter().map(|(a, v)| format!("{v} ({a})")).collect();
    eprintln!("published into {}: {}", published.dir.display(), list.join(", "));
    match &published.keyring {
        Some(k) => eprintln!("keyring {}; sources {}", k.display(), published.sources.display()),
        None => eprintln!("unsigned (Trusted: yes); sources {}", published.sources.display()),
    }
    Ok(())
}
