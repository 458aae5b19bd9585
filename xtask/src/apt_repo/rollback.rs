//! What a publish has changed in the repository so far, so a step that fails leaves the
//! folder as it was: each change is recorded before it is made, and undone in reverse order
//! unless the run reaches its commit point (the suite swapped in).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

enum Undo {
    /// A folder this run created: removed if empty.
    Dir(PathBuf),
    /// A folder this run fills: removed with its contents.
    Tree(PathBuf),
    /// A file this run created: removed.
    File(PathBuf),
    /// A file this run replaced: its earlier bytes written back.
    Restore(PathBuf, Vec<u8>),
}

#[derive(Default)]
pub(super) struct Rollback {
    undo: Vec<Undo>,
}

impl Rollback {
    /// Create `dir` and its missing parents, each recorded.
    pub fn create_dirs(&mut self, dir: &Path) -> Result<()> {
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        for d in missing.into_iter().rev() {
            std::fs::create_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
            self.undo.push(Undo::Dir(d.to_path_buf()));
        }
        Ok(())
    }

    /// `dir` (absent now) is about to be created and filled.
    pub fn tree(&mut self, dir: &Path) {
        self.undo.push(Undo::Tree(dir.to_path_buf()));
    }

    /// `path` is about to be written: removed on undo when absent now, else given back its
    /// current bytes.
    pub fn file(&mut self, path: &Path) -> Result<()> {
        match std::fs::read(path) {
            Ok(bytes) => self.undo.push(Undo::Restore(path.to_path_buf(), bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.undo.push(Undo::File(path.to_path_buf())),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        Ok(())
    }

    /// The changes stay.
    pub fn commit(mut self) {
        self.undo.clear();
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        // Best effort: the error that stopped the run is the one reported.
        for undo in self.undo.drain(..).rev() {
            let _ = match undo {
                Undo::Dir(d) => std::fs::remove_dir(d).map_err(anyhow::Error::from),
                Undo::Tree(d) => crate::fsx::remove_all(&d),
                Undo::File(f) => std::fs::remove_file(f).map_err(anyhow::Error::from),
                Undo::Restore(f, bytes) => crate::fsx::write_atomic(&f, &bytes),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uncommitted_run_leaves_the_folder_as_it_was() {
        let t = tempfile::tempdir().unwrap();
        let kept = t.path().join("kept");
        std::fs::write(&kept, "old").unwrap();
        {
            let mut r = Rollback::default();
            r.create_dirs(&t.path().join("repo/dists")).unwrap();
            r.tree(&t.path().join("repo/dists/.new"));
            std::fs::create_dir_all(t.path().join("repo/dists/.new/main")).unwrap();
            r.file(&kept).unwrap();
            std::fs::write(&kept, "new").unwrap();
            r.file(&t.path().join("repo/added")).unwrap();
            std::fs::write(t.path().join("repo/added"), "x").unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["kept"]);
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old");

        let mut r = Rollback::default();
        r.create_dirs(&t.path().join("repo")).unwrap();
        r.commit();
        assert!(t.path().join("repo").is_dir());
    }
}
