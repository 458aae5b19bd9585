//! `cargo xtask release --tag vX.Y.Z`: refuse what would make a wrong release (a dirty tree, a
//! tag that is not HEAD, a tag that is not the package version), then plan `dist --env prod`
//! for each arch, merge the per-arch manifests into one SHA256SUMS and one dist-manifest.json,
//! and sign SHA256SUMS when a key is configured. `--merge DIR` does only the gathering, for
//! CI's publish job, which downloads every arch's `release/<version>/` into DIR.
//!
//! darwin-arm64 builds only on macOS: on another host it is skipped with a note when it comes
//! from dist.yaml (CI's macos-14 job builds it, and `--merge` takes its manifest), and refused
//! when asked for with `--arch`, since that release could not be what was asked.
//!
//! The per-arch contract with `dist`: it writes `release/<version>/<artifact>` and
//! `release/<version>/dist-manifest.<arch>.json` listing each artifact's size and sha256.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::{arch::Arch, config::Config, plan::Command};

#[derive(Args)]
pub struct ReleaseArgs {
    /// The release tag: `v` and the version in electron-app/package.json, e.g. v1.0.0.
    #[arg(long)]
    pub tag: String,
    /// Print the plan (the exact commands) after the checks, without running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Release only these arches (repeatable). Default: every target in dist.yaml.
    #[arg(long = "arch", value_parser = crate::parse_arch)]
    pub arches: Vec<Arch>,
    /// Only merge (and sign) the per-arch manifests already in DIR: CI's publish job.
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

fn git(root: &Path, args: &[&str]) -> Result<crate::check::Output> {
    crate::check::exec(&Command::new("git", root).args(args))
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
    /// Check every artifact against its manifest; write SHA256SUMS and dist-manifest.json.
    Merge { dir: PathBuf },
    /// `gpg --detach-sign --armor` SHA256SUMS into SHA256SUMS.asc (through a temporary file).
    Sign { command: Command, from: PathBuf, to: PathBuf },
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
                ReleaseStep::Merge { dir } => write!(
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
        let native_only = arch.docker_platform().is_none();
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
    steps.push(ReleaseStep::Merge { dir: dir.clone() });
    if let Some(k) = key {
        steps.push(sign_step(&dir, k));
    }
    Ok(ReleasePlan { tag: tag.to_string(), version: config.version.clone(), dir, signed: key.is_some(), steps })
}

pub fn run(config: &Config, args: &ReleaseArgs) -> Result<()> {
    let key = SigningKey::from_env();
    if let Some(dir) = &args.merge {
        check_tag(&args.tag, &config.version)?;
        let dir = if dir.is_absolute() { dir.clone() } else { std::env::current_dir()?.join(dir) };
        let merged = merge(&dir)?;
        if merged.manifest.version != config.version {
            bail!(
                "{}: the manifests are for version {}, but the tag and electron-app/package.json say {}; download the artifacts of this tag's run",
                dir.display(),
                merged.manifest.version,
                config.version
            );
        }
        write_merged(&dir, &merged)?;
        eprintln!(
            "merged {} artifacts of {} into {}",
            merged.manifest.artifacts.len(),
            merged.manifest.arches.join(", "),
            dir.display()
        );
        if let Some(k) = &key {
            run_step(&sign_step(&dir, k))?;
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

fn run_step(step: &ReleaseStep) -> Result<()> {
    match step {
        ReleaseStep::Dist { arch, command } => {
            eprintln!("==> dist {arch}");
            let status = std::process::Command::new(&command.program)
                .args(&command.args)
                .current_dir(&command.cwd)
                .status()
                .with_context(|| format!("cannot run {}", command.shell_line()))?;
            if !status.success() {
                bail!("dist for {arch} failed ({status}): {}; its output is above", command.shell_line());
            }
            Ok(())
        }
        ReleaseStep::Skip { arch, why } => {
            eprintln!("==> skip {arch}: {why}");
            Ok(())
        }
        ReleaseStep::Merge { dir } => {
            eprintln!("==> merge {}", dir.display());
            write_merged(dir, &merge(dir)?)
        }
        ReleaseStep::Sign { command, from, to } => {
            eprintln!("==> sign {}", to.display());
            let out = crate::check::exec(command)?;
            if !out.success {
                bail!(
                    "gpg could not sign: {}; import the key named by KT_GPG_KEY (`gpg --import`), or unset KT_GPG_KEY for an unsigned release",
                    out.stderr.trim()
                );
            }
            crate::fsx::install(from, to)
        }
    }
}

/// One file of a release, as dist's manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub file: String,
    pub arch: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub arch: String,
}

/// `release/<version>/dist-manifest.<arch>.json`, as dist writes it.
#[derive(Clone, Debug, Deserialize)]
pub struct ArchManifest {
    pub version: String,
    pub arch: String,
    pub git_commit: String,
    #[serde(deserialize_with = "epoch")]
    pub source_date_epoch: u64,
    pub artifacts: Vec<Artifact>,
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    #[serde(default)]
    pub tools: serde_json::Value,
}

/// SOURCE_DATE_EPOCH as a number or a numeric string (it is an environment variable).
fn epoch<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => {
            n.as_u64().ok_or_else(|| serde::de::Error::custom("source_date_epoch must be >= 0"))
        }
        serde_json::Value::String(s) => {
            s.parse().map_err(|_| serde::de::Error::custom(format!("source_date_epoch `{s}` is not a number")))
        }
        other => Err(serde::de::Error::custom(format!("source_date_epoch must be a number, got {other}"))),
    }
}

/// The release's one manifest: every arch's artifacts, services and tools.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedManifest {
    pub version: String,
    pub git_commit: String,
    pub source_date_epoch: u64,
    pub arches: Vec<String>,
    pub artifacts: Vec<Artifact>,
    /// arch → its services.
    pub services: BTreeMap<String, Vec<ServiceEntry>>,
    /// arch → the tool versions its build used.
    pub tools: BTreeMap<String, serde_json::Value>,
}

pub struct Merged {
    /// `sha256sum -c` input: `<sha256>  <file>` per artifact, sorted by file.
    pub sums: String,
    pub manifest: MergedManifest,
}

fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, format!("{:x}", hasher.finalize())))
}

