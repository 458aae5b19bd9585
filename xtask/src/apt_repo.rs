//! A static, signed APT repository built from .debs, with no Debian tool but gpg:
//!
//! ```text
//! <into>/pool/main/<first letter>/<package>/<package>_<version>_<arch>.deb
//! <into>/dists/<suite>/main/binary-<arch>/{Packages,Packages.xz}
//! <into>/dists/<suite>/main/binary-<arch>/by-hash/SHA256/<sha256>
//! <into>/dists/<suite>/{Release,InRelease,Release.gpg}
//! <into>/<name>-archive-keyring.gpg, <into>/<name>.sources
//! ```
//!
//! Data flow: read every input .deb once (decoded whole through the verify reader, its files
//! held against its md5sums, its control file kept, while hashing the bytes) → merge with the
//! stanzas of the repository's current Packages files → keep the newest `keep` versions per
//! package and arch (dpkg's version order) → a [`Plan`] (pool files to add and remove, every
//! index file's bytes, the gpg commands) → run it.
//!
//! Order of a run, so a client never sees a repository that points at a missing file:
//! 1. every input is read and checked before anything is written;
//! 2. the new `dists/<suite>` is built and signed in `dists/.<suite>.new`;
//! 3. the new pool files are added (hard link when on the same filesystem, else a copy,
//!    each through a temporary name and a rename), then the keyring and the .sources;
//! 4. `dists/.<suite>.new` and `dists/<suite>` are exchanged in one `renameat2(RENAME_EXCHANGE)`:
//!    a reader sees the whole old suite or the whole new one, never a mix and never a gap.
//!    Real folders, not a symlink swap, so the tree can be copied to hosts that do not follow
//!    links (object stores, GitHub Pages). Where the filesystem cannot exchange, it falls back
//!    to two renames, with a moment in which the suite is missing (a 404, not a mixed index);
//! 5. pool files no longer listed are removed.
//!
//! A failure in steps 2-4 undoes what the run changed (see `rollback`): the repository
//! folder, and the folder holding it, are left as they were.
//!
//! The previous generation's by-hash files are carried into the new suite: a client that read
//! the old InRelease just before the swap still finds the indices it names
//! (`Acquire-By-Hash: yes`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs::File,
    io::{self, Read, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use md5::Digest as _;
use serde::Serialize;

use crate::process::Command;

mod rollback;
use rollback::Rollback;

/// What to publish, and where.
#[derive(Clone, Debug, Serialize)]
pub struct Publish {
    pub debs: Vec<PathBuf>,
    pub into: PathBuf,
    pub suite: String,
    /// Versions kept per package and arch, at least 1.
    pub keep: usize,
    pub origin: String,
    pub label: String,
    /// The gpg key (id, fingerprint or e-mail) that signs Release; None: unsigned.
    pub key: Option<String>,
    pub valid_for_days: Option<u32>,
    /// Written into the .sources file; default `file:<into>`.
    pub url: Option<String>,
    /// product.name: names the keyring and the .sources file.
    pub name: String,
    /// gpg's GNUPGHOME for signing and the export (None: the caller's own).
    pub gnupg_home: Option<PathBuf>,
}

impl Publish {
    /// dist.yaml's `apt_repo:` with its defaults, into `into` (else apt_repo.into, relative to
    /// the checkout), with no .debs yet.
    pub fn from_config(config: &crate::config::Config, into: Option<PathBuf>, key: Option<String>) -> Result<Publish> {
        let c = &config.dist.apt_repo;
        if let Some(comps) = &c.components
            && comps.iter().map(String::as_str).ne([COMPONENT])
        {
            bail!("dist.yaml: apt_repo.components is {comps:?}; only [main] is supported");
        }
        let into = match (into, &c.into) {
            (Some(d), _) => absolute(&d)?,
            (None, Some(d)) => config.root.join(d),
            (None, None) => bail!("no repository folder: pass --into DIR, or set apt_repo.into in dist.yaml"),
        };
        if let Some(url) = &c.url {
            check_url(url, "dist.yaml: apt_repo.url")?;
        }
        let product = &config.dist.product;
        Ok(Publish {
            debs: Vec::new(),
            into,
            suite: c.suite.clone().unwrap_or_else(|| "stable".into()),
            keep: c.keep.unwrap_or(3),
            origin: c.origin.clone().unwrap_or_else(|| product.product_name.clone()),
            label: c.label.clone().unwrap_or_else(|| product.product_name.clone()),
            key,
            valid_for_days: c.valid_for_days,
            url: c.url.clone(),
            name: product.name.clone(),
            gnupg_home: None,
        })
    }
}

/// Schemes apt fetches from (its methods in /usr/lib/apt/methods, and the `+` forms).
const URL_SCHEMES: &[&str] = &["http", "https", "file", "copy", "ftp", "cdrom", "mirror", "tor"];

/// A URL for the .sources `URIs:` field, or an error naming `what` (the flag or dist.yaml
/// field it came from). `URIs:` is a whitespace-separated list, so one URL with a space would
/// be read by apt as several. Not the `url` crate: apt's own rule is this small (a scheme it
/// has a method for, a host after `//` for the network ones), and it would pull in IDNA.
pub fn check_url(url: &str, what: &str) -> Result<()> {
    let example = "https://apt.example.com or file:/srv/apt";
    let refuse = |why: &str| anyhow::anyhow!("{what} {url:?} is not a repository URL: {why}; pass one like {example}");
    if url.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(refuse("it is empty or holds whitespace"));
    }
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(refuse("it has no scheme (`https:`, `file:`)"));
    };
    if rest.is_empty() {
        return Err(refuse("it names no host or path after the scheme"));
    }
    let lower = scheme.to_ascii_lowercase();
    if !lower.split('+').all(|part| URL_SCHEMES.contains(&part)) {
        return Err(refuse(&format!("apt has no method for the scheme {scheme:?}")));
    }
    let network = lower.split('+').any(|part| matches!(part, "http" | "https" | "ftp" | "tor"));
    if network && rest.strip_prefix("//").is_none_or(|r| r.is_empty() || r.starts_with('/')) {
        return Err(refuse("it names no host after `//`"));
    }
    Ok(())
}

