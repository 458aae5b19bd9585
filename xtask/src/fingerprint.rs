//! Input fingerprints and the stamps that record them.
//!
//! A step is up to date when its outputs exist and the stamp written after its last success
//! holds the same fingerprint. The fingerprint hashes file *contents* (never mtimes: `touch`
//! must not rebuild), the config the step uses and the versions of the tools it calls. Stamps
//! keep one hash per input so a rebuild can say which input changed.

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Named input hashes, ordered so the fingerprint does not depend on insertion order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub inputs: BTreeMap<String, String>,
}

/// Folders and files that are never inputs: caches and byproducts that change on every run.
fn ignored(name: &str) -> bool {
    name == "__pycache__" || name == ".pytest_cache" || name.ends_with(".pyc")
}

impl Fingerprint {
    /// Hash a file, or every file under a folder (sorted, so the order of the walk does not
    /// matter). `rel` is relative to `root` and is the name recorded in the stamp.
    pub fn add_path(&mut self, root: &Path, rel: &Path) -> Result<()> {
        let path = root.join(rel);
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in walkdir::WalkDir::new(&path)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| !ignored(&e.file_name().to_string_lossy()))
        {
            let entry = entry.with_context(|| format!("cannot read input {}", path.display()))?;
            if entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
        for file in files {
            let name = file.strip_prefix(root).unwrap_or(&file).to_string_lossy().into_owned();
            self.inputs.insert(name, hash_file(&file)?);
        }
        Ok(())
    }

    /// Hash a value that is not a file: a config fragment, a tool version, a command line.
    pub fn add_value(&mut self, name: &str, value: &str) {
        self.inputs.insert(format!("@{name}"), hex(&Sha256::digest(value.as_bytes())));
    }

    /// One digest over all inputs.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.inputs {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        hex(&h.finalize())
    }

    /// Input names that differ from `old`, for "rebuilt because src/x.py changed".
    pub fn changed_since(&self, old: &Fingerprint) -> Vec<String> {
        let mut changed: Vec<String> =
            self.inputs.iter().filter(|(k, v)| old.inputs.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
        changed.extend(old.inputs.keys().filter(|k| !self.inputs.contains_key(*k)).map(|k| format!("{k} (removed)")));
        changed
    }
}

pub fn hash_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a step leaves behind after it succeeds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stamp {
    pub digest: String,
    pub fingerprint: Fingerprint,
}

impl Stamp {
    pub fn read(path: &Path) -> Option<Stamp> {
        // A missing or unreadable stamp just means "not built yet": never an error.
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Written last, after the outputs are in place, through a temporary file: a stamp never
    /// claims outputs that a crash left half-written.
    pub fn write(path: &Path, fingerprint: &Fingerprint) -> Result<()> {
        let stamp = Stamp { digest: fingerprint.digest(), fingerprint: fingerprint.clone() };
        crate::fsx::write_atomic(path, &serde_json::to_vec_pretty(&stamp)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(root: &Path) -> Fingerprint {
        let mut f = Fingerprint::default();
        f.add_path(root, Path::new("src")).unwrap();
        f.add_value("config", "env=prod");
        f
    }

    #[test]
    fn changes_when_and_only_when_an_input_changes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("pkg/__pycache__")).unwrap();
        std::fs::write(src.join("a.py"), "print('a')\n").unwrap();
        std::fs::write(src.join("pkg/b.py"), "B = 1\n").unwrap();
        let base = fp(dir.path());
        assert_eq!(base.inputs.len(), 3, "{:?}", base.inputs);

        // Rewriting the same bytes (a `touch` with a new mtime) changes nothing.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(src.join("a.py"), "print('a')\n").unwrap();
        assert_eq!(fp(dir.path()).digest(), base.digest());

        // Caches are not inputs.
        std::fs::write(src.join("pkg/__pycache__/b.cpython-311.pyc"), "junk").unwrap();
        std::fs::write(src.join("a.pyc"), "junk").unwrap();
        assert_eq!(fp(dir.path()).digest(), base.digest());

        // A content edit changes it, and names the file.
        std::fs::write(src.join("pkg/b.py"), "B = 2\n").unwrap();
        let edited = fp(dir.path());
        assert_ne!(edited.digest(), base.digest());
        assert_eq!(edited.changed_since(&base), vec!["src/pkg/b.py".to_string()]);

        // A new file, a removed file and a changed value all count.
        std::fs::write(src.join("c.py"), "").unwrap();
        let added = fp(dir.path());
        assert_eq!(added.changed_since(&edited), vec!["src/c.py".to_string()]);
        std::fs::remove_file(src.join("c.py")).unwrap();
        assert_eq!(fp(dir.path()).changed_since(&added), vec!["src/c.py (removed)".to_string()]);
        let mut other = fp(dir.path());
        other.add_value("config", "env=ngrok");
        assert_eq!(other.changed_since(&edited), vec!["@config".to_string()]);
    }

    #[test]
    fn a_renamed_file_changes_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/a.py"), "x").unwrap();
        let before = fp(dir.path()).digest();
        std::fs::rename(dir.path().join("src/a.py"), dir.path().join("src/b.py")).unwrap();
        assert_ne!(fp(dir.path()).digest(), before);
    }

    #[test]
    fn stamps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stamps/x.json");
        let mut f = Fingerprint::default();
        f.add_value("tool", "python 3.11.7");
        Stamp::write(&path, &f).unwrap();
        let read = Stamp::read(&path).unwrap();
        assert_eq!(read.digest, f.digest());
        assert_eq!(read.fingerprint, f);
        assert!(Stamp::read(&dir.path().join("nope.json")).is_none());
    }
}