/// Read every `dist-manifest.<arch>.json` in `dir`, check each artifact on disk against it,
/// and compute the merged SHA256SUMS and manifest. Writes nothing.
pub fn merge(dir: &Path) -> Result<Merged> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let arch = name.strip_prefix("dist-manifest.")?.strip_suffix(".json")?.to_string();
            Some((arch, e.path()))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        bail!(
            "{}: no dist-manifest.<arch>.json; build with `cargo xtask dist --arch ARCH --env prod`, or download every dist job's release/<version>/ into it",
            dir.display()
        );
    }
    let mut manifests: Vec<(String, ArchManifest)> = Vec::new();
    for (arch, path) in &found {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let m: ArchManifest = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a dist manifest (line {})",
                path.display(),
                serde_json::from_str::<serde_json::Value>(&text).err().map_or(0, |e| e.line())
            )
        })?;
        if m.arch != *arch {
            bail!("{}: says arch `{}` but its name says `{arch}`; rebuild that arch with dist", path.display(), m.arch);
        }
        manifests.push((name, m));
    }
    let (first_name, first) = &manifests[0];
    for (name, m) in &manifests[1..] {
        for (field, a, b) in [
            ("version", m.version.clone(), first.version.clone()),
            ("git_commit", m.git_commit.clone(), first.git_commit.clone()),
            ("source_date_epoch", m.source_date_epoch.to_string(), first.source_date_epoch.to_string()),
        ] {
            if a != b {
                bail!(
                    "{name} has {field} {a} but {first_name} has {b}: every arch of a release must be built from the same commit; \
                     rebuild the odd one out from the tagged commit"
                );
            }
        }
    }
    let mut artifacts: Vec<Artifact> = Vec::new();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    for (name, m) in &manifests {
        for a in &m.artifacts {
            let plain = !a.file.is_empty()
                && !a.file.contains('/')
                && !a.file.contains('\\')
                && a.file != "."
                && a.file != "..";
            if !plain {
                bail!("{name}: artifact `{}` is not a file name in the release folder", a.file);
            }
            if let Some(other) = from.insert(a.file.clone(), name.clone()) {
                bail!("{}: listed by both {other} and {name}; each artifact belongs to one arch", a.file);
            }
            let path = dir.join(&a.file);
            if !path.is_file() {
                bail!(
                    "{}: listed in {name} but missing; download or rebuild that arch's release folder",
                    path.display()
                );
            }
            let (size, sha) = sha256_file(&path)?;
            if size != a.size {
                bail!(
                    "{}: {size} bytes, but {name} says {}; the file changed after dist wrote the manifest: rebuild that arch",
                    path.display(),
                    a.size
                );
            }
            if sha != a.sha256.to_ascii_lowercase() {
                bail!(
                    "{}: sha256 {sha}, but {name} says {}; the file changed after dist wrote the manifest: rebuild that arch",
                    path.display(),
                    a.sha256
                );
            }
            artifacts.push(a.clone());
        }
    }
    artifacts.sort_by(|a, b| a.file.cmp(&b.file));
    let mut sums = String::new();
    for a in &artifacts {
        let _ = writeln!(sums, "{}  {}", a.sha256.to_ascii_lowercase(), a.file);
    }
    let manifest = MergedManifest {
        version: first.version.clone(),
        git_commit: first.git_commit.clone(),
        source_date_epoch: first.source_date_epoch,
        arches: manifests.iter().map(|(_, m)| m.arch.clone()).collect(),
        artifacts,
        services: manifests.iter().map(|(_, m)| (m.arch.clone(), m.services.clone())).collect(),
        tools: manifests.iter().map(|(_, m)| (m.arch.clone(), m.tools.clone())).collect(),
    };
    Ok(Merged { sums, manifest })
}

/// SHA256SUMS and dist-manifest.json, each written through a temporary file and a rename.
pub fn write_merged(dir: &Path, merged: &Merged) -> Result<()> {
    crate::fsx::write_atomic(&dir.join("SHA256SUMS"), merged.sums.as_bytes())?;
    let json = serde_json::to_string_pretty(&merged.manifest)? + "\n";
    crate::fsx::write_atomic(&dir.join("dist-manifest.json"), json.as_bytes())
}

#[cfg(test)]
mod tests;