/// The .debs directly in `dir` (a release folder), sorted.
pub fn debs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let list = std::fs::read_dir(dir).with_context(|| {
        format!("cannot read {}: build the .debs first (`cargo xtask dist`), or name them with --deb", dir.display())
    })?;
    let mut debs: Vec<PathBuf> = list
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb") && p.is_file())
        .collect();
    debs.sort();
    Ok(debs)
}

/// What a publish left in the repository.
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    pub dir: PathBuf,
    pub keyring: Option<PathBuf>,
    pub sources: PathBuf,
    /// Every (Debian arch, version) the indices list after the run, sorted.
    pub packages: Vec<(String, String)>,
}

/// The only component: every package is in `main`.
const COMPONENT: &str = "main";

// ---------------------------------------------------------------- stanzas

/// A deb822 paragraph: fields in order, values as written (continuation lines included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stanza(pub Vec<(String, String)>);

impl Stanza {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn render(&self, out: &mut String) {
        for (k, v) in &self.0 {
            let _ = writeln!(out, "{k}: {v}");
        }
    }
}

/// deb822 paragraphs (a control file, a Packages file). `#` comment lines are skipped.
pub fn parse_stanzas(text: &str) -> Result<Vec<Stanza>> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !cur.0.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with('#') {
        } else if line.starts_with([' ', '\t']) {
            let Some(last) = cur.0.last_mut() else {
                bail!("line {}: a continuation line before any field", n + 1);
            };
            last.1.push('\n');
            last.1.push_str(line);
        } else {
            let Some((k, v)) = line.split_once(':') else {
                bail!("line {}: {line:?} is not `Field: value`", n + 1);
            };
            cur.0.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.0.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// apt-ftparchive's field order (apt's `TFRewritePackageOrder`); other fields follow in the
/// order the control file has them.
const PACKAGE_ORDER: &[&str] = &[
    "Package",
    "Package-Type",
    "Architecture",
    "Subarchitecture",
    "Version",
    "Kernel-Version",
    "Built-Using",
    "Built-For-Profiles",
    "Auto-Built-Package",
    "Multi-Arch",
    "Status",
    "Priority",
    "Essential",
    "Installer-Menu-Item",
    "Section",
    "Source",
    "Origin",
    "Maintainer",
    "Original-Maintainer",
    "Bugs",
    "Config-Version",
    "Conffiles",
    "Triggers-Awaited",
    "Triggers-Pending",
    "Installed-Size",
    "Provides",
    "Pre-Depends",
    "Depends",
    "Recommends",
    "Suggests",
    "Conflicts",
    "Breaks",
    "Replaces",
    "Enhances",
    "Filename",
    "MSDOS-Filename",
    "Size",
    "MD5sum",
    "SHA1",
    "SHA256",
    "SHA512",
    "Homepage",
    "Description",
    "Tag",
    "Task",
];

fn reorder(stanza: &mut Stanza) {
    let rank = |k: &str| PACKAGE_ORDER.iter().position(|o| o.eq_ignore_ascii_case(k)).unwrap_or(PACKAGE_ORDER.len());
    // A stable sort keeps the unknown fields in their control-file order.
    stanza.0.sort_by_key(|(k, _)| rank(k));
}

// ---------------------------------------------------------------- versions

/// dpkg's version order (`dpkg --compare-versions`): epoch numerically, then upstream version
/// and revision by `verrevcmp`.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.bytes().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((up, rev)) => (epoch, up, rev),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb).then_with(|| verrevcmp(ua, ub)).then_with(|| verrevcmp(ra, rb))
}

