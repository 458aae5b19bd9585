//! What goes into a package: control fields, filesystem entries, maintainer scripts and
//! how to compress. Pure data plus `add_tree`; nothing here writes a package.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Member compression. The level ranges are the ones `dpkg-deb -z` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "codec", rename_all = "lowercase")]
pub enum Compression {
    /// xz (LZMA2), levels 0..=9; dpkg-deb's default is 6.
    Xz { level: u32 },
    /// zstd, levels 1..=19. Needs dpkg >= 1.21.18 on the target (bookworm; not bullseye).
    Zstd { level: i32 },
    /// gzip (deflate), levels 0..=9.
    Gzip { level: u32 },
}

impl Default for Compression {
    /// dpkg-deb's default: `-Zxz -z6`.
    fn default() -> Self {
        Compression::Xz { level: 6 }
    }
}

impl Compression {
    /// File-name extension of the ar members: `control.tar.<ext>`, `data.tar.<ext>`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Xz { .. } => "xz",
            Compression::Zstd { .. } => "zst",
            Compression::Gzip { .. } => "gz",
        }
    }

    pub(super) fn validate(self) -> Result<()> {
        match self {
            Compression::Xz { level } if level > 9 => {
                bail!("DebSpec.compression: xz level {level} is out of range; use 0..=9 (6 is dpkg-deb's default)")
            }
            Compression::Gzip { level } if level > 9 => {
                bail!("DebSpec.compression: gzip level {level} is out of range; use 0..=9")
            }
            // 20..=22 need zstd's "ultra" window sizes, which dpkg's decoder may refuse.
            Compression::Zstd { level } if !(1..=19).contains(&level) => {
                bail!("DebSpec.compression: zstd level {level} is out of range; use 1..=19")
            }
            _ => Ok(()),
        }
    }
}

/// Debian architecture names this project ships. Only the `Architecture:` field depends on
/// it; the caller maps its own build-arch type (armv7l -> Armhf, ...) onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DebArch {
    Amd64,
    Arm64,
    /// 32-bit ARM hard-float (Raspberry Pi OS 32-bit). Never "armv7l": lintian calls that
    /// `unknown-architecture` and dpkg refuses to install it.
    Armhf,
}

impl DebArch {
    pub fn from_debian_name(name: &str) -> Option<DebArch> {
        [DebArch::Amd64, DebArch::Arm64, DebArch::Armhf].into_iter().find(|a| a.debian_name() == name)
    }

    pub fn debian_name(self) -> &'static str {
        match self {
            DebArch::Amd64 => "amd64",
            DebArch::Arm64 => "arm64",
            DebArch::Armhf => "armhf",
        }
    }
}

impl fmt::Display for DebArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.debian_name())
    }
}

/// A dpkg version on the machine that will install the package. Used only to refuse
/// members the target cannot unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DpkgVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl DpkgVersion {
    /// Debian 11 / Raspberry Pi OS bullseye.
    pub const BULLSEYE: DpkgVersion = DpkgVersion::new(1, 20, 13);
    /// Debian 12 / Raspberry Pi OS bookworm.
    pub const BOOKWORM: DpkgVersion = DpkgVersion::new(1, 21, 22);
    /// First dpkg that unpacks zstd-compressed members.
    pub const FIRST_WITH_ZSTD: DpkgVersion = DpkgVersion::new(1, 21, 18);

    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        DpkgVersion { major, minor, patch }
    }
}

impl serde::Serialize for DpkgVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl fmt::Display for DpkgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The binary package's `DEBIAN/control` fields. `Installed-Size` is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub package: String,
    pub version: String,
    pub architecture: DebArch,
    /// `Name <email>`.
    pub maintainer: String,
    pub section: String,
    pub priority: String,
    pub homepage: Option<String>,
    pub depends: Vec<String>,
    pub recommends: Vec<String>,
    /// The synopsis: one line, no trailing period by convention.
    pub description_short: String,
    /// Extended description, plain text; blank lines become " .".
    pub description_long: String,
}

/// Where an entry's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A regular file read (streamed) at write time.
    File(PathBuf),
    /// Generated content (desktop file, copyright, ...).
    Bytes(Vec<u8>),
    Dir,
    /// A symbolic link with this target, stored verbatim.
    Symlink(PathBuf),
}

/// One object in the installed filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path once installed, e.g. "/opt/KitchnTabs/kitchntabs".
    pub path: String,
    pub source: Source,
    /// Permission bits. Normalised when written: directories 0755, files 0755 if any
    /// execute bit is set else 0644; setuid/setgid/sticky bits are kept.
    pub mode: u32,
}

impl Entry {
    pub fn file(path: impl Into<String>, src: impl Into<PathBuf>, mode: u32) -> Self {
        Entry { path: path.into(), source: Source::File(src.into()), mode }
    }

    pub fn bytes(path: impl Into<String>, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        Entry { path: path.into(), source: Source::Bytes(content.into()), mode }
    }

    pub fn dir(path: impl Into<String>) -> Self {
        Entry { path: path.into(), source: Source::Dir, mode: 0o755 }
    }

    pub fn symlink(path: impl Into<String>, target: impl Into<PathBuf>) -> Self {
        Entry { path: path.into(), source: Source::Symlink(target.into()), mode: 0o777 }
    }
}

