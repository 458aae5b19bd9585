//! `check --staged`: the paths the commit changes, and the staged content exported from the
//! index, so the checks read what will be committed rather than the working tree.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::process::Command;

/// `git diff --cached --name-only`: added, changed, renamed and deleted paths alike (deleting
/// an env config matters as much as editing one).
pub fn staged_paths(checkout: &Path) -> Result<Vec<String>> {
    let out = crate::process::exec(&Command::new("git", checkout).args(["diff", "--cached", "--name-only", "-z"]))?;
    if !out.success {
        bail!(
            "`git diff --cached` failed in {}: {}; run it inside a git checkout",
            checkout.display(),
            out.stderr.trim()
        );
    }
    Ok(out.stdout.split('\0').filter(|p| !p.is_empty()).map(str::to_string).collect())
}

/// The index written out to a temporary folder, removed when dropped.
pub struct StagedTree {
    pub dir: PathBuf,
}

impl StagedTree {
    /// `git checkout-index --all`: every staged file, as staged. Honours `GIT_INDEX_FILE`, so
    /// inside a pre-commit hook it is the index being committed (also for `git commit -a`).
    pub fn export(checkout: &Path) -> Result<StagedTree> {
        let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("kt-staged-{}-{nonce}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let tree = StagedTree { dir };
        let prefix = format!("{}/", tree.dir.display());
        let out = crate::process::exec(
            &Command::new("git", checkout).args(["checkout-index", "--all", "--prefix"]).arg(&prefix),
        )?;
        if !out.success {
            bail!("cannot export the staged files (git checkout-index): {}", out.stderr.trim());
        }
        Ok(tree)
    }
}

impl Drop for StagedTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