/// `~` sorts before everything (even the end), letters before other characters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit prefix, character by character.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ca = a.get(i).copied().filter(|c| !c.is_ascii_digit());
            let cb = b.get(j).copied().filter(|c| !c.is_ascii_digit());
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            if ca.is_some() {
                i += 1;
            }
            if cb.is_some() {
                j += 1;
            }
        }
        // The digit run, numerically (leading zeros ignored).
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = std::cmp::Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff.is_eq() {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return std::cmp::Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return std::cmp::Ordering::Less;
        }
        if !first_diff.is_eq() {
            return first_diff;
        }
    }
    std::cmp::Ordering::Equal
}

// ---------------------------------------------------------------- reading .debs

struct Hashes {
    md5: md5::Md5,
    sha256: sha2::Sha256,
    size: u64,
}

struct Hashed {
    md5: String,
    sha256: String,
    size: u64,
}

impl Hashes {
    fn new() -> Hashes {
        Hashes { md5: md5::Md5::new(), sha256: sha2::Sha256::new(), size: 0 }
    }
    fn update(&mut self, b: &[u8]) {
        self.md5.update(b);
        self.sha256.update(b);
        self.size += b.len() as u64;
    }
    fn finish(self) -> Hashed {
        Hashed {
            md5: crate::fingerprint::hex(&self.md5.finalize()),
            sha256: crate::fingerprint::hex(&self.sha256.finalize()),
            size: self.size,
        }
    }
    fn of(bytes: &[u8]) -> Hashed {
        let mut h = Hashes::new();
        h.update(bytes);
        h.finish()
    }
}

/// Hashes every byte read through it: the .deb is read once, for its control file and its
/// checksums.
struct HashingReader<R> {
    inner: R,
    hashes: Hashes,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hashes.update(&buf[..n]);
        Ok(n)
    }
}

/// One package in the repository: its stanza (Filename, Size and hashes included).
#[derive(Clone, Debug)]
struct Entry {
    package: String,
    version: String,
    arch: String,
    stanza: Stanza,
    /// An input .deb (None: already in the pool).
    source: Option<PathBuf>,
}

impl Entry {
    fn filename(&self) -> &str {
        self.stanza.get("Filename").unwrap_or_default()
    }
}

/// The pool path of a package, relative to the repository: `pool/main/k/kitchntabs/...`.
/// The epoch is not part of a file name (dpkg-name and dak drop it too).
pub fn pool_path(package: &str, version: &str, arch: &str) -> String {
    let first = package.chars().next().unwrap_or('_');
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    format!("pool/{COMPONENT}/{first}/{package}/{package}_{version}_{arch}.deb")
}

