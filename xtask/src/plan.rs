//! Typed steps, the plan they form, and the runner.
//!
//! A plan is data: every step knows its inputs, outputs and the exact commands it runs, so
//! `--dry-run` and `--json` show precisely what a real run executes, and the runner decides
//! from stamps alone which steps are up to date.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::{
    arch::Arch,
    engine::Engine,
    fingerprint::{Fingerprint, Stamp, StatCache, Stats},
    fsx,
    process::Command,
};

/// One thing a step does. External work is a `Run`; file moves are done in-process so they
/// can be atomic, and are still shown in the plan.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Run(Command),
    /// Remove a temporary path (before a build: a crashed run's debris; after: scratch).
    Clean {
        path: PathBuf,
    },
    WriteFile {
        path: PathBuf,
        contents: String,
    },
    CopyFile {
        from: PathBuf,
        to: PathBuf,
    },
    /// Rename into place (after chmod 0755 for executables): the finished output appears
    /// all at once.
    Install {
        from: PathBuf,
        to: PathBuf,
        executable: bool,
    },
    /// Hard-link (or copy, across file systems) a large file into a build context.
    Link {
        from: PathBuf,
        to: PathBuf,
    },
    /// Fails with `reason`: what planning found this machine lacks (the plan is still whole).
    Fail {
        reason: String,
    },
    /// Fail unless this host can build the target at all.
    RequireHost {
        arch: Arch,
        fix: String,
    },
    /// doctor's checks of a container engine for one target (reachable, BuildKit, binfmt,
    /// a container of the platform runs, disk space).
    EngineChecks {
        arch: Arch,
        engine: Engine,
        image: String,
    },
    /// verify: every binary under `paths` runs on `arch` (machine, float ABI, interpreter,
    /// glibc floor, libraries inside PyInstaller archives), else the step fails.
    Verify {
        paths: Vec<PathBuf>,
        arch: Arch,
        glibc: Option<crate::config::GlibcVersion>,
    },
    /// `npm install -g PACKAGE` when `tool` is not on PATH.
    EnsureNpmTool {
        tool: String,
        package: String,
    },
    /// Start dockerd in the background when no engine answers (its log at `log`).
    StartDockerd {
        log: PathBuf,
    },
    /// Register QEMU binfmt handlers for these arches from qemu-user-static's definitions.
    RegisterBinfmt {
        arches: Vec<Arch>,
    },
    /// OutputProbe each prerequisite by using it; install the Debian packages of the failed ones
    /// (as root with apt-get) and probe again, or fail with every failure and the command.
    Prerequisites {
        needs: Vec<crate::prereq::Prereq>,
    },
    /// A native one-file service build: PyInstaller, or the installed binary with only its
    /// entry script replaced when that gives the same bytes (see `pyi_repack`).
    BuildService(Box<crate::pyi_repack::ServiceBuild>),
    /// A container build of several services: each one whose entry script alone changed is
    /// repacked from its installed binary, the others are built (see `pyi_repack`).
    CrossBuild(Box<crate::pyi_repack::CrossBuild>),
    /// afterpack: check the unpacked app is for `arch`, inject the services (0755, atomic),
    /// write their manifest.json, verify the whole app.
    Afterpack(Box<crate::afterpack::Spec>),
    /// Write the .deb of an unpacked app (temp file, then rename), every mtime the epoch.
    WriteDeb(Box<crate::deb::AppPackage>),
    /// Without an electronDist electron-builder downloads Electron from GitHub: fail now, not
    /// after the service builds, when it is not cached and GitHub is unreachable.
    RequireElectron {
        /// The zip electron-builder wants, e.g. `electron-v43.8.11-linux-armv7l.zip`.
        zip: String,
        /// The Electron version (a mirror's folder is named for it).
        version: String,
    },
    /// The electronDist `dist` is the Electron the app pins: its `version` file says `version`.
    RequireElectronVersion {
        dist: PathBuf,
        version: String,
    },
    /// A reproducible .tar.gz of the folder `src` (the macOS app bundle).
    WriteTarGz {
        src: PathBuf,
        out: PathBuf,
        epoch: u64,
    },
    /// smoke-test: unpack `rootfs` into `scratch`, `dpkg -i` the .deb there (QEMU runs the
    /// target's binaries), run each service's `--self-test`, check /usr/bin/<package>,
    /// `dpkg -r` and compare the tree with before.
    SmokeTest {
        rootfs: PathBuf,
        deb: PathBuf,
        scratch: PathBuf,
        package: String,
        services: Vec<String>,
    },
    /// smoke-test --upgrade-from: the previous version installed with apt from a signed
    /// repository in the rootfs, upgraded to `deb`, checked, purged (see `smoke::upgrade`).
    SmokeUpgrade(Box<crate::smoke::Upgrade>),
    /// Write `dist-manifest.<arch>.json` for `artifact`, then merge `dir`'s manifests into
    /// SHA256SUMS and dist-manifest.json.
    RecordRelease(Box<crate::release_record::Record>),
}