/// Maintainer scripts, stored 0755 in control.tar. Each must start with `#!`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintainerScripts {
    pub preinst: Option<String>,
    pub postinst: Option<String>,
    pub prerm: Option<String>,
    pub postrm: Option<String>,
}

impl MaintainerScripts {
    /// (member name, script) in control.tar order.
    pub(super) fn present(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [("postinst", &self.postinst), ("postrm", &self.postrm), ("preinst", &self.preinst), ("prerm", &self.prerm)]
            .into_iter()
            .filter_map(|(name, s)| s.as_deref().map(|s| (name, s)))
    }
}

/// Everything needed to write one `.deb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebSpec {
    pub control: Control,
    pub entries: Vec<Entry>,
    pub scripts: MaintainerScripts,
    pub compression: Compression,
    /// Compressor threads (xz, zstd). The output does not depend on it.
    pub threads: u32,
    /// Every mtime in the package and the ar headers. Must be after 1975 (lintian's
    /// `package-contains-ancient-file`); use the release commit's time.
    pub source_date_epoch: u64,
    /// Oldest dpkg that must install the package; zstd is refused below 1.21.18.
    pub target_dpkg: DpkgVersion,
    /// xz only: reuse compressed data.tar blocks from this cache. The bytes do not depend on it.
    pub xz_block_cache: Option<BlockCacheConfig>,
    /// What the verify pass before the rename checks besides data.tar.xz's bytes (always
    /// decoded in full and compared with what was written).
    pub verify: VerifyBinaries,
}

/// Whether the verify pass a package gets before its rename also checks that its binaries
/// run on the package's architecture (as `cargo xtask verify` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyBinaries {
    /// Only the package's structure and data.tar's bytes: for packages whose binaries are
    /// not the point (test and bench trees).
    No,
    /// Every ELF is for the architecture, within this glibc floor (`None`: no floor).
    Yes { glibc: Option<crate::config::GlibcVersion> },
}

impl DebSpec {
    /// An empty package with dpkg-deb's defaults: xz -6, one thread per core, bullseye
    /// as the oldest target.
    pub fn new(control: Control, source_date_epoch: u64) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        DebSpec {
            control,
            entries: Vec::new(),
            scripts: MaintainerScripts::default(),
            compression: Compression::default(),
            threads,
            source_date_epoch,
            target_dpkg: DpkgVersion::BULLSEYE,
            xz_block_cache: None,
            verify: VerifyBinaries::No,
        }
    }

    /// Add a folder's contents under `dest_prefix` (e.g. "/opt/KitchnTabs"), including the
    /// prefix directory itself. Walks sorted by name, does not follow symlinks (they are
    /// stored as symlinks), keeps only the execute bit of regular files: setuid (e.g. on
    /// chrome-sandbox) is the postinst's decision, not the build machine's.
    pub fn add_tree(&mut self, src_dir: &Path, dest_prefix: &str) -> Result<()> {
        self.entries.extend(tree_entries(src_dir, dest_prefix)?);
        Ok(())
    }
}

/// A folder's contents as entries under `dest_prefix`, the prefix directory included: see
/// [`DebSpec::add_tree`].
pub fn tree_entries(src_dir: &Path, dest_prefix: &str) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    {
        if !dest_prefix.starts_with('/') {
            bail!("add_tree: destination {dest_prefix:?} must be absolute, e.g. \"/opt/KitchnTabs\"");
        }
        // "/" -> "", "/opt/KitchnTabs/" -> "/opt/KitchnTabs"
        let prefix = dest_prefix.trim_end_matches('/');
        let walk = walkdir::WalkDir::new(src_dir).follow_links(false).sort_by_file_name();
        for item in walk {
            let item =
                item.with_context(|| format!("cannot walk {} (check it exists and is readable)", src_dir.display()))?;
            let rel = item.path().strip_prefix(src_dir).expect("walkdir yields paths under its root");
            let rel = rel.to_str().with_context(|| {
                format!("{} is not valid UTF-8; rename it (package paths must be UTF-8)", item.path().display())
            })?;
            let path = match (prefix.is_empty(), rel.is_empty()) {
                (true, true) => "/".to_string(),
                (_, true) => prefix.to_string(),
                _ => format!("{prefix}/{rel}"),
            };
            let file_type = item.file_type();
            let entry = if file_type.is_dir() {
                Entry::dir(path)
            } else if file_type.is_symlink() {
                let target = fs::read_link(item.path())
                    .with_context(|| format!("cannot read symlink {}", item.path().display()))?;
                Entry::symlink(path, target)
            } else if file_type.is_file() {
                let meta = item.metadata().with_context(|| format!("cannot stat {}", item.path().display()))?;
                let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
                Entry::file(path, item.path(), mode)
            } else {
                bail!(
                    "{} is neither a file, a directory nor a symlink (socket, fifo or device); \
                     remove it from the tree",
                    item.path().display()
                );
            };
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Where the cache of compressed data.tar.xz blocks lives and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockCacheConfig {
    pub dir: PathBuf,
    /// Evict least recently used blocks beyond this many bytes; `None`: twice this
    /// package's data.tar.xz, so the previous build's blocks survive one build.
    pub max_bytes: Option<u64>,
}