fn read_deb(path: &Path) -> Result<Entry> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = HashingReader { inner: io::BufReader::with_capacity(1 << 16, file), hashes: Hashes::new() };
    // The whole package is decoded and held against its md5sums in this same pass: a damaged
    // .deb must be refused before it is published, since a published version never changes.
    let text = crate::verify::deb::read_checked_control(&mut reader, path).map_err(|e| {
        anyhow::anyhow!("{e}; nothing was published: rebuild the package with `cargo xtask dist` and publish that")
    })?;
    // Anything after the data member is read too, so the checksums cover the whole file.
    io::copy(&mut reader, &mut io::sink()).with_context(|| format!("cannot read {}", path.display()))?;
    let hashed = reader.hashes.finish();
    let mut stanzas =
        parse_stanzas(&text).with_context(|| format!("{}: the control file is not deb822", path.display()))?;
    if stanzas.len() != 1 {
        bail!("{}: the control file holds {} paragraphs, expected 1", path.display(), stanzas.len());
    }
    let mut stanza = stanzas.remove(0);
    let field = |s: &Stanza, k: &str| {
        s.get(k)
            .map(str::to_string)
            .filter(|v| !v.is_empty())
            .with_context(|| format!("{}: the control file has no {k} field; rebuild the package", path.display()))
    };
    let (package, version, arch) =
        (field(&stanza, "Package")?, field(&stanza, "Version")?, field(&stanza, "Architecture")?);
    let filename = pool_path(&package, &version, &arch);
    stanza.set("Filename", filename);
    stanza.set("Size", hashed.size.to_string());
    stanza.set("MD5sum", hashed.md5);
    stanza.set("SHA256", hashed.sha256);
    // No SHA1 or SHA512 (apt-ftparchive writes both): apt verifies a .deb by the SHA256 here,
    // and every digest costs a pass over every byte (md5 already half the run).
    reorder(&mut stanza);
    Ok(Entry { package, version, arch, stanza, source: Some(path.to_path_buf()) })
}

/// Every input read and hashed, on as many threads as there are cores (hashing is the whole
/// cost: two digests over every byte), results in input order.
fn read_debs(debs: &[PathBuf]) -> Vec<Result<Entry>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(debs.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<Result<Entry>>> = (0..debs.len()).map(|_| None).collect();
    let done = std::sync::Mutex::new(&mut out);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(deb) = debs.get(i) else { break };
                    let e = read_deb(deb);
                    done.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(e);
                }
            });
        }
    });
    out.into_iter().map(|e| e.unwrap_or_else(|| Err(anyhow::anyhow!("a reader thread stopped")))).collect()
}

/// The stanzas the repository lists now, from each `binary-*/Packages` of the suite.
fn current_entries(suite_dir: &Path) -> Result<Vec<Entry>> {
    let comp = suite_dir.join(COMPONENT);
    let Ok(dirs) = std::fs::read_dir(&comp) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for d in dirs {
        let d = d?.path();
        let packages = d.join("Packages");
        if !d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("binary-")) || !packages.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&packages).with_context(|| format!("cannot read {}", packages.display()))?;
        for stanza in parse_stanzas(&text).with_context(|| format!("{}: not a Packages file", packages.display()))? {
            let get = |k: &str| stanza.get(k).unwrap_or_default().to_string();
            let (package, version, arch) = (get("Package"), get("Version"), get("Architecture"));
            if package.is_empty() || version.is_empty() || arch.is_empty() || stanza.get("Filename").is_none() {
                bail!(
                    "{}: a stanza lacks Package, Version, Architecture or Filename; remove the repository's dists/ to rebuild it",
                    packages.display()
                );
            }
            out.push(Entry { package, version, arch, stanza, source: None });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- the plan

/// Everything a publish does, computed before anything is written.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub into: PathBuf,
    pub suite: String,
    /// Input .deb → pool path (relative to `into`).
    pub add: Vec<(PathBuf, String)>,
    /// Pool paths no longer listed, removed after the swap.
    pub remove: Vec<String>,
    /// Every file of the new suite folder (relative to it) and its bytes' size.
    pub indices: Vec<(String, u64)>,
    #[serde(skip)]
    files: Vec<(String, Vec<u8>)>,
    /// gpg: clear-sign and detach-sign Release, export the public key.
    pub sign: Vec<Command>,
    pub keyring: Option<PathBuf>,
    pub sources: PathBuf,
    pub packages: Vec<(String, String)>,
    #[serde(skip)]
    sources_text: String,
    #[serde(skip)]
    export: Option<Command>,
}

/// `SOURCE_DATE_EPOCH` when set (reproducible indices), else now.
fn release_time() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds; unset it or fix it")),
        _ => Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs()),
    }
}

/// RFC 2822 in UTC, as apt writes it: `Wed, 02 Dec 2026 14:29:47 UTC`.
pub fn rfc2822(secs: u64) -> String {
    crate::deb::electron::rfc2822_in(secs, "UTC")
}