impl Action {
    fn describe(&self) -> String {
        match self {
            Action::Run(c) => format!("$ {}", c.shell_line()),
            Action::Clean { path } => format!("remove {}", path.display()),
            // The contents too: a dry run shows exactly what is written (a generated Dockerfile).
            Action::WriteFile { path, contents } => {
                let mut text = format!("write {}:", path.display());
                for line in contents.lines() {
                    text.push_str("\n      | ");
                    text.push_str(line);
                }
                text
            }
            Action::CopyFile { from, to } => format!("copy {} -> {}", from.display(), to.display()),
            Action::Install { from, to, executable } => format!(
                "install ({}rename) {} -> {}",
                if *executable { "chmod 755, " } else { "" },
                from.display(),
                to.display()
            ),
            Action::Link { from, to } => format!("link {} -> {}", from.display(), to.display()),
            Action::Fail { reason } => format!("FAILS on this machine: {}", reason.replace('\n', " ")),
            Action::RequireHost { arch, .. } => format!("require a {arch} host"),
            Action::EngineChecks { arch, engine, .. } => format!("doctor: {engine} can build {arch}"),
            Action::Verify { paths, arch, glibc } => {
                let names: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
                let floor = glibc.map(|g| format!(", glibc <= {g}")).unwrap_or_default();
                format!("verify {} runs on {arch}{floor}", names.join(" "))
            }
            Action::EnsureNpmTool { tool, package } => {
                format!("probe `{tool} --version` is {package}'s, else npm install -g {package}")
            }
            Action::StartDockerd { log } => format!("start dockerd unless one answers (log {})", log.display()),
            Action::RegisterBinfmt { arches } => {
                let names: Vec<_> = arches.iter().map(|a| a.name()).collect();
                format!("register QEMU binfmt handlers for {}", names.join(", "))
            }
            Action::Prerequisites { needs } => {
                let probes: Vec<_> = needs.iter().map(|n| n.describe()).collect();
                format!("probe: {}", probes.join("; "))
            }
            Action::BuildService(b) => crate::pyi_repack::describe(b),
            Action::CrossBuild(c) => crate::pyi_repack::describe_cross(c),
            Action::Afterpack(spec) => format!(
                "afterpack: check {} is a {arch} app, inject the services (0755) and manifest.json, verify the app \
                 (= cargo xtask afterpack --app-out-dir {} --arch {arch})",
                spec.app.display(),
                spec.app.display(),
                arch = spec.arch
            ),
            Action::WriteDeb(d) => format!(
                "write {} from {} ({}, SOURCE_DATE_EPOCH={}{}; temp file, verified, then renamed)",
                d.out.display(),
                d.app.unpacked_dir.display(),
                d.app.arch,
                d.app.source_date_epoch,
                match (&d.block_cache, d.compression) {
                    (Some(dir), crate::deb::Compression::Xz { .. }) => {
                        format!("; data.tar.xz blocks reused from and added to {}", dir.display())
                    }
                    _ => String::new(),
                }
            ),
            Action::RequireElectron { zip, .. } => format!(
                "require {zip} in electron-builder's cache, or the ELECTRON_MIRROR or github.com host answering"
            ),
            Action::RequireElectronVersion { dist, version } => format!(
                "require {} to say {version} (electron-app/package.json devDependencies.electron)",
                dist.join("version").display()
            ),
            Action::WriteTarGz { src, out, epoch } => format!(
                "write {} from {} (sorted, root:root, mtime {epoch}; temp file, then rename)",
                out.display(),
                src.display()
            ),
            Action::SmokeTest { rootfs, deb, scratch, package, services } => format!(
                "unpack {} into {}; chroot: dpkg -i {}, {} --self-test, readlink -f /usr/bin/{package}, \
                 dpkg -r {package}; nothing may be left behind",
                rootfs.display(),
                scratch.display(),
                deb.display(),
                services.join(" / ")
            ),
            Action::SmokeUpgrade(u) => u.describe(),
            Action::RecordRelease(r) => {
                let crate::release_record::Record { dir, arch, artifact, electron_dist, .. } = &**r;
                format!(
                    "record {} in {}/dist-manifest.{arch}.json{}, merge into SHA256SUMS and dist-manifest.json",
                    artifact.file_name().unwrap_or_default().to_string_lossy(),
                    dir.display(),
                    electron_dist
                        .as_ref()
                        .map(|d| format!(" (Electron's version from {})", d.join("version").display()))
                        .unwrap_or_default()
                )
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    Preflight,
    /// Create and sync `python-service/.venv` from the requirements.
    Venv,
    /// Put the chosen env's config and the build info where the builds bundle them from.
    StageConfig {
        env: String,
    },
    /// PyInstaller one-file build of one service on this host.
    BuildService {
        service: String,
    },
    /// All services in one container build (parallel BuildKit stages) for a foreign arch.
    CrossBuild {
        services: Vec<String>,
    },
    /// A Debian rootfs tarball of the target's arch (debootstrap).
    Rootfs {
        suite: crate::config::Suite,
    },
    /// A local build-base image made from that rootfs.
    BaseImage {
        tag: String,
    },
    /// electron-app/node_modules from the lockfile.
    NodeModules,
    /// electron-builder's unpacked app (`--dir`), without the services.
    ElectronBuilder {
        unpacked: String,
    },
    /// The services put into the unpacked app, and the app verified.
    Afterpack,
    /// The .deb written natively.
    Deb {
        file: String,
    },
    /// The macOS app as a reproducible .tar.gz.
    Archive {
        file: String,
    },
    /// The artifact recorded in release/<version>/ (SHA256SUMS, dist-manifest.json).
    Release,
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Stable and unique within a plan: the name `--force STEP` takes and the stamp's name.
    pub id: String,
    pub title: String,
    #[serde(flatten)]
    pub kind: StepKind,
    /// Files and folders whose contents decide whether the step must run again.
    pub inputs: Vec<PathBuf>,
    /// Config and tool versions that decide it too (name → value).
    pub values: BTreeMap<String, String>,
    pub outputs: Vec<PathBuf>,
    pub actions: Vec<Action>,
    /// Earlier steps whose outputs this one consumes: when one of them runs, so does this one
    /// (freshness is decided before anything runs, from each step's own inputs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Run every time (checks): never stamped.
    pub always: bool,
    /// Every action is an independent check: all run, and the step fails with every failure
    /// (a preflight names everything missing in one run).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub check_all: bool,
    /// A check that only guards the other steps: skipped when none of them has work.
    pub guard: bool,
    /// Independent of its neighbours that are `parallel` too: a run of such steps runs at once
    /// (PyInstaller is mostly single-threaded; the services share no outputs).
    pub parallel: bool,
    /// Where the stamp lives when not under `target/` (outputs cached outside the checkout
    /// keep their stamp beside them, so a clean clone reuses them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stamp: Option<PathBuf>,
    /// Held while the step runs, waiting for another holder: outputs in a cache that other
    /// checkouts share (a rootfs). Freshness is checked again once it is held, so a second
    /// run uses what the first built instead of building it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<PathBuf>,
    /// For outputs that are not files (an image in the engine's store): up to date when this
    /// command prints `expect`. Replaces the stamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<OutputProbe>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputProbe {
    pub command: Command,
    pub expect: String,
    /// What is missing when the probe fails, for the status line.
    pub missing: String,
}

impl Step {
    pub fn new(id: impl Into<String>, title: impl Into<String>, kind: StepKind) -> Step {
        Step {
            id: id.into(),
            title: title.into(),
            kind,
            inputs: Vec::new(),
            values: BTreeMap::new(),
            outputs: Vec::new(),
            actions: Vec::new(),
            after: Vec::new(),
            always: false,
            check_all: false,
            guard: false,
            parallel: false,
            stamp: None,
            lock: None,
            probe: None,
        }
    }

    /// The step's fingerprint, with the stats of its files for the next stamp. `prior` is the
    /// last stamp's: files whose stat is unchanged keep their hash instead of being read again.
    pub fn fingerprint(&self, root: &Path, prior: Option<&StatCache>) -> Result<(Fingerprint, StatCache)> {
        let mut fp = Fingerprint::default();
        let mut stats = Stats::new(prior);
        for input in &self.inputs {
            fp.add_path(root, fsx::rel(root, input), &mut stats).with_context(|| format!("step `{}`", self.id))?;
        }
        for (k, v) in &self.values {
            fp.add_value(k, v);
        }
        // The commands themselves are an input: a new flag must rebuild. Paths are made
        // relative so a moved checkout does not rebuild everything.
        let root_str = root.to_string_lossy();
        for a in &self.actions {
            fp.add_value("actions", &a.describe().replace(root_str.as_ref(), "<root>"));
        }
        Ok((fp, stats.into_cache()))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    #[serde(flatten)]
    pub header: Header,
    pub root: PathBuf,
    pub steps: Vec<Step>,
}

/// What a plan is for: each command fills what applies to it and leaves the rest out.
#[derive(Clone, Debug, Serialize)]
pub struct Header {
    /// The command, as typed after `cargo xtask`: `dist`, `base-image`, `smoke-test`, `test`.
    pub command: String,
    pub product: String,
    pub version: String,
    /// The target it builds or tests for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    pub host: Option<Arch>,
    /// Which config.<env>.yaml the services bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
}

impl Header {
    pub fn new(command: &str, config: &crate::config::Config) -> Header {
        Header {
            command: command.into(),
            product: config.dist.product.product_name.clone(),
            version: config.version.clone(),
            arch: None,
            host: Arch::host(),
            env: None,
            engine: None,
        }
    }
}

/// Whether a step would run now, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Freshness {
    UpToDate,
    Stale(String),
    Always,
}

impl Plan {
    pub fn stamp_path(&self, step: &Step) -> PathBuf {
        match &step.stamp {
            Some(path) => path.clone(),
            None => {
                let arch = self.header.arch.map_or("host", Arch::name);
                self.root.join("target/xtask/stamps").join(arch).join(format!("{}.json", step.id))
            }
        }
    }

    pub fn freshness(&self, step: &Step) -> Result<Freshness> {
        self.check_freshness(step, false)
    }

    /// `freshness`; with `refresh`, an up-to-date step whose files were hashed again (see
    /// `StatCache::fresher_than`) gets its stamp rewritten with the new stats, same digest,
    /// so the next run reuses those hashes. Only runs refresh: a dry run writes nothing.
    fn check_freshness(&self, step: &Step, refresh: bool) -> Result<Freshness> {
        if step.always {
            return Ok(Freshness::Always);
        }
        if let Some(probe) = &step.probe {
            return Ok(match probe.command.capture() {
                Ok(f) if f == probe.expect => Freshness::UpToDate,
                _ => Freshness::Stale(probe.missing.clone()),
            });
        }
        let path = self.stamp_path(step);
        let Some(stamp) = Stamp::read(&path) else {
            return Ok(Freshness::Stale("never built".into()));
        };
        if let Some(missing) = step.outputs.iter().find(|o| !o.exists()) {
            return Ok(Freshness::Stale(format!("{} is missing", fsx::rel(&self.root, missing).display())));
        }
        let (fp, stats) = step.fingerprint(&self.root, Some(&stamp.stats))?;
        if fp.digest() == stamp.digest {
            // Read again just before writing: a concurrent run that rebuilt the step meanwhile
            // wrote a stamp of its own, which is kept.
            if refresh
                && stats.fresher_than(&stamp.stats)
                && Stamp::read(&path).is_some_and(|now| now.digest == stamp.digest)
            {
                Stamp::write(&path, &fp, &stats)?;
            }
            return Ok(Freshness::UpToDate);
        }
        let mut changed = fp.changed_since(&stamp.fingerprint);
        let more = changed.len().saturating_sub(3);
        changed.truncate(3);
        let mut why = format!("changed: {}", changed.join(", "));
        if more > 0 {
            let _ = write!(why, " and {more} more");
        }
        Ok(Freshness::Stale(why))
    }

    /// Every step's freshness, `--force` applied, a step stale when a step it comes `after`
    /// is due to run (the outputs it consumes will change).
    pub fn all_freshness(&self, force: Option<&Force>) -> Result<Vec<Freshness>> {
        self.all_freshness_with(force, false)
    }

    fn all_freshness_with(&self, force: Option<&Force>, refresh: bool) -> Result<Vec<Freshness>> {
        let mut all: Vec<Freshness> = Vec::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            let upstream = step.after.iter().find(|id| {
                self.steps[..i].iter().zip(&all).any(|(s, f)| &s.id == *id && !matches!(f, Freshness::UpToDate))
            });
            let f = match (force, upstream) {
                (Some(force), _) if force.covers(step) => Freshness::Stale("forced".into()),
                (_, Some(id)) if !step.always => Freshness::Stale(format!("{id} runs first")),
                _ => self.check_freshness(step, refresh)?,
            };
            all.push(f);
        }
        Ok(all)
    }

    /// Check `--force STEP` names a step of this plan (services may be named bare).
    pub fn resolve_force(&self, force: &Force) -> Result<()> {
        if let Force::Step(name) = force
            && !self.steps.iter().any(|s| s.id == *name)
        {
            let ids: Vec<_> = self.steps.iter().map(|s| s.id.as_str()).collect();
            bail!("--force {name}: no such step in this plan; steps are: {}", ids.join(", "));
        }
        Ok(())
    }

    /// The plan as text: what `--dry-run` prints.
    pub fn render(&self, force: &Force) -> Result<String> {
        self.render_with(Some(force))
    }

    /// `force: None` leaves out each step's up-to-date status (for snapshots, which must not
    /// depend on what was built before).
    pub fn render_with(&self, force: Option<&Force>) -> Result<String> {
        let mut out = String::new();
        let h = &self.header;
        let mut line = format!("plan: {} {} {}", h.command, h.product, h.version);
        if let Some(arch) = h.arch {
            let _ = write!(line, " for {arch}");
        }
        if let Some(env) = &h.env {
            let _ = write!(line, " (env {env})");
        }
        let _ = write!(line, ", host {}", h.host.map_or("unsupported".to_string(), |h| h.to_string()));
        if let Some(engine) = &h.engine {
            let _ = write!(line, ", engine {engine}");
        }
        writeln!(out, "{line}")?;
        writeln!(out, "root: {}", self.root.display())?;
        let n = self.steps.len();
        let freshness = match force {
            Some(f) => Some(self.all_freshness(Some(f))?),
            None => None,
        };
        for (i, step) in self.steps.iter().enumerate() {
            let fails = step.actions.iter().any(|a| matches!(a, Action::Fail { .. }));
            let status = match freshness.as_ref().map(|f| &f[i]) {
                _ if fails => "  (will fail on this machine)".to_string(),
                None => String::new(),
                Some(Freshness::UpToDate) => "  (up to date)".to_string(),
                Some(Freshness::Stale(why)) => format!("  (will run: {why})"),
                Some(Freshness::Always) => "  (always runs)".to_string(),
            };
            writeln!(out, "\n[{}/{n}] {} — {}{status}", i + 1, step.id, step.title)?;
            if !step.inputs.is_empty() {
                let ins: Vec<_> = step.inputs.iter().map(|p| fsx::rel(&self.root, p).display().to_string()).collect();
                writeln!(out, "    inputs:  {}", ins.join(", "))?;
            }
            if !step.values.is_empty() {
                let vals: Vec<_> = step.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(out, "    values:  {}", vals.join(", "))?;
            }
            if !step.outputs.is_empty() {
                let outs: Vec<_> = step.outputs.iter().map(|p| fsx::rel(&self.root, p).display().to_string()).collect();
                writeln!(out, "    outputs: {}", outs.join(", "))?;
            }
            if step.parallel {
                writeln!(out, "    runs at the same time as the neighbouring parallel steps")?;
            }
            if !step.after.is_empty() {
                writeln!(out, "    runs again whenever {} runs", step.after.join(" or "))?;
            }
            if let Some(p) = &step.probe {
                writeln!(out, "    up to date when `{}` prints {}", p.command.shell_line(), p.expect)?;
            }
            for a in &step.actions {
                writeln!(out, "    {}", a.describe())?;
            }
        }
        Ok(out)
    }

    /// The plan as JSON. With `force`, each step also has its `status`: `will_run` with the
    /// reason, `up_to_date`, `always_runs`, or `will_fail` with what this machine lacks.
    pub fn to_json_value(&self, force: Option<&Force>) -> Result<serde_json::Value> {
        let mut value = serde_json::to_value(self)?;
        if let Some(force) = force {
            let freshness = self.all_freshness(Some(force))?;
            let steps = value["steps"].as_array_mut().expect("a plan serialises its steps");
            for ((json, step), f) in steps.iter_mut().zip(&self.steps).zip(freshness) {
                let fails = step.actions.iter().find_map(|a| match a {
                    Action::Fail { reason } => Some(reason.clone()),
                    _ => None,
                });
                json["status"] = match (fails, f) {
                    (Some(reason), _) => serde_json::json!({ "status": "will_fail", "reason": reason }),
                    (None, Freshness::UpToDate) => serde_json::json!({ "status": "up_to_date" }),
                    (None, Freshness::Stale(why)) => serde_json::json!({ "status": "will_run", "reason": why }),
                    (None, Freshness::Always) => serde_json::json!({ "status": "always_runs" }),
                };
            }
        }
        Ok(value)
    }
}

/// `--force` (every step) or `--force STEP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Force {
    None,
    All,
    Step(String),
}

impl Force {
    pub fn from_flag(flag: Option<Option<String>>) -> Force {
        match flag {
            None => Force::None,
            Some(None) => Force::All,
            Some(Some(step)) => Force::Step(step),
        }
    }

