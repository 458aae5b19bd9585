//! What this host has, probed once per command: tool versions, the CA bundle, the cache
//! folder, the environment variables that steer a build, the commit time. Plans take these
//! facts as data, so a test can fix them and a plan says what it was made from.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{config::Config, process::Command};

/// Set to an unpacked Electron for the target (electron-builder's `electronDist`; `{arch}`
/// is replaced by the target's name); overrides dist.yaml `electron.dist`.
pub const ELECTRON_DIST_ENV: &str = "KT_ELECTRON_DIST";

/// The host CA bundle that TLS to the package registries needs (a proxy CA here; the public
/// roots elsewhere). Handed to container builds as a BuildKit secret.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Facts about the host's tools that the plan needs and a test can fix.
#[derive(Clone, Debug)]
pub struct Host {
    /// `python3 --version` of the configured interpreter, when found.
    pub python: Option<String>,
    /// The CA bundle to hand to container builds, when the host has one.
    pub ca_bundle: Option<PathBuf>,
    /// `KT_VENV`: use this venv instead of `python-service/.venv` (the tests share one).
    pub venv: Option<PathBuf>,
    /// `DOCKER`: the docker client to drive, over dist.yaml's `docker.executable`, because the
    /// right one differs between machines (here /usr/bin/docker has BuildKit built in).
    pub docker: Option<String>,
    /// Where rootfs tarballs and other slow set-up are cached between runs and clones.
    pub cache: PathBuf,
    /// The PATH engines are detected on.
    pub path: std::ffi::OsString,
    /// `KT_ELECTRON_DIST`: an unpacked Electron for electron-builder, over dist.yaml's.
    pub electron_dist: Option<String>,
    /// SOURCE_DATE_EPOCH, else the commit time; why not, when neither is there.
    pub source_date_epoch: std::result::Result<u64, String>,
    /// `node --version`: electron-builder runs on it.
    pub node: Option<String>,
    /// The checkout's commit and whether it has uncommitted changes; why not, outside git.
    pub git: std::result::Result<(String, bool), String>,
}

impl Host {
    pub fn probe(config: &Config) -> Host {
        // The probes start processes (a pyenv shim's `python3 --version` alone takes ~60 ms);
        // they run side by side, because every `dist`, a no-op too, waits for all of them.
        let (python, node, source_date_epoch, git) = std::thread::scope(|s| {
            let python = s.spawn(|| tool_version(&config.dist.python.interpreter));
            let node = s.spawn(|| tool_version("node"));
            let epoch = s.spawn(|| source_date_epoch(&config.root).map_err(|e| format!("{e:#}")));
            let git = git_state(&config.root).map_err(|e| format!("{e:#}"));
            let joined = "a host probe panicked";
            (python.join().expect(joined), node.join().expect(joined), epoch.join().expect(joined), git)
        });
        let ca = Path::new(CA_BUNDLE);
        Host {
            python,
            ca_bundle: ca.exists().then(|| ca.to_path_buf()),
            venv: std::env::var_os("KT_VENV").filter(|v| !v.is_empty()).map(PathBuf::from),
            docker: std::env::var("DOCKER").ok().filter(|d| !d.is_empty()),
            cache: cache_dir(),
            path: std::env::var_os("PATH").unwrap_or_default(),
            electron_dist: std::env::var(ELECTRON_DIST_ENV).ok().filter(|d| !d.is_empty()),
            source_date_epoch,
            node,
            git,
        }
    }

    /// Fixed host facts for tests, the same on every machine: Python 3.11, a docker client with
    /// BuildKit built in, an electronDist per arch at `electron_dist`.
    #[cfg(test)]
    pub fn fixed(electron_dist: &str) -> Host {
        Host {
            python: Some("Python 3.11.7".into()),
            ca_bundle: Some(CA_BUNDLE.into()),
            venv: None,
            docker: None,
            cache: "/var/cache/kitchntabs".into(),
            path: crate::engine::tests::fake_path(&["buildkit"]),
            electron_dist: Some(electron_dist.into()),
            source_date_epoch: Ok(1_767_323_045),
            node: Some("v20.19.0".into()),
            git: Ok(("0123456789abcdef0123456789abcdef01234567".into(), false)),
        }
    }
}

/// `TOOL --version`, when the tool runs: a fingerprint value for the tools a step calls.
pub fn tool_version(tool: &str) -> Option<String> {
    Command::new(tool, Path::new("/")).arg("--version").capture().ok()
}

/// `KT_CACHE_DIR`, else the system cache `/var/cache/kitchntabs` for root (debootstrap needs
/// root anyway, and CI runs as root), else the user's XDG cache.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if crate::fsx::is_root() {
        return PathBuf::from("/var/cache/kitchntabs");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"));
    base.join("kitchntabs")
}

/// The commit of `root` (`git rev-parse HEAD`) and whether the tree has uncommitted changes.
pub fn git_state(root: &Path) -> Result<(String, bool)> {
    let git = |args: &[&str]| crate::process::Command::new("git", root).args(args).capture();
    let commit = git(&["rev-parse", "HEAD"])
        .map_err(|e| anyhow::anyhow!("{} is not a git checkout with a commit ({e}); commit first", root.display()))?;
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).unwrap_or_default().is_empty();
    Ok((commit, dirty))
}

/// SOURCE_DATE_EPOCH from the environment, else the time of the commit at `root`.
pub fn source_date_epoch(root: &Path) -> Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds; unset it to use the commit time")
        });
    }
    let out = crate::process::Command::new("git", root).args(["log", "-1", "--format=%ct"]).capture().map_err(|e| {
        anyhow::anyhow!(
            "cannot read the commit time of {} ({e}): commit first, or set SOURCE_DATE_EPOCH",
            root.display()
        )
    })?;
    out.parse().with_context(|| format!("`git log -1 --format=%ct` printed {out:?}"))
}