fn xz(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

/// A suite, arch or package name that is safe as one path component.
fn check_name(what: &str, v: &str, file: &str) -> Result<()> {
    if v.is_empty() || v.starts_with('.') || !v.chars().all(|c| c.is_ascii_alphanumeric() || "+-._~".contains(c)) {
        bail!("{file}: {what} {v:?} is not a valid Debian name (letters, digits, + - . _ ~)");
    }
    Ok(())
}

/// Read the inputs and the repository's current indices, and compute everything a run
/// writes; nothing is written.
pub fn plan(p: &Publish) -> Result<Plan> {
    if p.debs.is_empty() {
        bail!("no .deb to publish; build one with `cargo xtask dist`, or name files with --deb");
    }
    if p.keep == 0 {
        bail!("keep is 0: a repository must keep at least one version (apt_repo.keep or --keep)");
    }
    check_name("suite", &p.suite, "apt_repo.suite")?;
    let into = absolute(&p.into)?;
    let suite_dir = into.join("dists").join(&p.suite);

    let mut fresh = Vec::new();
    for (deb, e) in p.debs.iter().zip(read_debs(&p.debs)) {
        let e = e?;
        let file = deb.display().to_string();
        check_name("Package", &e.package, &file)?;
        check_name("Architecture", &e.arch, &file)?;
        // The version names the pool file: Debian's characters only (no `/`).
        check_name("Version", &e.version.replace(':', "_"), &file)?;
        fresh.push(e);
    }

    // (package, arch, version) → entry; an input replaces nothing that differs in bytes.
    let mut all: BTreeMap<(String, String, String), Entry> = BTreeMap::new();
    for e in current_entries(&suite_dir)? {
        all.insert((e.package.clone(), e.arch.clone(), e.version.clone()), e);
    }
    for e in fresh {
        let key = (e.package.clone(), e.arch.clone(), e.version.clone());
        if let Some(old) = all.get(&key) {
            if old.source.is_none() && old.stanza.get("SHA256") != e.stanza.get("SHA256") {
                bail!(
                    "{}: {} {} ({}) is already published with other contents; a published version never changes: bump the version",
                    e.source.as_ref().map(|s| s.display().to_string()).unwrap_or_default(),
                    e.package,
                    e.version,
                    e.arch
                );
            }
            if old.source.is_none() {
                continue;
            }
            if old.stanza.get("SHA256") != e.stanza.get("SHA256") {
                bail!(
                    "{} and {} are both {} {} ({}) with different contents; publish one of them",
                    old.source.as_ref().map(|s| s.display().to_string()).unwrap_or_default(),
                    e.source.as_ref().map(|s| s.display().to_string()).unwrap_or_default(),
                    e.package,
                    e.version,
                    e.arch
                );
            }
        }
        all.insert(key, e);
    }

    // Keep the newest `keep` versions of each package and arch.
    let mut groups: BTreeMap<(String, String), Vec<Entry>> = BTreeMap::new();
    for ((pkg, arch, _), e) in all {
        groups.entry((pkg, arch)).or_default().push(e);
    }
    let mut kept: Vec<Entry> = Vec::new();
    let mut dropped: Vec<Entry> = Vec::new();
    for (_, mut es) in groups {
        es.sort_by(|a, b| compare_versions(&a.version, &b.version));
        let cut = es.len().saturating_sub(p.keep);
        dropped.extend(es.drain(..cut));
        kept.extend(es);
    }
    let listed: BTreeSet<String> = kept.iter().map(|e| e.filename().to_string()).collect();
    let add: Vec<(PathBuf, String)> =
        kept.iter().filter_map(|e| e.source.as_ref().map(|s| (s.clone(), e.filename().to_string()))).collect();
    let remove: Vec<String> =
        dropped.iter().map(|e| e.filename().to_string()).filter(|f| !listed.contains(f)).collect();

    // Arch `all` goes into every arch's index.
    let mut arches: BTreeSet<String> = kept.iter().map(|e| e.arch.clone()).filter(|a| a != "all").collect();
    if arches.is_empty() {
        arches.insert("all".into());
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut by_hash: Vec<(String, Vec<u8>)> = Vec::new();
    for arch in &arches {
        let mut es: Vec<&Entry> = kept.iter().filter(|e| &e.arch == arch || e.arch == "all").collect();
        es.sort_by(|a, b| a.package.cmp(&b.package).then_with(|| compare_versions(&a.version, &b.version)));
        let mut text = String::new();
        for (i, e) in es.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            e.stanza.render(&mut text);
        }
        let dir = format!("{COMPONENT}/binary-{arch}");
        let raw = text.into_bytes();
        let packed = xz(&raw)?;
        for (name, bytes) in [("Packages", raw), ("Packages.xz", packed)] {
            by_hash.push((format!("{dir}/by-hash/SHA256/{}", Hashes::of(&bytes).sha256), bytes.clone()));
            files.push((format!("{dir}/{name}"), bytes));
        }
    }

    let now = release_time()?;
    let mut release = String::new();
    let _ = writeln!(release, "Origin: {}", p.origin);
    let _ = writeln!(release, "Label: {}", p.label);
    let _ = writeln!(release, "Suite: {}", p.suite);
    let _ = writeln!(release, "Codename: {}", p.suite);
    let _ = writeln!(release, "Date: {}", rfc2822(now));
    if let Some(days) = p.valid_for_days {
        let _ = writeln!(release, "Valid-Until: {}", rfc2822(now + u64::from(days) * 86400));
    }
    let _ = writeln!(release, "Architectures: {}", arches.iter().cloned().collect::<Vec<_>>().join(" "));
    let _ = writeln!(release, "Components: {COMPONENT}");
    let _ = writeln!(release, "Description: {} packages", p.label);
    let _ = writeln!(release, "Acquire-By-Hash: yes");
    let hashed: Vec<(&str, Hashed)> = files.iter().map(|(n, b)| (n.as_str(), Hashes::of(b))).collect();
    // SHA256 is what apt checks; MD5Sum it ignores, but older tools read it. SHA1 is left
    // out (apt has refused SHA1-only repositories since 1.2), and so is SHA512: apt fetches
    // by-hash under the strongest hash Release lists, and by-hash/SHA256 is the one written.
    for (section, pick) in
        [("MD5Sum", (|h: &Hashed| h.md5.clone()) as fn(&Hashed) -> String), ("SHA256", |h| h.sha256.clone())]
    {
        let _ = writeln!(release, "{section}:");
        for (name, h) in &hashed {
            let _ = writeln!(release, " {} {:>16} {name}", pick(h), h.size);
        }
    }

    // The previous generation's by-hash files stay, for clients that read its InRelease.
    if let Ok(old_release) = std::fs::read_to_string(suite_dir.join("Release")) {
        let old_hashes: BTreeSet<&str> =
            old_release.lines().filter_map(|l| l.strip_prefix(' ')?.split_whitespace().next()).collect();
        for arch in &arches {
            let rel = format!("{COMPONENT}/binary-{arch}/by-hash/SHA256");
            let Ok(list) = std::fs::read_dir(suite_dir.join(&rel)) else { continue };
            for f in list.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let path = format!("{rel}/{name}");
                if old_hashes.contains(name.as_str()) && !by_hash.iter().any(|(p, _)| *p == path) {
                    let bytes =
                        std::fs::read(f.path()).with_context(|| format!("cannot read {}", f.path().display()))?;
                    by_hash.push((path, bytes));
                }
            }
        }
    }
    files.extend(by_hash);
    files.push(("Release".into(), release.into_bytes()));

    let new_dir = crate::fsx::tmp_sibling(&suite_dir).with_extension("new");
    let mut sign = Vec::new();
    let mut export = None;
    let keyring = p.key.as_ref().map(|_| into.join(format!("{}-archive-keyring.gpg", p.name)));
    if let Some(key) = &p.key {
        let home = |cmd: Command| match &p.gnupg_home {
            Some(h) => cmd.env("GNUPGHOME", h.to_string_lossy()),
            None => cmd,
        };
        let gpg = |args: &[&str]| {
            home(Command::new("gpg", &new_dir))
                .args(["--batch", "--yes", "--local-user", key, "--digest-algo", "SHA512"])
                .args(args)
        };
        sign.push(gpg(&["--clearsign", "--output", "InRelease", "Release"]));
        sign.push(gpg(&["--armor", "--detach-sign", "--output", "Release.gpg", "Release"]));
        export = Some(home(Command::new("gpg", &into)).args(["--batch", "--export", key]));
    }
    let url = match &p.url {
        Some(u) => u.clone(),
        None => format!("file:{}", into.display()),
    };
    let mut sources_text = format!("Types: deb\nURIs: {url}\nSuites: {}\nComponents: {COMPONENT}\n", p.suite);
    match &keyring {
        Some(_) => {
            let _ = writeln!(sources_text, "Signed-By: /usr/share/keyrings/{}-archive-keyring.gpg", p.name);
        }
        // An unsigned repository is only usable marked trusted.
        None => sources_text.push_str("Trusted: yes\n"),
    }
    let mut packages: Vec<(String, String)> = kept.iter().map(|e| (e.arch.clone(), e.version.clone())).collect();
    packages.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| compare_versions(&a.1, &b.1)));
    packages.dedup();
    Ok(Plan {
        sources: into.join(format!("{}.sources", p.name)),
        into,
        suite: p.suite.clone(),
        add,
        remove,
        indices: files.iter().map(|(n, b)| (n.clone(), b.len() as u64)).collect(),
        files,
        sign,
        keyring,
        packages,
        sources_text,
        export,
    })
}

