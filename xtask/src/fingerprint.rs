//! Input fingerprints and the stamps that record them.
//!
//! A step is up to date when its outputs exist and the stamp written after its last success
//! holds the same fingerprint. The fingerprint hashes file *contents* (never mtimes: `touch`
//! must not rebuild), the config the step uses and the versions of the tools it calls. Stamps
//! keep one hash per input so a rebuild can say which input changed.
//!
//! Hashing a 250 MB unpacked app on every run costs a second, so a stamp also keeps each
//! file's stat (size, mtime, ctime, inode, device), as git's index and cargo do: a file whose
//! stat is unchanged keeps the hash the stamp recorded, and any change to one of them hashes it
//! again. A file whose mtime falls within the second before the stamp's hashes were taken is
//! always hashed again (git's racy-clean rule): a write in the same timestamp tick as that
//! hash would leave its stat unchanged.

use std::{
    collections::BTreeMap,
    io::Read,
    os::unix::fs::MetadataExt,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
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
    /// matter). `rel` is relative to `root` and is the name recorded in the stamp. A file is an
    /// input by its content and its permission bits (a package records the mode, so a
    /// `chmod +x` changes what ships). A symbolic link is an input by its target path (a
    /// package keeps the link) and by what it resolves to (PyInstaller and the container
    /// build's COPY read through it): editing the file it points at, or anything under the
    /// folder it points at, changes the digest as retargeting it does. A dangling link is an
    /// input by its target alone; a link loop is an error naming it. Hashes come from `stats`
    /// where a file's stat allows it.
    pub fn add_path(&mut self, root: &Path, rel: &Path, stats: &mut Stats) -> Result<()> {
        let path = root.join(rel);
        let name_of = |file: &Path| file.strip_prefix(root).unwrap_or(file).to_string_lossy().into_owned();
        for entry in walkdir::WalkDir::new(&path)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| !ignored(&e.file_name().to_string_lossy()))
        {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    // Following a link whose target is missing: the link itself is the input.
                    let dangling = err.loop_ancestor().is_none()
                        && err
                            .path()
                            .is_some_and(|p| p.symlink_metadata().is_ok_and(|m| m.is_symlink()) && !p.exists());
                    match err.path() {
                        Some(file) if dangling => {
                            let target = read_link(file)?;
                            self.inputs.insert(name_of(file), link_hash(&target, "dangling"));
                            continue;
                        }
                        _ => {
                            return Err(err)
                                .with_context(|| format!("cannot read input {} (a link loop?)", path.display()));
                        }
                    }
                }
            };
            let file = entry.path();
            let name = name_of(file);
            let what = if entry.file_type().is_file() {
                let meta = entry.metadata().with_context(|| format!("cannot read {}", file.display()))?;
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
                format!("{} mode {mode:04o}", stats.hash(&name, file, &meta)?)
            } else if entry.file_type().is_dir() {
                // A folder is an input through its files; a link to one also by its target.
                if !entry.path_is_symlink() {
                    continue;
                }
                "folder".to_string()
            } else {
                continue;
            };
            let hash = if entry.path_is_symlink() { link_hash(&read_link(file)?, &what) } else { what };
            self.inputs.insert(name, hash);
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

fn read_link(file: &Path) -> Result<std::path::PathBuf> {
    std::fs::read_link(file).with_context(|| format!("cannot read link {}", file.display()))
}