    fn covers(&self, step: &Step) -> bool {
        match self {
            Force::None => false,
            Force::All => true,
            Force::Step(id) => *id == step.id,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Built,
    Passed,
    /// An `always` step that only probed and installed prerequisites (`test --setup`): nothing
    /// was tested, so it must not read as "ok".
    Ready,
    UpToDate,
    Failed,
    Skipped,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Built => "built",
            Outcome::Passed => "ok",
            Outcome::Ready => "ready",
            Outcome::UpToDate => "up to date",
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub id: String,
    pub outcome: Outcome,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub steps: Vec<StepReport>,
    pub seconds: f64,
}

impl RunReport {
    #[cfg(test)]
    pub fn outcome(&self, id: &str) -> Option<Outcome> {
        self.steps.iter().find(|s| s.id == id).map(|s| s.outcome)
    }

    pub fn table(&self) -> String {
        let w = self.steps.iter().map(|s| s.id.len()).max().unwrap_or(4).max(4);
        let mut out = format!("{:<w$}  {:<10}  {:>8}\n", "step", "result", "seconds");
        for s in &self.steps {
            let _ = writeln!(out, "{:<w$}  {:<10}  {:>8.1}", s.id, s.outcome.label(), s.seconds);
        }
        let _ = writeln!(out, "{:<w$}  {:<10}  {:>8.1}", "total", "", self.seconds);
        out
    }
}

pub struct RunOptions {
    pub force: Force,
    /// Stream every tool's output instead of showing it only on failure.
    pub verbose: bool,
    /// Go on after a failure (independent steps, such as test suites) and report all.
    pub keep_going: bool,
}

/// Run the plan in order. The first failure stops the run (later steps consume its outputs)
/// unless `keep_going` says the steps are independent.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunReport> {
    plan.resolve_force(&opts.force)?;
    let started = Instant::now();
    let mut failed: Vec<anyhow::Error> = Vec::new();
    // Ids of failed steps: a step `after` one of them has no input to work on, even with
    // keep_going.
    let mut failed_ids: Vec<String> = Vec::new();
    let n = plan.steps.len();
    // Decided once, before anything runs: a step's freshness depends on its own inputs and
    // outputs, and on whether a step it comes `after` runs; hashing or probing an engine
    // twice would be wasted.
    let freshness = plan.all_freshness_with(Some(&opts.force), true)?;
    // Checks guard long steps: when every other step is up to date there is nothing to guard,
    // and a no-op run should not start containers to find that out.
    let work = plan.steps.iter().zip(&freshness).any(|(s, f)| !s.guard && *f != Freshness::UpToDate);
    let mut reports: Vec<Option<StepReport>> = (0..n).map(|_| None).collect();
    let mut i = 0;
    while i < n {
        // One step, or a run of consecutive `parallel` steps, decided and run together.
        let end = i + plan.steps[i..].iter().take_while(|s| s.parallel).count().max(1);
        let mut due: Vec<(usize, Option<String>)> = Vec::new();
        for j in i..end {
            let step = &plan.steps[j];
            let skip = (!failed.is_empty() && !opts.keep_going)
                || (step.guard && !work)
                || step.after.iter().any(|a| failed_ids.contains(a));
            let report = |outcome| Some(StepReport { id: step.id.clone(), outcome, seconds: 0.0, reason: None });
            match &freshness[j] {
                _ if skip => reports[j] = report(Outcome::Skipped),
                Freshness::UpToDate => {
                    eprintln!("==> [{}/{n}] {}: up to date", j + 1, step.id);
                    reports[j] = report(Outcome::UpToDate);
                }
                Freshness::Stale(why) => {
                    eprintln!("==> [{}/{n}] {}: {} ({why})", j + 1, step.id, step.title);
                    due.push((j, Some(why.clone())));
                }
                Freshness::Always => {
                    eprintln!("==> [{}/{n}] {}: {}", j + 1, step.id, step.title);
                    due.push((j, None));
                }
            }
        }
        let run_one = |j: usize| {
            let t = Instant::now();
            let result = run_step(plan, &plan.steps[j], opts);
            (result, t.elapsed().as_secs_f64())
        };
        let results: Vec<(Result<bool>, f64)> = if due.len() > 1 {
            std::thread::scope(|scope| {
                let handles: Vec<_> = due.iter().map(|(j, _)| scope.spawn(move || run_one(*j))).collect();
                handles.into_iter().map(|h| h.join().expect("a step thread panicked")).collect()
            })
        } else {
            due.iter().map(|(j, _)| run_one(*j)).collect()
        };
        for ((j, reason), (result, seconds)) in due.into_iter().zip(results) {
            let step = &plan.steps[j];
            let outcome = match result {
                Ok(false) => Outcome::UpToDate,
                Ok(true)
                    if step.always
                        && !step.actions.is_empty()
                        && step.actions.iter().all(|a| matches!(a, Action::Prerequisites { .. })) =>
                {
                    Outcome::Ready
                }
                Ok(true) if step.always => Outcome::Passed,
                Ok(true) => Outcome::Built,
                Err(e) => {
                    failed.push(e.context(format!("step `{}` failed", step.id)));
                    failed_ids.push(step.id.clone());
                    Outcome::Failed
                }
            };
            reports[j] = Some(StepReport { id: step.id.clone(), outcome, seconds, reason });
        }
        i = end;
    }
    let steps = reports.into_iter().map(|r| r.expect("every step is reported")).collect();
    let report = RunReport { steps, seconds: started.elapsed().as_secs_f64() };
    eprintln!("\n{}", report.table());
    if failed.is_empty() {
        return Ok(report);
    }
    let errors: Vec<String> = failed.iter().map(|e| format!("{e:#}")).collect();
    Err(StepsFailed { report, errors }.into())
}

/// A run in which steps failed: each failure, and the report of every step, for `--json`.
#[derive(Debug)]
pub struct StepsFailed {
    pub report: RunReport,
    pub errors: Vec<String>,
}

impl StepsFailed {
    /// The ids of the failed steps.
    pub fn failed_steps(&self) -> Vec<&str> {
        self.report.steps.iter().filter(|s| s.outcome == Outcome::Failed).map(|s| s.id.as_str()).collect()
    }
}

impl std::fmt::Display for StepsFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.errors.as_slice() {
            [one] => f.write_str(one),
            all => write!(f, "{} steps failed:\n{}", all.len(), all.join("\n")),
        }
    }
}

