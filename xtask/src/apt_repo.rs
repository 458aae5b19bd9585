//! A static, signed APT repository made from .debs.
//!
//! TEMPORARY SHIM: this file stands in for the native repository writer (written on another
//! branch with the same `Publish` / `Published` / `publish` API) so that
//! `smoke-test --upgrade-from` and its tests run; the merge replaces the whole file. It
//! drives `apt-ftparchive` (apt-utils) for the indices and `gpg` for the signatures, and
//! ignores `keep` and `valid_for_days`. Nothing outside this file may depend on how it works.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::process::Command;

/// What to publish, and where.
#[derive(Clone, Debug)]
pub struct Publish {
    pub debs: Vec<PathBuf>,
    pub into: PathBuf,
    pub suite: String,
    pub keep: usize,
    pub origin: String,
    pub label: String,
    /// The gpg key (id, fingerprint or e-mail) that signs Release; `None`: unsigned.
    pub key: Option<String>,
    pub valid_for_days: Option<u32>,
    /// The URL clients reach `into` at (the `.sources` snippet's `URIs:`).
    pub url: Option<String>,
    /// The keyring's and the snippet's base name, e.g. `kitchntabs`.
    pub name: String,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Published {
    pub dir: PathBuf,
    pub keyring: Option<PathBuf>,
    pub sources: PathBuf,
    /// (package, version) of every .deb in the pool.
    pub packages: Vec<(String, String)>,
}

fn capture(cmd: Command) -> Result<String> {
    let out = crate::process::exec(&cmd)?;
    if !out.success {
        bail!("`{}` failed: {}", cmd.shell_line(), out.stderr.trim());
    }
    Ok(out.stdout)
}

fn field(deb: &Path, name: &str) -> Result<String> {
    Ok(capture(Command::new("dpkg-deb", Path::new("/")).arg("--field").arg(deb).arg(name))?.trim().to_string())
}

pub fn publish(p: &Publish) -> Result<Published> {
    if which::which("apt-ftparchive").is_err() {
        bail!("apt-ftparchive is not installed: apt-get install apt-utils");
    }
    let mut packages = Vec::new();
    let mut arches = std::collections::BTreeSet::new();
    for deb in &p.debs {
        let (name, version, arch) = (field(deb, "Package")?, field(deb, "Version")?, field(deb, "Architecture")?);
        let first = if name.starts_with("lib") { &name[..4] } else { &name[..1] };
        let pool = p.into.join("pool/main").join(first).join(&name);
        std::fs::create_dir_all(&pool).with_context(|| format!("cannot create {}", pool.display()))?;
        let file = format!("{name}_{version}_{arch}.deb");
        std::fs::copy(deb, pool.join(&file)).with_context(|| format!("cannot copy {}", deb.display()))?;
        packages.push((name, version));
        arches.insert(arch);
    }
    let dist = p.into.join("dists").join(&p.suite);
    for arch in &arches {
        let dir = dist.join(format!("main/binary-{arch}"));
        std::fs::create_dir_all(&dir)?;
        let text = capture(Command::new("apt-ftparchive", &p.into).args(["--arch", arch, "packages", "pool"]))?;
        crate::fsx::write_atomic(&dir.join("Packages"), text.as_bytes())?;
        let mut xz = Vec::new();
        {
            use std::io::Write as _;
            let mut enc = liblzma::write::XzEncoder::new(&mut xz, 6);
            enc.write_all(text.as_bytes())?;
            enc.finish()?;
        }
        crate::fsx::write_atomic(&dir.join("Packages.xz"), &xz)?;
    }
    let o = |k: &str, v: &str| format!("-o=APT::FTPArchive::Release::{k}={v}");
    let arch_list = arches.iter().cloned().collect::<Vec<_>>().join(" ");
    let release = capture(
        Command::new("apt-ftparchive", &dist)
            .arg(o("Origin", &p.origin))
            .arg(o("Label", &p.label))
            .arg(o("Suite", &p.suite))
            .arg(o("Codename", &p.suite))
            .arg(o("Architectures", &arch_list))
            .arg(o("Components", "main"))
            .args(["release", "."]),
    )?;
    crate::fsx::write_atomic(&dist.join("Release"), release.as_bytes())?;
    let mut keyring = None;
    if let Some(key) = &p.key {
        let gpg = |args: &[&str]| Command::new("gpg", &dist).args(["--batch", "--yes", "--local-user", key]).args(args);
        capture(gpg(&["--clearsign", "--output", "InRelease", "Release"]))?;
        capture(gpg(&["--armor", "--detach-sign", "--output", "Release.gpg", "Release"]))?;
        let ring = p.into.join(format!("{}-archive-keyring.gpg", p.name));
        capture(
            Command::new("gpg", &p.into).args(["--batch", "--yes", "--output"]).arg(&ring).args(["--export", key]),
        )?;
        keyring = Some(ring);
    }
    let url = p.url.clone().unwrap_or_else(|| format!("file:{}", p.into.display()));
    let sources = p.into.join(format!("{}.sources", p.name));
    let mut text = format!("Types: deb\nURIs: {url}\nSuites: {}\nComponents: main\n", p.suite);
    if p.key.is_some() {
        text.push_str(&format!("Signed-By: /usr/share/keyrings/{}-archive-keyring.gpg\n", p.name));
    }
    crate::fsx::write_atomic(&sources, text.as_bytes())?;
    Ok(Published { dir: p.into.clone(), keyring, sources, packages })
}