impl Plan {
    fn suite_dir(&self) -> PathBuf {
        self.into.join("dists").join(&self.suite)
    }

    fn new_dir(&self) -> PathBuf {
        crate::fsx::tmp_sibling(&self.suite_dir()).with_extension("new")
    }

    /// What a run does, as text: `--dry-run`.
    pub fn render(&self) -> String {
        let mut out = format!("apt-repo {} (suite {})\n", self.into.display(), self.suite);
        let new_dir = self.new_dir();
        let _ = writeln!(out, "\n[1] write the new suite into {}", new_dir.display());
        for (name, size) in &self.indices {
            let _ = writeln!(out, "    {name} ({size} bytes)");
        }
        if self.sign.is_empty() {
            out.push_str("    unsigned: clients need `Trusted: yes` ([trusted=yes]); set KT_GPG_KEY to sign\n");
        }
        for c in &self.sign {
            let _ = writeln!(out, "    $ {}", c.shell_line());
        }
        let _ = writeln!(out, "\n[2] add {} pool file(s) (hard link, else copy)", self.add.len());
        for (from, to) in &self.add {
            let _ = writeln!(out, "    {} -> {}", from.display(), to);
        }
        out.push_str("\n[3] write the keyring and the .sources\n");
        if let (Some(c), Some(k)) = (&self.export, &self.keyring) {
            let _ = writeln!(out, "    $ {} > {}", c.shell_line(), k.display());
        }
        let _ = writeln!(out, "    write {}", self.sources.display());
        if self.suite_dir().exists() {
            let _ = writeln!(
                out,
                "\n[4] exchange {} and {} (renameat2 RENAME_EXCHANGE), remove the old suite",
                new_dir.display(),
                self.suite_dir().display()
            );
        } else {
            let _ = writeln!(out, "\n[4] rename {} -> {}", new_dir.display(), self.suite_dir().display());
        }
        out.push_str("    a failure up to here undoes [1]-[3]: the folder is left as it was\n");
        let _ = writeln!(out, "\n[5] remove {} pool file(s) no longer listed", self.remove.len());
        for f in &self.remove {
            let _ = writeln!(out, "    {f}");
        }
        out
    }

