//! Where electron-builder's Electron comes from, and whether it is the one the app pins: an
//! electronDist's own `version` file, @electron/get's cache, ELECTRON_MIRROR and the other
//! download variables, github.com.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::arch::Arch;

/// What an unpacked Electron says it is: its `version` file (`43.8.11`), which every Electron
/// release zip holds beside the executable.
pub fn dist_version(dist: &Path) -> Result<String> {
    let path = dist.join("version");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{} is missing: {} is not an unpacked Electron (every Electron release zip holds a `version` file); \
             point KT_ELECTRON_DIST (or dist.yaml electron.dist) at an unpacked Electron",
            path.display(),
            dist.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The electronDist is the Electron the app pins: electron-builder packs whatever it is given,
/// and the release records what it packed.
pub fn require_dist_version(dist: &Path, pinned: &str) -> Result<()> {
    let found = dist_version(dist)?;
    if found != pinned {
        anyhow::bail!(
            "{} says Electron {found}, but electron-app/package.json devDependencies.electron pins {pinned}: \
             point KT_ELECTRON_DIST (or dist.yaml electron.dist) at an unpacked Electron {pinned} of this arch, \
             or pin {found} in package.json (and its lockfile)",
            dist.join("version").display()
        );
    }
    Ok(())
}

/// Reads an environment variable; tests pass their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The Electron zip electron-builder downloads for `arch` when it has no electronDist
/// (`ELECTRON_CUSTOM_FILENAME` replaces the name, as @electron/get does).
pub fn electron_zip(version: &str, arch: Arch, env: Env) -> Result<String> {
    if let Some(name) = env_var(env, &["ELECTRON_CUSTOM_FILENAME", "npm_config_electron_custom_filename"]) {
        return Ok(name);
    }
    let (platform, arch) = arch.electron_release();
    Ok(format!("electron-v{version}-{platform}-{arch}.zip"))
}

/// The first of these variables that is set and not empty (@electron/get reads the npm
/// config spellings too).
fn env_var(env: Env, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()))
}

/// Where @electron/get caches downloads: ELECTRON_CACHE (or electron_config_cache), else the
/// user cache folder.
fn electron_cache(env: Env) -> PathBuf {
    if let Some(d) = env_var(env, &["ELECTRON_CACHE", "electron_config_cache"]) {
        return PathBuf::from(d);
    }
    let home = PathBuf::from(env_var(env, &["HOME"]).unwrap_or_else(|| "/root".into()));
    if cfg!(target_os = "macos") {
        return home.join("Library/Caches/electron");
    }
    env_var(env, &["XDG_CACHE_HOME"]).map_or(home.join(".cache"), PathBuf::from).join("electron")
}

/// @electron/get keeps each download in a folder named for its URL, one level down.
fn cached(cache: &Path, zip: &str) -> Option<PathBuf> {
    walkdir::WalkDir::new(cache)
        .max_depth(2)
        .into_iter()
        .flatten()
        .find(|e| e.file_type().is_file() && e.file_name() == zip)
        .map(|e| e.into_path())
}

/// Where electron-builder's download of Electron would come from, or why it cannot.
#[derive(Debug, PartialEq, Eq)]
pub enum Download {
    /// It can: from where.
    Available(String),
    /// Through a proxy this machine cannot look past: not checked, said so.
    Unchecked(String),
}

/// A TCP connection to `host:port` within 3 s: the host resolves and something answers.
fn connects(host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host, port).to_socket_addrs() else { return false };
    addrs.into_iter().any(|a| std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(3)).is_ok())
}

/// `https://host:port/path` → (host, port).
fn url_host(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?.rsplit('@').next()?;
    let default = if scheme == "http" { 80 } else { 443 };
    match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => Some((h.to_string(), p.parse().ok()?)),
        _ => Some((authority.to_string(), default)),
    }
}

