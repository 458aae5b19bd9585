//! One run at a time per tree or shared cache: two runs writing the same outputs would
//! corrupt both.

use std::{fs::File, io::Write, path::Path};

use anyhow::{Context, Result, bail};

/// Held for the life of a run; the OS releases the lock when the process ends, even on a crash
/// or Ctrl-C, so a stale lock file never blocks the next run.
pub struct TreeLock {
    _file: File,
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
                Ok(TreeLock { _file: file })
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
        Ok(TreeLock { _file: file })
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