    /// Every change before the swap is recorded in a [`Rollback`]: a step that fails (gpg,
    /// a pool copy, the swap itself) leaves the repository folder, and the folder it is in,
    /// as they were, with no empty `dists/` or stray pool file.
    pub fn run(&self) -> Result<Published> {
        let new_dir = self.new_dir();
        // A crashed run's leftover, never part of a published suite.
        crate::fsx::remove_all(&new_dir)?;
        let mut rollback = Rollback::default();
        rollback.create_dirs(new_dir.parent().context("the suite folder has no parent")?)?;
        rollback.tree(&new_dir);
        let keyring = self.build_suite(&new_dir)?;
        for (from, to) in &self.add {
            let to = self.into.join(to);
            rollback.create_dirs(to.parent().context("pool path has no parent")?)?;
            rollback.file(&to)?;
            link_or_copy(from, &to)?;
        }
        if let (Some(bytes), Some(path)) = (&keyring, &self.keyring) {
            rollback.file(path)?;
            crate::fsx::write_atomic(path, bytes)?;
        }
        rollback.file(&self.sources)?;
        crate::fsx::write_atomic(&self.sources, self.sources_text.as_bytes())?;
        swap_in(&new_dir, &self.suite_dir())?;
        rollback.commit();
        for f in &self.remove {
            let path = self.into.join(f);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    // The package's pool folder goes when its last file does.
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
            }
        }
        Ok(Published {
            dir: self.into.clone(),
            keyring: self.keyring.clone(),
            sources: self.sources.clone(),
            packages: self.packages.clone(),
        })
    }

    /// The new suite folder, signed; the public key's bytes when signed (written beside the
    /// repository by `run`, with the .sources, only once the suite is complete).
    fn build_suite(&self, dir: &Path) -> Result<Option<Vec<u8>>> {
        for (name, bytes) in &self.files {
            let path = dir.join(name);
            crate::fsx::create_parent(&path)?;
            std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        }
        for c in &self.sign {
            let out = crate::process::exec(c)?;
            if !out.success {
                bail!(
                    "gpg could not sign {}: {}; import the key named by KT_GPG_KEY (`gpg --import`), or pass --unsigned",
                    dir.join("Release").display(),
                    out.stderr.trim()
                );
            }
        }
        let Some(c) = &self.export else { return Ok(None) };
        // gpg runs in the repository folder, which exists by now (it holds dists/).
        let out = c.to_std().output().with_context(|| format!("cannot run {}", c.shell_line()))?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!(
                "`{}` exported no public key: {}; import the key named by KT_GPG_KEY",
                c.shell_line_here(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Some(out.stdout))
    }
}

