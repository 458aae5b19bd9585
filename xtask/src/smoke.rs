//! Install a .deb into a Debian rootfs of its arch and use it there, as a board would: `dpkg
//! -i` under QEMU, every service's `--self-test`, `/usr/bin/<name>` resolving into the package,
//! then `dpkg -r` and `--purge` leaving nothing behind.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::process::Command;

mod upgrade;
pub use upgrade::{SigningKey, Source, Upgrade, upgrade};

/// `/proc` mounted in the rootfs for the duration (PyInstaller's bootloader finds itself
/// through /proc/self/exe), unmounted however the check ends.
struct ProcMount(PathBuf);

impl ProcMount {
    fn new(rootfs: &Path) -> Result<ProcMount> {
        let proc = rootfs.join("proc");
        output(Command::new("mount", Path::new("/")).args(["-t", "proc", "proc"]).arg(&proc))?;
        Ok(ProcMount(proc))
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn output(cmd: Command) -> Result<String> {
    cmd.capture().map_err(|e| anyhow::anyhow!("`{}` failed: {e}", cmd.shell_line()))
}

/// Every path in the rootfs except what dpkg and the system keep as history.
fn listing(rootfs: &Path) -> Result<BTreeSet<String>> {
    let skip = ["proc", "tmp", "var/lib/dpkg", "var/log", "var/cache", "run"];
    let mut out = BTreeSet::new();
    for e in walkdir::WalkDir::new(rootfs).into_iter().filter_entry(|e| {
        let rel = e.path().strip_prefix(rootfs).unwrap_or(e.path()).to_string_lossy().into_owned();
        !skip.iter().any(|s| rel == *s)
    }) {
        let e = e.with_context(|| format!("cannot walk {}", rootfs.display()))?;
        out.insert(e.path().strip_prefix(rootfs).unwrap_or(e.path()).to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Unpack the rootfs, install the package, use it, remove it, compare.
pub fn check(rootfs_tar: &Path, deb: &Path, scratch: &Path, package: &str, services: &[String]) -> Result<()> {
    if !deb.is_file() {
        bail!("{} does not exist: build it with `cargo xtask dist --arch <arch>` or pass --deb", deb.display());
    }
    let root = scratch.join("rootfs");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    output(Command::new("tar", Path::new("/")).args(["--numeric-owner", "-xf"]).arg(rootfs_tar).arg("-C").arg(&root))?;
    let before = listing(&root)?;
    let _proc = ProcMount::new(&root)?;
    let chroot = |args: &[&str]| {
        output(
            Command::new("chroot", Path::new("/")).arg(&root).args(args).env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        )
    };
    std::fs::copy(deb, root.join("tmp/package.deb")).context("cannot copy the .deb into the rootfs")?;
    chroot(&["dpkg", "-i", "/tmp/package.deb"]).context("dpkg -i failed in the target's rootfs")?;
    let status = chroot(&["dpkg-query", "-W", "-f", "${Status}", package])?;
    if status != "install ok installed" {
        bail!("after dpkg -i, {package} is `{status}`, not installed");
    }

    let link = chroot(&["readlink", "-f", &format!("/usr/bin/{package}")])?;
    let files = chroot(&["dpkg-query", "-L", package])?;
    if !files.lines().any(|f| f == link) {
        bail!("/usr/bin/{package} resolves to {link}, which is not a file of the package");
    }
    let services_dir = Path::new(&link).parent().unwrap_or(Path::new("/")).join("resources/python-service");
    for s in services {
        let bin = services_dir.join(s);
        let out = chroot(&[&bin.to_string_lossy(), "--self-test"])
            .with_context(|| format!("the installed {} cannot run on the target", bin.display()))?;
        if !out.contains(&format!("self-test ok: {s}")) {
            bail!("{} --self-test printed {out:?}", bin.display());
        }
        eprintln!("    {}: {}", bin.display(), out.lines().last().unwrap_or_default());
    }

    chroot(&["dpkg", "-r", package]).context("dpkg -r failed")?;
    chroot(&["dpkg", "--purge", package]).context("dpkg --purge failed")?;
    std::fs::remove_file(root.join("tmp/package.deb")).ok();
    left_nothing_behind(&before, &listing(&root)?, &files, "dpkg -r")?;
    Ok(())
}

/// `after` is `before` again, but for the directories dpkg removes by its own rule.
fn left_nothing_behind(before: &BTreeSet<String>, after: &BTreeSet<String>, files: &str, how: &str) -> Result<()> {
    let left: Vec<&String> = after.difference(before).collect();
    if !left.is_empty() {
        bail!(
            "{how} left {} path(s) behind: {}",
            left.len(),
            left.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    // dpkg removes a directory the package lists once it is empty, even one that was there
    // before (debootstrap's /opt, which no package owns): dpkg's rule for every package.
    let listed_dir = |p: &str| {
        let inside = format!("{p}/");
        let listed = files.lines().map(|f| f.trim_start_matches('/'));
        listed.clone().any(|f| f == p) && listed.into_iter().any(|f| f.starts_with(&inside))
    };
    let (dpkg_rule, gone): (Vec<&String>, Vec<&String>) = before.difference(after).partition(|p| listed_dir(p));
    for p in dpkg_rule {
        eprintln!("    note: {how} removed the empty directory /{p}, which the package lists");
    }
    if !gone.is_empty() {
        bail!(
            "installing and removing the package deleted {}",
            gone.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}
