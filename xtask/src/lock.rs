//! One run at a time per tree or shared cache: two runs writing the same outputs would
//! corrupt both.

use std::{fs::File, io::Write, path::Path};

use anyhow::{Context, Result, bail};

/// Held for the life of a run; the OS releases the lock when the process ends, even on a crash
/// or Ctrl-C, so a stale lock file never blocks the next run.
pub struct TreeLock {
    _file: File,
    /// Set by [`TreeLock::acquire_transient`]: the lock file, removed on release.
    remove: Option<std::path::PathBuf>,
}

impl Drop for TreeLock {
    fn drop(&mut self) {
        // Unlinked while still locked: a run that opened this file meanwhile gets the lock
        // only after this, finds the path no longer names its file, and starts over.
        if let Some(path) = &self.remove {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl TreeLock {
    /// Wait for the lock instead of refusing: for caches several checkouts share, where the
    /// second run should use what the first builds.
    pub fn wait(path: &Path, what: &str) -> Result<TreeLock> {
        match TreeLock::acquire(path, what) {
            Ok(l) => Ok(l),
            Err(_) => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                eprintln!("    waiting for {} ({})", path.display(), holder.trim());
                let mut file = open(path)?;
                file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
                file.set_len(0)?;
                writeln!(file, "pid {} ({what})", std::process::id())?;
                Ok(TreeLock { _file: file, remove: None })
            }
        }
    }

    /// [`TreeLock::acquire`], and the lock file is removed on release: for a lock that sits
    /// beside what it guards (a folder that may be in a git tree), where a file left behind
    /// after every run is litter. Only a crash leaves it, and the next run removes it.
    pub fn acquire_transient(path: &Path, what: &str) -> Result<TreeLock> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let mut lock = TreeLock::acquire(path, what)?;
            // The holder before us may have removed the file we locked: then the lock is on a
            // file no other run can open, and another may hold a new one at `path`.
            let ours = lock._file.metadata().with_context(|| format!("cannot stat {}", path.display()))?;
            if std::fs::metadata(path).is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino()) {
                lock.remove = Some(path.to_path_buf());
                return Ok(lock);
            }
        }
    }

    pub fn acquire(path: &Path, what: &str) -> Result<TreeLock> {
        let mut file = open(path)?;
        // A flock belongs to the open file description, which a child forked by another
        // thread of this process shares until it execs (O_CLOEXEC closes it only then): a
        // lock released just now can still look held for that moment. A real holder holds it
        // for seconds, so a refusal waits out that window first.
        let mut tries = 0;
        let outcome = loop {
            match file.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        };
        match outcome {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                let holder = holder.trim();
                bail!(
                    "another run holds {}: {}\nwait for it to finish, or stop it (kill <pid>) if it is stuck",
                    path.display(),
                    if holder.is_empty() { "unknown process" } else { holder }
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        writeln!(file, "pid {} ({what})", std::process::id())?;
        Ok(TreeLock { _file: file, remove: None })
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open lock {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("xtask/dist.lock");
        let first = TreeLock::acquire(&path, "cargo xtask dist --arch x64").unwrap();
        let err = TreeLock::acquire(&path, "second").err().unwrap().to_string();
        assert!(err.contains(&format!("pid {} (cargo xtask dist --arch x64)", std::process::id())), "{err}");
        drop(first);
        TreeLock::acquire(&path, "third").unwrap();
    }

    #[test]
    fn a_transient_lock_file_is_gone_after_release_and_never_held_twice() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(".repo.apt-repo.lock");
        let first = TreeLock::acquire_transient(&path, "first").unwrap();
        assert!(path.exists());
        // A second run opens the first one's file and waits on it; the first lets go (and
        // removes the file) while it waits.
        let second = {
            let path = path.clone();
            std::thread::spawn(move || TreeLock::acquire_transient(&path, "second"))
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(first);
        let second = second.join().unwrap().unwrap();
        // The second holds the file at `path`, so a third is refused rather than let in.
        assert!(path.exists(), "the second holder's lock file is at the path");
        let err = TreeLock::acquire_transient(&path, "third").err().expect("two holders at once").to_string();
        assert!(err.contains("(second)"), "{err}");
        drop(second);
        assert!(!path.exists(), "the lock file outlived its last holder");
    }

    #[test]
    fn wait_blocks_until_the_holder_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("rootfs/x.lock");
        let first = TreeLock::acquire(&path, "first").unwrap();
        let t = std::time::Instant::now();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || TreeLock::wait(&path, "second").map(drop))
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!waiter.is_finished(), "wait did not wait");
        drop(first);
        waiter.join().unwrap().unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    }
}