impl std::error::Error for StepsFailed {}

/// Ok(false): another run built the outputs while this one waited for the step's lock.
fn run_step(plan: &Plan, step: &Step, opts: &RunOptions) -> Result<bool> {
    let _lock = match &step.lock {
        Some(path) => {
            let lock = crate::lock::TreeLock::wait(path, &format!("step {}", step.id))?;
            if !matches!(opts.force, Force::All) && plan.freshness(step)? == Freshness::UpToDate {
                eprintln!("    {}: built meanwhile by another run", step.id);
                return Ok(false);
            }
            Some(lock)
        }
        None => None,
    };
    let stamped = !step.always && step.probe.is_none();
    // The stamp records the inputs as they were when the step started (as cargo does): a
    // source saved while a 10-minute build runs is not in the output, so it must not be in the
    // stamp either. The old stamp goes first: a run killed while the step changes its outputs
    // in place (the venv sync) must leave no stamp that calls them up to date.
    let before = if stamped {
        let prior = Stamp::read(&plan.stamp_path(step)).map(|s| s.stats);
        let fp = step.fingerprint(&plan.root, prior.as_ref())?;
        fsx::remove_all(&plan.stamp_path(step))?;
        Some(fp)
    } else {
        None
    };
    run_actions(step, opts)?;
    if let Some((before, stats)) = before {
        let (after, after_stats) = step.fingerprint(&plan.root, Some(&stats))?;
        // The same content: keep the stats taken after the step, because an input written
        // just before it started (the previous step's output) was too recent to trust by
        // stat then, and may not be now, so the next run need not read it again.
        let stats = if after.digest() == before.digest() {
            after_stats
        } else {
            let changed = after.changed_since(&before);
            eprintln!(
                "    note: {} changed while `{}` ran; the output was built from the earlier content, so the next run builds it again",
                changed.join(", "),
                step.id
            );
            stats
        };
        Stamp::write(&plan.stamp_path(step), &before, &stats)?;
    }
    Ok(true)
}

