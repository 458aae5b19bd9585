//! Filesystem helpers that never leave a half-written file where a finished one belongs.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

/// A hidden sibling temporary path, never mistaken for a finished output. It is the same on
/// every run, so plans (and the fingerprints over their commands) are stable: runs that
/// write the same tree are serialised by a lock, and a crashed run's leftover is removed by
/// the next one.
pub fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Create the folder `path` goes in, and the folders above it.
pub fn create_parent(path: &Path) -> Result<()> {
    let dir = path.parent().with_context(|| format!("{} has no parent folder", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    create_parent(path)?;
    let tmp = tmp_sibling(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Move a finished file or folder into place, replacing what was there.
pub fn install(from: &Path, to: &Path) -> Result<()> {
    create_parent(to)?;
    if to.is_dir() {
        // rename(2) cannot replace a non-empty folder: move the old one aside first.
        let old = tmp_sibling(to);
        std::fs::rename(to, &old).with_context(|| format!("cannot move {} aside", to.display()))?;
        std::fs::rename(from, to).with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    } else {
        std::fs::rename(from, to).with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

pub fn remove_all(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => {
            unmount_under(path)?;
            std::fs::remove_dir_all(path).with_context(|| format!("cannot remove {}", path.display()))
        }
        Ok(_) => std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Detach every mount below `dir`, deepest first, so removing the tree never descends into
/// another file system: a debootstrap or smoke-test interrupted mid-way leaves `proc` mounted
/// in its rootfs, and removing through it would fail (or worse, reach the host's files).
fn unmount_under(dir: &Path) -> Result<()> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return Ok(()) };
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    let mut points: Vec<PathBuf> = mounts
        .lines()
        // Mount points escape spaces as \040.
        .filter_map(|l| l.split(' ').nth(1).map(|p| PathBuf::from(p.replace("\\040", " "))))
        .filter(|p| p.starts_with(&dir) && *p != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let status = std::process::Command::new("umount").arg("-l").arg(&p).status();
        if !status.is_ok_and(|s| s.success()) {
            bail!(
                "{} is mounted inside {}; unmount it (`umount -l {}`) and retry",
                p.display(),
                dir.display(),
                p.display()
            );
        }
    }
    Ok(())
}

/// Whether this process runs as root (effective uid 0), from /proc: no libc binding needed.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Copy `tops` (files or folders relative to `from`) into `to`, leaving out venvs, build
/// outputs and caches: a scratch copy of the repository for tests.
pub fn copy_tree(from: &Path, to: &Path, tops: &[&str]) -> Result<()> {
    let skip = [".venv", "dist", "release", "__pycache__", ".pytest_cache", "node_modules", "target"];
    for top in tops {
        for e in walkdir::WalkDir::new(from.join(top))
            .into_iter()
            .filter_entry(|e| !skip.contains(&e.file_name().to_string_lossy().as_ref()))
        {
            let e = e?;
            let dest = to.join(e.path().strip_prefix(from)?);
            if e.file_type().is_dir() {
                std::fs::create_dir_all(&dest)?;
            } else {
                create_parent(&dest)?;
                std::fs::copy(e.path(), &dest).with_context(|| format!("cannot copy {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

/// `path` relative to `root` when it is inside it, for messages and stamps.
pub fn rel<'a>(root: &Path, path: &'a Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rootfs left with `proc` mounted in it (an interrupted debootstrap or smoke-test).
    #[test]
    fn remove_all_detaches_mounts_inside_the_tree_first() {
        assert!(is_root(), "this test mounts a tmpfs: run the tests as root (`cargo xtask test` does in CI)");
        let d = tempfile::tempdir().unwrap();
        let rootfs = d.path().join("rootfs");
        let inner = rootfs.join("pr oc");
        std::fs::create_dir_all(&inner).unwrap();
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&inner).status().unwrap();
        assert!(ok.success());
        std::fs::write(inner.join("f"), b"on the mount").unwrap();
        remove_all(&rootfs).unwrap();
        assert!(!rootfs.exists());
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(&d.path().to_string_lossy().into_owned()), "{mounts}");
    }

    #[test]
    fn install_replaces_files_and_folders() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out/bin");
        write_atomic(&out, b"old").unwrap();
        let new = d.path().join("new");
        std::fs::write(&new, b"new").unwrap();
        install(&new, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert!(!new.exists());

        let dir_out = d.path().join("dir");
        std::fs::create_dir_all(dir_out.join("stale")).unwrap();
        let dir_new = d.path().join("dir-new");
        std::fs::create_dir_all(&dir_new).unwrap();
        std::fs::write(dir_new.join("f"), b"x").unwrap();
        install(&dir_new, &dir_out).unwrap();
        assert!(dir_out.join("f").exists());
        assert!(!dir_out.join("stale").exists());
        // No temporary or moved-aside path is left behind.
        let mut left: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["dir", "out"]);
    }
}