/// Without an electronDist electron-builder downloads `zip` through @electron/get: from its
/// cache, from ELECTRON_MIRROR (+ ELECTRON_CUSTOM_DIR, default `v<version>`), or from
/// github.com, through a proxy when HTTPS_PROXY says so. Err: none of them can serve it.
pub fn download(version: &str, zip: &str, env: Env) -> Result<Download> {
    let cache = electron_cache(env);
    if let Some(hit) = cached(&cache, zip) {
        return Ok(Download::Available(format!("cached at {}", hit.display())));
    }
    let fix = "point KT_ELECTRON_DIST (or dist.yaml electron.dist) at an unpacked Electron of this version and arch, \
               e.g. `KT_ELECTRON_DIST=/opt/electron/{arch} cargo xtask dist`, or ELECTRON_MIRROR at a mirror that has it";
    if let Some(mirror) = env_var(env, &["ELECTRON_MIRROR", "npm_config_electron_mirror", "NPM_CONFIG_ELECTRON_MIRROR"])
    {
        let dir = match env_var(env, &["ELECTRON_CUSTOM_DIR", "npm_config_electron_custom_dir"]) {
            Some(d) => d.replace("{{ version }}", version),
            None => format!("v{version}"),
        };
        let url = format!("{}/{dir}/{zip}", mirror.trim_end_matches('/'));
        if let Some(path) = url.strip_prefix("file://") {
            if Path::new(path).is_file() {
                return Ok(Download::Available(format!("ELECTRON_MIRROR file {path}")));
            }
            anyhow::bail!(
                "ELECTRON_MIRROR gives {url}, which does not exist, and {zip} is not in {}: {fix}",
                cache.display()
            );
        }
        let Some((host, port)) = url_host(&url) else {
            anyhow::bail!("ELECTRON_MIRROR={mirror} is not a URL (https://host/path/ or file:///path/)");
        };
        if connects(&host, port) {
            return Ok(Download::Available(format!("ELECTRON_MIRROR {url}")));
        }
        anyhow::bail!(
            "ELECTRON_MIRROR host {host}:{port} does not answer, and {zip} is not in {}: {fix}",
            cache.display()
        );
    }
    if connects("github.com", 443) {
        return Ok(Download::Available(format!("github.com ({zip})")));
    }
    if let Some(proxy) = env_var(env, &["HTTPS_PROXY", "https_proxy", "GLOBAL_AGENT_HTTPS_PROXY"]) {
        return Ok(Download::Unchecked(format!(
            "github.com does not answer from here; the download would go through the proxy {proxy}, not checked"
        )));
    }
    anyhow::bail!(
        "electron-builder would download {zip} from github.com, which does not answer from here, and it is not in {}: {fix}",
        cache.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stand_in(dir: &Path, version: Option<&str>) -> PathBuf {
        let dist = dir.join("electron-x64");
        std::fs::create_dir_all(&dist).unwrap();
        if let Some(v) = version {
            std::fs::write(dist.join("version"), v).unwrap();
        }
        dist
    }

    #[test]
    fn an_electron_dist_says_its_version_and_must_be_the_pinned_one() {
        let d = tempfile::tempdir().unwrap();
        let dist = stand_in(d.path(), Some("43.8.11\n"));
        assert_eq!(dist_version(&dist).unwrap(), "43.8.11");
        require_dist_version(&dist, "43.8.11").unwrap();
        let err = format!("{:#}", require_dist_version(&dist, "44.0.1").unwrap_err());
        assert_eq!(
            err,
            format!(
                "{} says Electron 43.8.11, but electron-app/package.json devDependencies.electron pins 44.0.1: point \
                 KT_ELECTRON_DIST (or dist.yaml electron.dist) at an unpacked Electron 44.0.1 of this arch, or pin 43.8.11 \
                 in package.json (and its lockfile)",
                dist.join("version").display()
            )
        );
        std::fs::remove_file(dist.join("version")).unwrap();
        let err = format!("{:#}", require_dist_version(&dist, "43.8.11").unwrap_err());
        assert!(
            err.starts_with(&format!(
                "{} is missing: {} is not an unpacked Electron",
                dist.join("version").display(),
                dist.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn the_electron_zip_follows_the_pinned_version_and_the_arch() {
        let none = |_: &str| None;
        assert_eq!(electron_zip("43.8.11", Arch::Armv7l, &none).unwrap(), "electron-v43.8.11-linux-armv7l.zip");
        assert_eq!(electron_zip("43.8.11", Arch::DarwinArm64, &none).unwrap(), "electron-v43.8.11-darwin-arm64.zip");
        let custom = |n: &str| (n == "ELECTRON_CUSTOM_FILENAME").then(|| "my-electron.zip".to_string());
        assert_eq!(electron_zip("43.8.11", Arch::X64, &custom).unwrap(), "my-electron.zip");
        let d = tempfile::tempdir().unwrap();
        let zip = "electron-v43.8.11-linux-x64.zip";
        assert!(cached(d.path(), zip).is_none());
        std::fs::create_dir_all(d.path().join("3f2a9c")).unwrap();
        std::fs::write(d.path().join("3f2a9c").join(zip), b"zip").unwrap();
        assert_eq!(cached(d.path(), zip), Some(d.path().join("3f2a9c").join(zip)));
        assert!(cached(d.path(), "electron-v43.8.11-linux-arm64.zip").is_none());
    }
}
