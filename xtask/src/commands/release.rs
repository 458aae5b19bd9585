//! `cargo xtask release --tag vX.Y.Z`: refuse what would make a wrong release (a dirty tree, a
//! tag that is not HEAD, a tag that is not the package version), then plan `dist --env prod`
//! for each arch, merge the per-arch manifests into one SHA256SUMS and one dist-manifest.json,
//! sign SHA256SUMS when a key is configured, and publish the signed APT repository when
//! dist.yaml's apt_repo.into is set. `--merge DIR` does only what follows the builds, for CI's
//! publish job, which downloads every arch's `release/<version>/` into DIR.
//!
//! darwin-arm64 builds only on macOS: on another host it is skipped with a note when it comes
//! from dist.yaml (CI's macos-14 job builds it, and `--merge` takes its manifest), and refused
//! when asked for with `--arch`, since that release could not be what was asked.
//!
//! The per-arch contract with `dist`: it writes `release/<version>/<artifact>` and
//! `release/<version>/dist-manifest.<arch>.json` listing each artifact's size and sha256.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use crate::{
    arch::Arch,
    config::Config,
    process::Command,
    release_record::{merge, write_merged},
};

#[derive(Args)]
pub struct ReleaseArgs {
    /// The release tag: `v` and the version in electron-app/package.json, e.g. v1.0.0.
    #[arg(long)]
    pub tag: String,
    /// Print the plan (the exact commands) after the checks, without running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Release only these arches (repeatable). Default: every target in dist.yaml.
    #[arg(long = "arch")]
    pub arches: Vec<Arch>,
    /// Only gather the per-arch manifests already in DIR (merge, sign, publish the APT
    /// repository when dist.yaml's apt_repo.into is set): CI's publish job.
    #[arg(long, value_name = "DIR")]
    pub merge: Option<PathBuf>,
}

/// `KT_GPG_KEY`: the key (id, fingerprint or e-mail) that signs SHA256SUMS. Without it the
/// release is unsigned, and the plan says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey(pub String);

impl SigningKey {
    pub fn from_env() -> Option<SigningKey> {
        std::env::var("KT_GPG_KEY").ok().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).map(SigningKey)
    }
}

/// What git says about the checkout, gathered once so the rules below are pure.
#[derive(Clone, Debug, Default)]
pub struct GitFacts {
    /// `git status --porcelain` lines: modified, staged and untracked (not ignored) paths.
    pub dirty: Vec<String>,
    pub head: String,
    /// The commit the tag points at, when the tag exists.
    pub tag_commit: Option<String>,
}

fn git(root: &Path, args: &[&str]) -> Result<crate::process::Output> {
    crate::process::exec(&Command::new("git", root).args(args))
}

pub fn git_facts(root: &Path, tag: &str) -> Result<GitFacts> {
    let status = git(root, &["status", "--porcelain"])?;
    if !status.success {
        bail!(
            "{} is not a git checkout: {}; release from a clone of the repository",
            root.display(),
            status.stderr.trim()
        );
    }
    let head = git(root, &["rev-parse", "HEAD"])?;
    let tag_commit = git(root, &["rev-parse", "--verify", "--quiet", &format!("refs/tags/{tag}^{{commit}}")])?;
    Ok(GitFacts {
        dirty: status.stdout.lines().map(str::to_string).collect(),
        head: head.stdout.trim().to_string(),
        tag_commit: tag_commit.success.then(|| tag_commit.stdout.trim().to_string()),
    })
}

/// The tag names the package version.
pub fn check_tag(tag: &str, version: &str) -> Result<()> {
    if tag == version {
        bail!(
            "tag `{tag}` must be `v{version}` for version {version}: release tags start with `v`; run `cargo xtask release --tag v{version}`"
        );
    }
    if tag.strip_prefix('v') != Some(version) {
        bail!(
            "tag `{tag}` does not match the package version {version} (electron-app/package.json); \
             release `--tag v{version}`, or set \"version\" in electron-app/package.json to the tag's version, commit, and tag that commit"
        );
    }
    Ok(())
}