/// A link's input: its target path and what it resolves to.
fn link_hash(target: &Path, resolved: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"symlink\0");
    h.update(target.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(resolved.as_bytes());
    hex(&h.finalize())
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

/// Lower-case hex of a digest: sha256sum's, dpkg's md5sums' and apt's form. Two table
/// lookups per byte: the .deb writer calls it once per packaged file.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// What a file's recorded hash was computed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

impl FileStat {
    fn of(meta: &std::fs::Metadata) -> FileStat {
        FileStat {
            size: meta.len(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
            ctime_ns: meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// The stat and hash of every file of a fingerprint, and when its hashing started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatCache {
    pub taken_ns: i64,
    pub files: BTreeMap<String, (FileStat, String)>,
}

impl StatCache {
    /// The hash recorded for `name` when it can be trusted for a file with `stat`: the stat
    /// is the recorded one and was not too recent when the hash was taken.
    fn vouches_for(&self, name: &str, stat: &FileStat) -> Option<&String> {
        self.files
            .get(name)
            .filter(|(old, _)| {
                old == stat && stat.mtime_ns < self.taken_ns - RACY_NS && stat.ctime_ns < self.taken_ns - RACY_NS
            })
            .map(|(_, hash)| hash)
    }

    /// Whether `self`, taken now over the same inputs as `prior`, would save the next run
    /// some hashing: `prior` cannot vouch for one of its files, because the file's stat
    /// changed (a `touch`) or was too recent when `prior` was taken (the output of the step
    /// that ran just before). Without rewriting the stamp, such a file is read again on
    /// every run until the step itself runs.
    pub fn fresher_than(&self, prior: &StatCache) -> bool {
        self.files.iter().any(|(name, (stat, _))| prior.vouches_for(name, stat).is_none())
    }
}

/// A file modified this close before its hash was taken may have been written again in the
/// same timestamp tick; one second covers filesystems with coarse timestamps too.
const RACY_NS: i64 = 1_000_000_000;

/// The hashes of one fingerprint: reused from the last stamp's `StatCache` where a file's stat
/// is unchanged and not racy, computed otherwise, and recorded for the next stamp.
pub struct Stats {
    prior: StatCache,
    now: StatCache,
    pub reused: usize,
    pub hashed: usize,
}

impl Stats {
    pub fn new(prior: Option<&StatCache>) -> Stats {
        let taken_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
        Stats {
            prior: prior.cloned().unwrap_or_default(),
            now: StatCache { taken_ns, files: BTreeMap::new() },
            reused: 0,
            hashed: 0,
        }
    }

    fn hash(&mut self, name: &str, path: &Path, meta: &std::fs::Metadata) -> Result<String> {
        let stat = FileStat::of(meta);
        // A file that several fingerprints of this run share is hashed once: a write since
        // then changes its ctime.
        if let Some((old, hash)) = self.now.files.get(name)
            && *old == stat
        {
            self.reused += 1;
            return Ok(hash.clone());
        }
        let hash = match self.prior.vouches_for(name, &stat) {
            Some(hash) => {
                self.reused += 1;
                hash.clone()
            }
            None => {
                self.hashed += 1;
                hash_file(path)?
            }
        };
        self.now.files.insert(name.to_string(), (stat, hash.clone()));
        Ok(hash)
    }

    pub fn into_cache(self) -> StatCache {
        self.now
    }
}

/// What a step leaves behind after it succeeds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stamp {
    pub digest: String,
    pub fingerprint: Fingerprint,
    /// Absent in stamps written before stats were kept: every file is then hashed.
    #[serde(default)]
    pub stats: StatCache,
}

impl Stamp {
    pub fn read(path: &Path) -> Option<Stamp> {
        // A missing or unreadable stamp just means "not built yet": never an error.
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Written last, after the outputs are in place, through a temporary file: a stamp never
    /// claims outputs that a crash left half-written.
    pub fn write(path: &Path, fingerprint: &Fingerprint, stats: &StatCache) -> Result<()> {
        let stamp = Stamp { digest: fingerprint.digest(), fingerprint: fingerprint.clone(), stats: stats.clone() };
        crate::fsx::write_atomic(path, &serde_json::to_vec(&stamp)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(root: &Path) -> Fingerprint {
        let mut f = Fingerprint::default();
        f.add_path(root, Path::new("src"), &mut Stats::new(None)).unwrap();
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

    /// The fingerprint of `src` with `prior`, its stats, and how many files were read.
    fn fp_with(root: &Path, prior: Option<&StatCache>) -> (Fingerprint, StatCache, usize, usize) {
        let mut f = Fingerprint::default();
        let mut stats = Stats::new(prior);
        f.add_path(root, Path::new("src"), &mut stats).unwrap();
        let (reused, hashed) = (stats.reused, stats.hashed);
        (f, stats.into_cache(), reused, hashed)
    }

    /// As if the hashes had been taken two seconds later: the files are no longer racy.
    fn settled(mut cache: StatCache) -> StatCache {
        cache.taken_ns += 2 * RACY_NS;
        cache
    }

    #[test]
    fn stats_are_fresher_when_a_file_was_racy_or_its_stat_changed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.py"), "A = 1\n").unwrap();
        let (_, racy, _, _) = fp_with(dir.path(), None);
        let (_, later, _, _) = fp_with(dir.path(), Some(&racy));
        let later = settled(later);
        assert!(later.fresher_than(&racy), "a.py was written within a second of its first hashing");
        let (_, same, _, _) = fp_with(dir.path(), Some(&later));
        assert!(!same.fresher_than(&later), "nothing changed since settled stats");
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(src.join("a.py"), "A = 1\n").unwrap();
        let (_, touched, _, _) = fp_with(dir.path(), Some(&later));
        assert!(touched.fresher_than(&later), "a rewrite with the same bytes changes the stat");
    }

    #[test]
    fn a_file_whose_stat_is_unchanged_keeps_its_recorded_hash() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.py"), "A = 1\n").unwrap();
        std::fs::write(src.join("b.py"), "B = 1\n").unwrap();
        let (base, cache, _, hashed) = fp_with(dir.path(), None);
        assert_eq!(hashed, 2);

        // A recorded hash the file does not have is what comes back: the file was not read.
        let mut planted = settled(cache.clone());
        planted.files.get_mut("src/a.py").unwrap().1 = "planted".into();
        let (f, _, reused, hashed) = fp_with(dir.path(), Some(&planted));
        assert_eq!((reused, hashed), (2, 0));
        assert_eq!(f.inputs["src/a.py"], "planted mode 0644");

        // Unchanged and settled: the same digest without reading anything.
        let (f, _, reused, _) = fp_with(dir.path(), Some(&settled(cache.clone())));
        assert_eq!((f.digest(), reused), (base.digest(), 2));

        // Just hashed (racy): read again even though nothing changed.
        let (_, _, reused, hashed) = fp_with(dir.path(), Some(&cache));
        assert_eq!((reused, hashed), (0, 2));
    }

    #[test]
    fn fingerprints_sharing_stats_hash_a_shared_file_once_until_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.py"), "A = 1\n").unwrap();
        let mut stats = Stats::new(None);
        let mut first = Fingerprint::default();
        first.add_path(dir.path(), Path::new("src"), &mut stats).unwrap();
        let mut second = Fingerprint::default();
        second.add_path(dir.path(), Path::new("src"), &mut stats).unwrap();
        assert_eq!((stats.hashed, stats.reused), (1, 1));
        assert_eq!(first, second);

        // Written in between, even to the same size: hashed again, with the new content.
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(src.join("a.py"), "A = 2\n").unwrap();
        let mut third = Fingerprint::default();
        third.add_path(dir.path(), Path::new("src"), &mut stats).unwrap();
        assert_eq!(stats.hashed, 2);
        assert_ne!(third, first);
    }

    #[test]
    fn any_stat_change_hashes_the_file_again() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let a = src.join("a.py");
        std::fs::write(&a, "A = 1\n").unwrap();
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        let (_, cache, _, _) = fp_with(dir.path(), None);
        let cache = settled(cache);
        // Later than the coarsest kernel timestamp tick, so ctime moves.
        std::thread::sleep(std::time::Duration::from_millis(50));

        // Same size, mtime put back (as `tar -x` and `rsync -t` do): ctime still moved.
        std::fs::write(&a, "A = 2\n").unwrap();
        std::fs::File::options().write(true).open(&a).unwrap().set_modified(mtime).unwrap();
        let (f, _, reused, hashed) = fp_with(dir.path(), Some(&cache));
        assert_eq!((reused, hashed), (0, 1));
        assert_eq!(f.inputs["src/a.py"], format!("{} mode 0644", hash_file(&a).unwrap()));

        // Replaced by another file (a new inode) of the same size and mtime.
        let (_, cache, _, _) = fp_with(dir.path(), None);
        let cache = settled(cache);
        std::fs::write(src.join("new"), "A = 3\n").unwrap();
        std::fs::rename(src.join("new"), &a).unwrap();
        std::fs::File::options().write(true).open(&a).unwrap().set_modified(mtime).unwrap();
        let (f, _, _, hashed) = fp_with(dir.path(), Some(&cache));
        assert_eq!(hashed, 1);
        assert_eq!(f.inputs["src/a.py"], format!("{} mode 0644", hash_file(&a).unwrap()));
    }

    #[test]
    fn a_symlink_is_an_input_by_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("one"), "x").unwrap();
        std::fs::write(src.join("two"), "x").unwrap();
        std::os::unix::fs::symlink("one", src.join("current")).unwrap();
        let before = fp(dir.path());
        assert!(before.inputs.contains_key("src/current"), "{:?}", before.inputs);
        std::fs::remove_file(src.join("current")).unwrap();
        std::os::unix::fs::symlink("two", src.join("current")).unwrap();
        assert_eq!(fp(dir.path()).changed_since(&before), vec!["src/current".to_string()]);
        // A dangling link is still an input, not an error.
        std::os::unix::fs::symlink("gone", src.join("dangling")).unwrap();
        assert!(fp(dir.path()).inputs.contains_key("src/dangling"));
    }

    #[test]
    fn a_symlink_is_an_input_by_what_it_resolves_to() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(elsewhere.join("pkg")).unwrap();
        std::fs::write(elsewhere.join("mod.py"), "X = 1\n").unwrap();
        std::fs::write(elsewhere.join("pkg/__init__.py"), "Y = 1\n").unwrap();
        std::os::unix::fs::symlink(elsewhere.join("mod.py"), src.join("mod.py")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("pkg"), src.join("pkg")).unwrap();
        let before = fp(dir.path());
        // The same size, the old mtime put back: only the content tells.
        let mtime = std::fs::metadata(elsewhere.join("mod.py")).unwrap().modified().unwrap();
        std::fs::write(elsewhere.join("mod.py"), "X = 2\n").unwrap();
        std::fs::File::options().write(true).open(elsewhere.join("mod.py")).unwrap().set_modified(mtime).unwrap();
        let edited = fp(dir.path());
        assert_eq!(edited.changed_since(&before), vec!["src/mod.py".to_string()]);
        // A file under a linked folder is an input under the link's name.
        std::fs::write(elsewhere.join("pkg/__init__.py"), "Y = 2\n").unwrap();
        assert_eq!(fp(dir.path()).changed_since(&edited), vec!["src/pkg/__init__.py".to_string()]);
        // A loop is an error that names the input, never a silent pass.
        std::os::unix::fs::symlink(".", src.join("self")).unwrap();
        let err = Fingerprint::default().add_path(dir.path(), Path::new("src"), &mut Stats::new(None)).unwrap_err();
        assert!(format!("{err:#}").contains("src"), "{err:#}");
    }

    #[test]
    fn a_mode_change_is_an_input_change() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("run.sh"), "echo hi\n").unwrap();
        std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = fp(dir.path());
        std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(fp(dir.path()).changed_since(&before), vec!["src/run.sh".to_string()]);
    }

    #[test]
    fn stamps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stamps/x.json");
        let mut f = Fingerprint::default();
        f.add_value("tool", "python 3.11.7");
        Stamp::write(&path, &f, &StatCache::default()).unwrap();
        let read = Stamp::read(&path).unwrap();
        assert_eq!(read.digest, f.digest());
        assert_eq!(read.fingerprint, f);
        assert!(Stamp::read(&dir.path().join("nope.json")).is_none());
    }
}
