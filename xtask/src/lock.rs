//! One `dist` per tree at a time: two runs writing the same outputs would corrupt both.

use std::{fs::File, io::Write, path::Path};

use anyhow::{Context, Result, bail};

/// Held for the life of a run; the OS releases the lock when the process ends, even on a crash
/// or Ctrl-C, so a stale lock file never blocks the next run.
pub struct TreeLock {
    _file: File,
}

impl TreeLock {
    pub fn acquire(path: &Path, what: &str) -> Result<TreeLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open lock {}", path.display()))?;
        match file.try_lock() {
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
}