/// Every refusal, in the order a user fixes them.
pub fn preconditions(tag: &str, version: &str, facts: &GitFacts) -> Result<()> {
    check_tag(tag, version)?;
    if !facts.dirty.is_empty() {
        let shown: Vec<&str> = facts.dirty.iter().take(5).map(String::as_str).collect();
        let more = facts.dirty.len().saturating_sub(5);
        bail!(
            "the working tree is not clean ({}{}); a release must be built from exactly the tagged commit: \
             commit or stash the changes (`git stash -u`)",
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
    }
    match &facts.tag_commit {
        None => bail!("tag `{tag}` does not exist; create it on HEAD: `git tag -a {tag} -m \"KitchnTabs {version}\"`"),
        Some(c) if *c != facts.head => bail!(
            "tag `{tag}` points at {}, but HEAD is {}; check the tag out (`git checkout {tag}`), or move it to HEAD (`git tag -f -a {tag}`) if HEAD is what you mean to release",
            short(c),
            short(&facts.head)
        ),
        Some(_) => Ok(()),
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// One thing the release does, in order.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ReleaseStep {
    /// `cargo xtask dist --arch A --env prod`: writes the arch's artifacts and manifest.
    Dist { arch: Arch, command: Command },
    /// An arch this host cannot build, with the reason and where it is built instead.
    Skip { arch: Arch, why: String },
    /// RepoCheck every artifact against its manifest; write SHA256SUMS and dist-manifest.json.
    Merge { dir: PathBuf, version: String },
    /// `gpg --detach-sign --armor` SHA256SUMS into SHA256SUMS.asc (through a temporary file).
    Sign { command: Command, from: PathBuf, to: PathBuf },
    /// `cargo xtask apt-repo`: every .deb of `dir` into dist.yaml's apt_repo.into, signed.
    AptRepo { dir: PathBuf, publish: crate::apt_repo::Publish },
}

#[derive(Clone, Debug, Serialize)]
pub struct ReleasePlan {
    pub tag: String,
    pub version: String,
    pub dir: PathBuf,
    pub signed: bool,
    pub steps: Vec<ReleaseStep>,
}

impl ReleasePlan {
    pub fn render(&self, root: &Path) -> String {
        let rel = |p: &Path| crate::fsx::rel(root, p).display().to_string();
        let mut out = format!("release {} (version {}) into {}\n", self.tag, self.version, rel(&self.dir));
        if !self.signed {
            out.push_str("unsigned: set KT_GPG_KEY to the key that signs SHA256SUMS\n");
        }
        for (i, s) in self.steps.iter().enumerate() {
            let _ = match s {
                ReleaseStep::Dist { arch, command } => {
                    write!(out, "\n[{}] dist {arch}\n    $ {}\n", i + 1, command.shell_line())
                }
                ReleaseStep::Skip { arch, why } => write!(out, "\n[{}] skip {arch}: {why}\n", i + 1),
                ReleaseStep::Merge { dir, .. } => write!(
                    out,
                    "\n[{}] merge {}/dist-manifest.<arch>.json: check each artifact's size and sha256, write SHA256SUMS and dist-manifest.json\n",
                    i + 1,
                    rel(dir)
                ),
                ReleaseStep::Sign { command, from, to } => write!(
                    out,
                    "\n[{}] sign SHA256SUMS\n    $ {}\n    rename {} -> {}\n",
                    i + 1,
                    command.shell_line(),
                    rel(from),
                    rel(to)
                ),
                ReleaseStep::AptRepo { dir, publish } => write!(
                    out,
                    "\n[{}] apt-repo: publish {}/*.deb into {} (suite {}, keep {}), signed by KT_GPG_KEY\n",
                    i + 1,
                    rel(dir),
                    rel(&publish.into),
                    publish.suite,
                    publish.keep
                ),
            };
        }
        out.replace(&root.to_string_lossy().into_owned(), "<root>")
    }
}

fn sign_step(dir: &Path, key: &SigningKey) -> ReleaseStep {
    let to = dir.join("SHA256SUMS.asc");
    let from = crate::fsx::tmp_sibling(&to);
    let command = Command::new("gpg", dir)
        .args(["--batch", "--yes", "--local-user", &key.0, "--armor", "--detach-sign", "--output"])
        .arg(&from)
        .arg(dir.join("SHA256SUMS"));
    ReleaseStep::Sign { command, from, to }
}

/// The whole release, computed before anything runs.
pub fn plan(
    config: &Config,
    tag: &str,
    arches: &[Arch],
    key: Option<&SigningKey>,
    host: Option<Arch>,
) -> Result<ReleasePlan> {
    let configured: Vec<Arch> = config.dist.targets.keys().copied().collect();
    for a in arches {
        if !configured.contains(a) {
            let names: Vec<_> = configured.iter().map(|a| a.name()).collect();
            bail!(
                "--arch {a}: not a target in dist.yaml (targets: {}); add `targets.{a}` or drop the flag",
                names.join(", ")
            );
        }
    }
    let chosen =
        if arches.is_empty() { configured } else { Arch::ALL.into_iter().filter(|a| arches.contains(a)).collect() };
    let dir = config.root.join("release").join(&config.version);
    let mut steps = Vec::new();
    for arch in chosen {
        let native_only = arch.native_only();
        if native_only && host != Some(arch) {
            if arches.contains(&arch) {
                bail!(
                    "--arch {arch}: builds only natively, on an Apple Silicon Mac, and this host is {}; run the release there \
                     (CI's macos-14 job does), or leave {arch} out",
                    host.map_or("unsupported".into(), |h| h.to_string())
                );
            }
            steps.push(ReleaseStep::Skip {
                arch,
                why: "builds only on an Apple Silicon Mac (CI's macos-14 job); `release --merge` takes its manifest"
                    .into(),
            });
            continue;
        }
        let command =
            Command::new("cargo", &config.root).args(["xtask", "dist", "--arch", arch.name(), "--env", "prod"]);
        steps.push(ReleaseStep::Dist { arch, command });
    }
    steps.extend(gather_steps(config, &dir, key)?);
    Ok(ReleasePlan { tag: tag.to_string(), version: config.version.clone(), dir, signed: key.is_some(), steps })
}

/// `release --merge DIR`, CI's publish job: the per-arch manifests another job left in DIR,
/// gathered, signed and published as a full release gathers its own.
pub fn merge_plan(config: &Config, tag: &str, dir: &Path, key: Option<&SigningKey>) -> Result<ReleasePlan> {
    let steps = gather_steps(config, dir, key)?;
    Ok(ReleasePlan {
        tag: tag.to_string(),
        version: config.version.clone(),
        dir: dir.to_path_buf(),
        signed: key.is_some(),
        steps,
    })
}

/// What follows the builds: merge, sign when a key is set, and publish into dist.yaml's
/// apt_repo.into when it is set. A repository is published only signed: unsigned,
/// `cargo xtask apt-repo --unsigned` says so.
fn gather_steps(config: &Config, dir: &Path, key: Option<&SigningKey>) -> Result<Vec<ReleaseStep>> {
    let mut steps = vec![ReleaseStep::Merge { dir: dir.to_path_buf(), version: config.version.clone() }];
    if let Some(k) = key {
        steps.push(sign_step(dir, k));
    }
    if let (Some(_), Some(k)) = (&config.dist.apt_repo.into, key) {
        let publish = crate::apt_repo::Publish::from_config(config, None, Some(k.0.clone()))?;
        steps.push(ReleaseStep::AptRepo { dir: dir.to_path_buf(), publish });
    }
    Ok(steps)
}

pub fn run(config: &Config, args: &ReleaseArgs) -> Result<()> {
    let key = SigningKey::from_env();
    if let Some(dir) = &args.merge {
        check_tag(&args.tag, &config.version)?;
        let dir = if dir.is_absolute() { dir.clone() } else { std::env::current_dir()?.join(dir) };
        let plan = merge_plan(config, &args.tag, &dir, key.as_ref())?;
        if args.dry_run {
            // The checks the merge step makes, without writing.
            merged_for(&dir, &config.version)?;
            print!("{}", plan.render(&config.root));
            return Ok(());
        }
        for step in &plan.steps {
            run_step(step)?;
        }
        return Ok(());
    }
    let facts = git_facts(&config.root, &args.tag)?;
    preconditions(&args.tag, &config.version, &facts)?;
    let plan = plan(config, &args.tag, &args.arches, key.as_ref(), Arch::host())?;
    if args.dry_run {
        print!("{}", plan.render(&config.root));
        return Ok(());
    }
    for step in &plan.steps {
        run_step(step)?;
    }
    eprintln!("release {} is in {}", plan.tag, plan.dir.display());
    Ok(())
}

/// The manifests of `dir` merged (every artifact's size and sha256 checked), refused when
/// they are for another version than the release's.
fn merged_for(dir: &Path, version: &str) -> Result<crate::release_record::Merged> {
    let merged = merge(dir)?;
    if merged.manifest.version != version {
        bail!(
            "{}: the manifests are for version {}, but the tag and electron-app/package.json say {version}; download the artifacts of this tag's run",
            dir.display(),
            merged.manifest.version,
        );
    }
    Ok(merged)
}

fn run_step(step: &ReleaseStep) -> Result<()> {
    match step {
        ReleaseStep::Dist { arch, command } => {
            eprintln!("==> dist {arch}");
            let status = command.to_std().status().with_context(|| format!("cannot run {}", command.shell_line()))?;
            if !status.success() {
                bail!("dist for {arch} failed ({status}): {}; its output is above", command.shell_line());
            }
            Ok(())
        }
        ReleaseStep::Skip { arch, why } => {
            eprintln!("==> skip {arch}: {why}");
            Ok(())
        }
        ReleaseStep::Merge { dir, version } => {
            eprintln!("==> merge {}", dir.display());
            let merged = merged_for(dir, version)?;
            write_merged(dir, &merged)?;
            eprintln!(
                "    merged {} artifacts of {}",
                merged.manifest.artifacts.len(),
                merged.manifest.arches.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        ReleaseStep::Sign { command, from, to } => {
            eprintln!("==> sign {}", to.display());
            let out = crate::process::exec(command)?;
            if !out.success {
                bail!(
                    "gpg could not sign: {}; import the key named by KT_GPG_KEY (`gpg --import`), or unset KT_GPG_KEY for an unsigned release",
                    out.stderr.trim()
                );
            }
            crate::fsx::install(from, to)
        }
        ReleaseStep::AptRepo { dir, publish } => {
            eprintln!("==> apt-repo {}", publish.into.display());
            let p = crate::apt_repo::Publish { debs: crate::apt_repo::debs_in(dir)?, ..publish.clone() };
            let published = crate::apt_repo::publish(&p)?;
            eprintln!("    {} package(s) listed; {}", published.packages.len(), published.sources.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
