//! package.json files: the Electron app's manifest, read once per command (the product
//! version, the pinned Electron, the pinned pnpm), and installed modules' manifests.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Where the Electron app lives in a checkout, and its manifest.
pub const APP_DIR: &str = "electron-app";

/// A package.json, parsed; errors name the file.
pub fn read(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// What the build needs from electron-app/package.json. A field that is wrong is an error
/// only where it is used (`verify` needs no pnpm pin).
#[derive(Clone, Debug)]
pub struct AppManifest {
    /// `devDependencies.electron`, an exact version.
    electron: std::result::Result<String, String>,
    /// `packageManager`, `pnpm@<version>`.
    pnpm: std::result::Result<String, String>,
}

impl AppManifest {
    pub fn read(root: &Path) -> Result<AppManifest> {
        let path = root.join(APP_DIR).join("package.json");
        let json = read(&path)?;
        let electron = json["devDependencies"]["electron"]
            .as_str()
            .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
            .map(str::to_string)
            .ok_or_else(|| format!("{}: devDependencies.electron must pin an exact version", path.display()));
        let pnpm = json["packageManager"]
            .as_str()
            .filter(|p| p.starts_with("pnpm@"))
            .map(str::to_string)
            .ok_or_else(|| format!("{}: packageManager must pin pnpm, e.g. \"pnpm@12.18.0\"", path.display()));
        Ok(AppManifest { electron, pnpm })
    }

    /// The Electron the app is built against.
    pub fn electron(&self) -> Result<&str> {
        self.electron.as_deref().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// `pnpm@12.18.0`.
    pub fn pnpm(&self) -> Result<&str> {
        self.pnpm.as_deref().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// `version` of the package.json at `path`: MAJOR.MINOR.PATCH (with an optional pre-release).
pub fn version(path: &Path) -> Result<String> {
    let json = read(path)?;
    let version = json
        .get("version")
        .and_then(|v| v.as_str())
        .with_context(|| format!("{} has no string field \"version\"; add \"version\": \"1.0.0\"", path.display()))?;
    let valid = version.split('.').count() == 3
        && version.split(['.', '-', '+']).take(3).all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        bail!("{}: version `{version}` is not MAJOR.MINOR.PATCH", path.display());
    }
    Ok(version.to_string())
}