/// Hard-link (same filesystem) or copy `from` to `to`, through a temporary name.
/// `to`'s folder exists: `run` creates it, recorded for the rollback.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    let tmp = crate::fsx::tmp_sibling(to);
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp).with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    }
    std::fs::rename(&tmp, to).with_context(|| format!("cannot move {} to {}", tmp.display(), to.display()))
}

/// Put `new` where `current` is: one atomic exchange when the filesystem can, else two renames.
fn swap_in(new: &Path, current: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if current.exists() {
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).context("path holds a NUL byte");
        let (a, b) = (c(new)?, c(current)?);
        // SAFETY: two NUL-terminated paths that outlive the call.
        let rc =
            unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
        if rc == 0 {
            // `new` now holds the old suite.
            return crate::fsx::remove_all(new);
        }
    }
    crate::fsx::install(new, current)
}

/// The lock two publishes into one repository take: beside it, so a refused input leaves
/// the repository folder untouched (or absent). Taken with `TreeLock::acquire_transient`:
/// the file is gone once the run ends, so it never dirties the tree the repository is in.
pub fn lock_path(into: &Path) -> Result<PathBuf> {
    let into = absolute(into)?;
    let name = into.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(into.with_file_name(format!(".{name}.apt-repo.lock")))
}

/// Plan and run, one publish at a time per repository (the plan reads the current indices).
pub fn publish(p: &Publish) -> Result<Published> {
    let _lock = crate::lock::TreeLock::acquire_transient(&lock_path(&p.into)?, "apt-repo")?;
    plan(p)?.run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_compare_as_dpkg_does() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1:0.9", "1.0", Greater),
            ("1.0-2", "1.0-10", Less),
            ("1.0a", "1.0", Greater),
            ("1.0~~", "1.0~", Less),
            ("2.0.0", "10.0.0", Less),
            ("1.01", "1.1", Equal),
            ("1.0-1", "1.0", Greater),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn dates_are_rfc2822_utc() {
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(rfc2822(1_796_221_787), "Wed, 02 Dec 2026 14:29:47 UTC");
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 UTC");
    }

    #[test]
    fn stanzas_keep_continuation_lines_and_reorder_like_apt_ftparchive() {
        let text = "Package: a\nVersion: 1\nDescription: short\n long line\n .\nMaintainer: m\nX-Custom: y\nArchitecture: amd64\n";
        let mut s = parse_stanzas(text).unwrap().remove(0);
        reorder(&mut s);
        let keys: Vec<&str> = s.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["Package", "Architecture", "Version", "Maintainer", "Description", "X-Custom"]);
        assert_eq!(s.get("description"), Some("short\n long line\n ."));
        assert!(parse_stanzas(" orphan\n").is_err());
    }

    #[test]
    fn urls_apt_can_fetch_pass_and_others_name_the_flag() {
        for ok in [
            "https://apt.example.com/kt",
            "http://10.0.0.2:8080",
            "file:/srv/apt",
            "file:///srv/apt",
            "mirror+https://m.example/list",
        ] {
            check_url(ok, "--url").unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "not a url",
            "",
            "apt.example.com",
            "https:/apt.example.com",
            "https://",
            "file:",
            "gopher://x",
            "https://a b",
        ] {
            let err = check_url(bad, "--url").unwrap_err().to_string();
            assert!(err.contains("--url") && err.contains("https://apt.example.com"), "{bad}: {err}");
        }
    }

    #[test]
    fn pool_paths_drop_the_epoch() {
        assert_eq!(pool_path("kitchntabs", "1:2.0-1", "arm64"), "pool/main/k/kitchntabs/kitchntabs_2.0-1_arm64.deb");
    }
}