fn run_actions(step: &Step, opts: &RunOptions) -> Result<()> {
    if step.check_all {
        let failed: Vec<String> = step
            .actions
            .iter()
            .filter_map(|a| run_action(a, &step.title, opts).err())
            .map(|e| format!("{e:#}"))
            .collect();
        match failed.len() {
            0 => {}
            1 => bail!("{}", failed[0]),
            n => bail!("{n} checks failed:\n- {}", failed.join("\n- ")),
        }
    }
    for action in step.actions.iter().filter(|_| !step.check_all) {
        run_action(action, &step.title, opts)?;
    }
    Ok(())
}

fn run_action(action: &Action, title: &str, opts: &RunOptions) -> Result<()> {
    match action {
        Action::Run(cmd) => crate::process::run(cmd, title, opts.verbose),
        Action::Clean { path } => fsx::remove_all(path),
        Action::WriteFile { path, contents } => fsx::write_atomic(path, contents.as_bytes()),
        Action::CopyFile { from, to } => {
            let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
            fsx::write_atomic(to, &bytes)
        }
        Action::Install { from, to, executable } => {
            if !from.exists() {
                bail!("the build reported success but did not produce {}", from.display());
            }
            if *executable {
                set_executable(from)?;
            }
            fsx::install(from, to)
        }
        Action::Link { from, to } => {
            fsx::remove_all(to)?;
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            if std::fs::hard_link(from, to).is_err() {
                std::fs::copy(from, to)
                    .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
            }
            Ok(())
        }
        Action::Fail { reason } => bail!("{reason}"),
        Action::Prerequisites { needs } => {
            crate::prereq::ensure(needs, &|cmd, title| crate::process::run(cmd, title, opts.verbose))
        }
        Action::Verify { paths, arch, glibc } => crate::verify::check_release(paths, *arch, *glibc),
        Action::StartDockerd { log } => crate::engine_checks::ensure_dockerd(log),
        Action::EnsureNpmTool { tool, package } => {
            // Probed by running it: the version after `@` in `package` (pnpm@12.18.0) must be
            // the one `TOOL --version` prints, else npm installs that one.
            let wanted = package.rsplit_once('@').map(|(_, v)| v).filter(|v| !v.is_empty());
            let found = Command::new(tool.clone(), Path::new("/")).arg("--version").capture();
            match (&found, wanted) {
                (Ok(v), Some(w)) if v == w => return Ok(()),
                (Ok(_), None) => return Ok(()),
                _ => {}
            }
            let what = match &found {
                Ok(v) => format!("`{tool} --version` is {v}"),
                Err(e) => format!("`{tool}` does not run ({e})"),
            };
            let npm = Command::new("npm", Path::new("/")).args(["install", "-g", package]);
            crate::process::run(&npm, &format!("npm install -g {package}"), opts.verbose)
                .with_context(|| format!("{what} and `npm install -g {package}` failed"))?;
            match Command::new(tool.clone(), Path::new("/")).arg("--version").capture() {
                Ok(v) if wanted.is_none_or(|w| v == w) => Ok(()),
                Ok(v) => bail!(
                    "after `npm install -g {package}`, `{tool} --version` prints {v}: another {tool} comes first on PATH; remove it or put npm's global bin first"
                ),
                Err(e) => bail!(
                    "after `npm install -g {package}`, `{tool}` does not run ({e}): put npm's global bin (`npm prefix -g`/bin) on PATH"
                ),
            }
        }
        Action::RegisterBinfmt { arches } => crate::engine_checks::register_binfmt(arches),
        Action::BuildService(b) => {
            // `--force` asks for the real build.
            let forced = match &opts.force {
                Force::All => true,
                Force::Step(id) => *id == b.service.name,
                Force::None => false,
            };
            crate::pyi_repack::build(b, forced, &|cmd| crate::process::run(cmd, title, opts.verbose)).map(drop)
        }
        Action::CrossBuild(c) => {
            let forced = match &opts.force {
                Force::All => true,
                Force::Step(id) => id == "cross-build" || c.services.iter().any(|s| s.name == *id),
                Force::None => false,
            };
            crate::pyi_repack::cross_build(c, forced, &|cmd| crate::process::run(cmd, title, opts.verbose)).map(drop)
        }
        Action::Afterpack(spec) => crate::afterpack::afterpack(spec).map(drop),
        Action::WriteDeb(plan) => {
            let summary = crate::deb::write_app_package(plan)?;
            if opts.verbose {
                eprintln!("    {} ({} bytes, sha256 {})", summary.path.display(), summary.bytes, summary.sha256);
                if let Some(b) = summary.xz_blocks {
                    eprintln!(
                        "    data.tar.xz: {} blocks, {} compressed ({} stored: incompressible), {} from the block cache ({} corrupt, rebuilt{})",
                        b.blocks,
                        b.compressed,
                        b.stored,
                        b.reused,
                        b.corrupt,
                        if b.cache_purged { "; the cache was emptied after a failed verify pass" } else { "" }
                    );
                }
            }
            Ok(())
        }
        Action::SmokeTest { rootfs, deb, scratch, package, services } => {
            crate::smoke::check(rootfs, deb, scratch, package, services)
        }
        Action::SmokeUpgrade(u) => crate::smoke::upgrade(u),
        Action::RequireElectron { zip, version } => {
            match crate::electron_source::download(version, zip, &crate::electron_source::process_env)? {
                crate::electron_source::Download::Available(_) => Ok(()),
                crate::electron_source::Download::Unchecked(note) => {
                    eprintln!("    note: {note}");
                    Ok(())
                }
            }
        }
        Action::RequireElectronVersion { dist, version } => crate::electron_source::require_dist_version(dist, version),
        Action::WriteTarGz { src, out, epoch } => {
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            crate::deb::write_tar_gz(src, out, *epoch)
        }
        Action::RecordRelease(record) => {
            let m = crate::release_record::arch_manifest(record)?;
            crate::release_record::record(&record.dir, &m).map(drop)
        }
        Action::EngineChecks { arch, engine, image } => {
            crate::engine_checks::preflight(Path::new("/"), *arch, engine, image)
        }
        Action::RequireHost { arch, fix } => {
            if Arch::host() == Some(*arch) {
                Ok(())
            } else {
                bail!(
                    "{arch} cannot be built on this host ({}): {fix}",
                    Arch::host().map_or("unsupported".into(), |h| h.to_string())
                )
            }
        }
    }
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if path.is_file() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_in(root: &Path) -> Plan {
        let mut step = Step::new("hello", "write hello", StepKind::Preflight);
        step.inputs.push(root.join("in.txt"));
        step.outputs.push(root.join("out.txt"));
        step.actions.push(Action::Run(Command::new("sh", root).args(["-c", "cp in.txt out.tmp && echo copied"])));
        step.actions.push(Action::Install { from: root.join("out.tmp"), to: root.join("out.txt"), executable: true });
        let mut failing = Step::new("boom", "fail loudly", StepKind::Preflight);
        failing.actions.push(Action::Run(Command::new("sh", root).args(["-c", "echo some-diagnostic >&2; exit 3"])));
        let mut after = Step::new("after", "never reached", StepKind::Preflight);
        after.always = true;
        let header = Header {
            command: "test".into(),
            product: "p".into(),
            version: "1.0.0".into(),
            arch: Some(Arch::X64),
            host: Some(Arch::X64),
            env: None,
            engine: None,
        };
        Plan { header, root: root.to_path_buf(), steps: vec![step, failing, after] }
    }

    #[test]
    fn runner_builds_then_skips_then_rebuilds_on_change_and_reports_failures() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), "v1").unwrap();
        let mut plan = plan_in(d.path());
        let opts = RunOptions { force: Force::None, verbose: false, keep_going: false };

        // The failing step stops the run, shows the tool's output, and skips what follows.
        let err = format!("{:#}", run(&plan, &opts).unwrap_err());
        assert!(err.contains("step `boom` failed"), "{err}");
        assert!(err.contains("some-diagnostic"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert_eq!(std::fs::read_to_string(d.path().join("out.txt")).unwrap(), "v1");

        plan.steps.remove(1);
        let r = run(&plan, &opts).unwrap();
        assert_eq!(r.outcome("hello"), Some(Outcome::UpToDate));
        assert_eq!(r.outcome("after"), Some(Outcome::Passed));

        std::fs::write(d.path().join("in.txt"), "v2").unwrap();
        assert_eq!(plan.freshness(&plan.steps[0]).unwrap(), Freshness::Stale("changed: in.txt".into()));
        let r = run(&plan, &opts).unwrap();
        assert_eq!(r.outcome("hello"), Some(Outcome::Built));
        assert_eq!(std::fs::read_to_string(d.path().join("out.txt")).unwrap(), "v2");

        // A missing output rebuilds even with a matching stamp; --force STEP rebuilds one.
        std::fs::remove_file(d.path().join("out.txt")).unwrap();
        assert_eq!(plan.freshness(&plan.steps[0]).unwrap(), Freshness::Stale("out.txt is missing".into()));
        run(&plan, &opts).unwrap();
        let forced = RunOptions { force: Force::Step("hello".into()), verbose: false, keep_going: false };
        assert_eq!(run(&plan, &forced).unwrap().outcome("hello"), Some(Outcome::Built));
        let bad = RunOptions { force: Force::Step("nope".into()), verbose: false, keep_going: false };
        let err = run(&plan, &bad).unwrap_err().to_string();
        assert_eq!(err, "--force nope: no such step in this plan; steps are: hello, after");
    }

    #[test]
    fn an_up_to_date_run_records_the_stats_of_inputs_that_were_too_recent_to_trust() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), "v1").unwrap();
        let mut plan = plan_in(d.path());
        plan.steps.truncate(1);
        let opts = RunOptions { force: Force::None, verbose: false, keep_going: false };
        assert_eq!(run(&plan, &opts).unwrap().outcome("hello"), Some(Outcome::Built));
        let stamp = || Stamp::read(&plan.stamp_path(&plan.steps[0])).unwrap();
        let first = stamp();
        // in.txt was written within a second of its hashing: the stamp cannot vouch for it.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (_, now) = plan.steps[0].fingerprint(d.path(), Some(&first.stats)).unwrap();
        assert!(now.fresher_than(&first.stats), "in.txt should have been racy in the first stamp");

        // Checking, rendering and dry runs write nothing.
        assert_eq!(plan.freshness(&plan.steps[0]).unwrap(), Freshness::UpToDate);
        plan.render(&Force::None).unwrap();
        assert_eq!(stamp().stats.taken_ns, first.stats.taken_ns);

        // A run that finds the step up to date keeps its digest and records the new stats,
        // so the run after it reads no file; that run has nothing to rewrite.
        assert_eq!(run(&plan, &opts).unwrap().outcome("hello"), Some(Outcome::UpToDate));
        let second = stamp();
        assert_eq!(second.digest, first.digest);
        assert!(second.stats.taken_ns > first.stats.taken_ns);
        let (_, again) = plan.steps[0].fingerprint(d.path(), Some(&second.stats)).unwrap();
        assert!(!again.fresher_than(&second.stats), "{:?} vs {:?}", again, second.stats);
        run(&plan, &opts).unwrap();
        assert_eq!(stamp().stats.taken_ns, second.stats.taken_ns);
    }

    #[test]
    fn an_explicit_stamp_path_is_used_and_survives_a_clean_tree() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), "v1").unwrap();
        let mut plan = plan_in(d.path());
        plan.steps.truncate(1);
        let cache = d.path().join("cache/hello.stamp.json");
        plan.steps[0].stamp = Some(cache.clone());
        run(&plan, &RunOptions { force: Force::None, verbose: false, keep_going: false }).unwrap();
        assert!(cache.exists());
        assert!(!d.path().join("target").exists(), "no stamp under target/");
        assert_eq!(plan.freshness(&plan.steps[0]).unwrap(), Freshness::UpToDate);
    }

    #[test]
    fn parallel_steps_run_together_and_a_failure_lets_its_siblings_finish() {
        let d = tempfile::tempdir().unwrap();
        let mut plan = plan_in(d.path());
        let sleeper = |id: &str, script: &str| {
            let mut s = Step::new(id, id, StepKind::Preflight);
            s.always = true;
            s.parallel = true;
            s.actions.push(Action::Run(Command::new("sh", d.path()).args(["-c", script])));
            s
        };
        plan.steps = vec![
            sleeper("a", "sleep 1; echo a > a.done"),
            sleeper("b", "sleep 1; echo b > b.done"),
            sleeper("c", "sleep 0.2; exit 4"),
        ];
        let t = Instant::now();
        let err = run(&plan, &RunOptions { force: Force::None, verbose: false, keep_going: false }).unwrap_err();
        let wall = t.elapsed().as_secs_f64();
        assert!(wall < 1.9, "ran one after another: {wall:.2} s");
        assert!(format!("{err:#}").contains("step `c` failed"), "{err:#}");
        assert!(d.path().join("a.done").exists() && d.path().join("b.done").exists());

        // A step after the group does not run once the group failed.
        let mut after = Step::new("after", "after", StepKind::Preflight);
        after.always = true;
        after.actions.push(Action::Run(Command::new("sh", d.path()).args(["-c", "touch after.done"])));
        plan.steps.push(after);
        let _ = run(&plan, &RunOptions { force: Force::None, verbose: false, keep_going: false });
        assert!(!d.path().join("after.done").exists());
    }

    #[test]
    fn a_step_that_only_set_up_prerequisites_is_ready_not_ok() {
        let d = tempfile::tempdir().unwrap();
        let mut plan = plan_in(d.path());
        plan.steps.clear();
        let mut setup = Step::new("suite", "suite", StepKind::Preflight);
        setup.always = true;
        setup
            .actions
            .push(Action::Prerequisites { needs: vec![crate::prereq::Prereq::runs("sh", &["-c", "true"], &[])] });
        let mut tested = Step::new("tested", "tested", StepKind::Preflight);
        tested.always = true;
        tested.actions = setup.actions.clone();
        tested.actions.push(Action::Run(Command::new("sh", d.path()).args(["-c", "true"])));
        plan.steps = vec![setup, tested];
        let r = run(&plan, &RunOptions { force: Force::None, verbose: false, keep_going: false }).unwrap();
        assert_eq!(r.outcome("suite"), Some(Outcome::Ready));
        assert_eq!(r.outcome("tested"), Some(Outcome::Passed));
        assert!(r.table().lines().any(|l| l.split_whitespace().take(2).eq(["suite", "ready"])), "{}", r.table());
    }

    #[test]
    fn guards_run_only_when_another_step_has_work() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), "v1").unwrap();
        let mut plan = plan_in(d.path());
        plan.steps.truncate(1);
        let mut guard = Step::new("preflight", "check", StepKind::Preflight);
        guard.always = true;
        guard.guard = true;
        // The guard leaves a trace each time it really runs.
        guard.actions.push(Action::Run(Command::new("sh", d.path()).args(["-c", "echo x >> guard.log"])));
        plan.steps.insert(0, guard);
        let opts = RunOptions { force: Force::None, verbose: false, keep_going: false };
        assert_eq!(run(&plan, &opts).unwrap().outcome("preflight"), Some(Outcome::Passed));
        assert_eq!(run(&plan, &opts).unwrap().outcome("preflight"), Some(Outcome::Skipped));
        let forced = RunOptions { force: Force::Step("hello".into()), ..opts };
        assert_eq!(run(&plan, &forced).unwrap().outcome("preflight"), Some(Outcome::Passed));
        assert_eq!(std::fs::read_to_string(d.path().join("guard.log")).unwrap(), "x\nx\n");
    }

    #[test]
    fn a_check_all_step_runs_every_check_and_reports_every_failure() {
        let d = tempfile::tempdir().unwrap();
        let mut plan = plan_in(d.path());
        let mut s = Step::new("preflight", "checks", StepKind::Preflight);
        s.always = true;
        s.check_all = true;
        s.actions.push(Action::Fail { reason: "no engine here".into() });
        s.actions.push(Action::Run(Command::new("sh", d.path()).args(["-c", "touch second.ran; exit 4"])));
        s.actions.push(Action::Run(Command::new("sh", d.path()).args(["-c", "touch third.ran"])));
        plan.steps = vec![s];
        let err = format!(
            "{:#}",
            run(&plan, &RunOptions { force: Force::None, verbose: false, keep_going: false }).unwrap_err()
        );
        assert!(err.contains("2 checks failed:\n- no engine here\n- command failed (exit status: 4)"), "{err}");
        assert!(d.path().join("second.ran").exists() && d.path().join("third.ran").exists());
        // Without check_all the first failure stops the step.
        plan.steps[0].check_all = false;
        std::fs::remove_file(d.path().join("third.ran")).unwrap();
        let err = run(&plan, &RunOptions { force: Force::None, verbose: false, keep_going: false }).unwrap_err();
        assert!(format!("{err:#}").ends_with("no engine here"), "{err:#}");
        assert!(!d.path().join("third.ran").exists());
    }

    #[test]
    fn an_input_edited_while_the_step_runs_is_built_by_the_next_run() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), "v1").unwrap();
        let mut plan = plan_in(d.path());
        plan.steps.truncate(1);
        // The step reads its input, then the input is saved again before the step ends.
        plan.steps[0].actions.insert(1, Action::Run(Command::new("sh", d.path()).args(["-c", "echo v2 > in.txt"])));
        let opts = RunOptions { force: Force::None, verbose: false, keep_going: false };
        assert_eq!(run(&plan, &opts).unwrap().outcome("hello"), Some(Outcome::Built));
        assert_eq!(std::fs::read_to_string(d.path().join("out.txt")).unwrap(), "v1");
        // The stamp holds v1, so the step is not up to date with v2.
        assert_eq!(plan.freshness(&plan.steps[0]).unwrap(), Freshness::Stale("changed: in.txt".into()));
        plan.steps[0].actions.remove(1);
        assert_eq!(run(&plan, &opts).unwrap().outcome("hello"), Some(Outcome::Built));
        assert_eq!(std::fs::read_to_string(d.path().join("out.txt")).unwrap(), "v2\n");
        assert_eq!(run(&plan, &opts).unwrap().outcome("hello"), Some(Outcome::UpToDate));
    }

    #[test]
    fn a_step_that_starts_removes_its_old_stamp_first() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), "v1").unwrap();
        let mut plan = plan_in(d.path());
        plan.steps.truncate(1);
        let opts = RunOptions { force: Force::None, verbose: false, keep_going: false };
        run(&plan, &opts).unwrap();
        assert_eq!(plan.freshness(&plan.steps[0]).unwrap(), Freshness::UpToDate);
        // A forced rebuild changes the output in place, then dies (a Ctrl-C): the old stamp
        // must not survive to call the half-changed output up to date.
        plan.steps[0]
            .actions
            .insert(0, Action::Run(Command::new("sh", d.path()).args(["-c", "echo half > out.txt; exit 9"])));
        let forced = RunOptions { force: Force::All, verbose: false, keep_going: false };
        assert!(run(&plan, &forced).is_err());
        assert_eq!(plan.freshness(&plan.steps[0]).unwrap(), Freshness::Stale("never built".into()));
    }

    #[test]
    fn a_locked_step_waits_and_uses_what_another_run_built_meanwhile() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), "v1").unwrap();
        let mut plan = plan_in(d.path());
        plan.steps.truncate(1);
        plan.steps[0].actions.insert(0, Action::Run(Command::new("sh", d.path()).args(["-c", "echo ran >> runs.log"])));
        let lock = d.path().join("cache/x.lock");
        plan.steps[0].lock = Some(lock.clone());
        // Another run holds the cache entry and is building it.
        let other = crate::lock::TreeLock::acquire(&lock, "the other run").unwrap();
        let waiting = {
            let plan = plan.clone();
            std::thread::spawn(move || {
                run(&plan, &RunOptions { force: Force::None, verbose: false, keep_going: false })
                    .unwrap()
                    .outcome("hello")
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!waiting.is_finished(), "the step did not wait for the lock");
        std::fs::write(d.path().join("out.txt"), "v1").unwrap();
        let (fp, stats) = plan.steps[0].fingerprint(d.path(), None).unwrap();
        Stamp::write(&plan.stamp_path(&plan.steps[0]), &fp, &stats).unwrap();
        drop(other);
        assert_eq!(waiting.join().unwrap(), Some(Outcome::UpToDate));
        assert!(!d.path().join("runs.log").exists(), "the step ran although the other run had built it");
    }

    #[test]
    fn keep_going_still_skips_the_steps_after_a_failed_one() {
        let d = tempfile::tempdir().unwrap();
        let mut plan = plan_in(d.path());
        let step = |id: &str, script: &str, after: &[&str]| {
            let mut s = Step::new(id, id, StepKind::Preflight);
            s.always = true;
            s.after = after.iter().map(|a| a.to_string()).collect();
            s.actions.push(Action::Run(Command::new("sh", d.path()).args(["-c", script])));
            s
        };
        plan.steps = vec![
            step("setup", "exit 1", &[]),
            step("uses-setup", "touch uses.ran", &["setup"]),
            step("independent", "touch independent.ran", &[]),
        ];
        let err = run(&plan, &RunOptions { force: Force::None, verbose: false, keep_going: true }).unwrap_err();
        let failed = err.downcast_ref::<StepsFailed>().unwrap();
        let outcomes: Vec<_> = failed.report.steps.iter().map(|s| s.outcome).collect();
        assert_eq!(outcomes, [Outcome::Failed, Outcome::Skipped, Outcome::Passed]);
        assert!(!d.path().join("uses.ran").exists() && d.path().join("independent.ran").exists());
    }

    #[test]
    fn a_failed_step_writes_no_stamp_and_leaves_the_old_output() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), "v1").unwrap();
        std::fs::write(d.path().join("out.txt"), "old").unwrap();
        let mut plan = plan_in(d.path());
        plan.steps[0].actions.insert(1, Action::Run(Command::new("false", d.path())));
        assert!(run(&plan, &RunOptions { force: Force::None, verbose: false, keep_going: false }).is_err());
        assert_eq!(std::fs::read_to_string(d.path().join("out.txt")).unwrap(), "old");
        assert!(!plan.stamp_path(&plan.steps[0]).exists());
    }
}
