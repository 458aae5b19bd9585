//! Native `.deb` writer: the package electron-builder's deb target (fpm) would produce,
//! written in-process, reproducibly, at dpkg-deb's speed.
//!
//! Data flow, one way: [`DebSpec`] (what to package) -> `layout::plan` (sorted, validated
//! tar items) -> data.tar.<ext> streamed through the compressor into a temp file beside
//! the output, md5 of every file computed on the way -> control.tar.<ext> (control,
//! md5sums, conffiles, scripts) -> the ar archive assembled into `<out>.tmp` -> the verify
//! pass on `<out>.tmp` -> rename to `<out>`. A failure at any step (a failed verify
//! included) removes the temp files and leaves no `<out>`.
//!
//! Reproducible: every mtime is `source_date_epoch`, owners are 0:0 root/root, modes are
//! normalised, entries are sorted, compressors run with fixed parameters whose output does
//! not depend on the thread count (see `compress`). data.tar.xz is cut into content-defined
//! blocks compressed independently (see `xzblocks`): an optional block cache lets a repack
//! after a small edit compress only the blocks that changed, with the same bytes as a full
//! pack. That is checked on every package, not assumed: the writer records the length and
//! SHA-256 of every block's uncompressed bytes, and the verify pass, which decodes all of
//! data.tar.xz to check the binaries anyway, compares each decoded block with the record.
//! A package built with cached blocks that fails the verify pass is rebuilt once with the
//! cache emptied (a warning names it); a failure without cached blocks is an error.

mod ar;
pub mod bench;
mod blockcache;
mod compress;
mod control;
pub mod electron;
mod layout;
mod output;
mod spec;
mod tarball;
#[cfg(test)]
mod tests;
mod xzblocks;

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

pub use electron::{
    AppPackage, CopyrightInfo, ElectronApp, KioskService, UnattendedOrigin, unattended_conf, unattended_path,
    write_app_package,
};
pub use spec::{BlockCacheConfig, Compression, DebArch, DebSpec, DpkgVersion, VerifyBinaries};
pub use xzblocks::BlockStats;

use blockcache::BlockCache;
use compress::Encoder;
use layout::{FileSource, Item, ItemKind};
use output::{HashingWriter, TempFile};
use tarball::{EntrySink, TarWriter};
use xzblocks::{BlockRule, Pieces, XzBlockWriter};

use crate::verify::DebCheckError;

/// lintian's `package-contains-ancient-file` fires for mtimes up to 1975; refuse anything
/// before 1980-01-01 so an unset epoch (0) fails here, not in review.
const MIN_SOURCE_DATE_EPOCH: u64 = 315_532_800;

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebSummary {
    pub path: PathBuf,
    /// Size of the .deb.
    pub bytes: u64,
    /// SHA-256 of the .deb, lower-case hex.
    pub sha256: String,
    /// The `Installed-Size` field.
    pub installed_size_kib: u64,
    /// Regular files in data.tar (= lines in md5sums).
    pub files: u64,
    /// All data.tar entries (files, directories, symlinks), "./" included.
    pub entries: u64,
    /// How data.tar.xz's blocks were obtained; `None` for gzip and zstd.
    pub xz_blocks: Option<BlockStats>,
}

/// Write `spec` as a .deb at `out`.
///
/// A stale `out` is deleted first: after a failed run there must be no package at `out`
/// that a later release step could mistake for this build's.
///
/// With `spec.xz_block_cache` set, data.tar.xz's blocks are looked up in and added to that
/// cache; the package bytes are the same with or without it.
pub fn write_deb(spec: &DebSpec, out: &Path) -> Result<DebSummary> {
    write_deb_with(spec, out, BlockRule::DEFAULT)
}

/// [`write_deb`] with another block rule (tests use small blocks on small trees).
fn write_deb_with(spec: &DebSpec, out: &Path, rule: BlockRule) -> Result<DebSummary> {
    check_spec(spec)?;
    let target = verify_target(spec)?;
    let items = layout::plan(&spec.entries)?;
    match fs::remove_file(out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot remove the old {}", out.display()));
        }
    }
    let cache_dir = match (&spec.xz_block_cache, spec.compression) {
        (Some(c), Compression::Xz { .. }) => Some(c.dir.as_path()),
        _ => None,
    };
    let cache = cache_dir.map(BlockCache::open).transpose()?.map(Arc::new);
    let packed = pack(spec, &items, out, rule, cache)?;
    let used_cache = packed.summary.xz_blocks.is_some_and(|b| b.reused > 0);
    let failure = match check(&packed, out, &target) {
        Ok(()) => return packed.publish(out),
        Err(e) => e,
    };
    // Binaries that cannot run were read to the end of data.tar, which decoded as written:
    // the tree is at fault, and packing it again cannot help.
    let cache_suspect = match failure {
        DebCheckError::Mismatch(_) => true,
        DebCheckError::Other(_) => used_cache,
        DebCheckError::Binaries(_) => false,
    };
    let (Some(dir), true) = (cache_dir, cache_suspect) else {
        return Err(anyhow::Error::new(failure)
            .context(format!("{} failed the verify pass; it was not written", out.display())));
    };
    // The package holds cached blocks and is not what a full pack would be, or cannot be
    // read: a cache entry decodes to other bytes than its key names. Which one is not known
    // (the tar reader can fail before the bad block ends), so the whole cache goes.
    drop(packed);
    eprintln!(
        "warning: {} built from the .deb block cache {} failed the verify pass ({failure}); \
         removed every entry of that cache and packed again without it",
        out.display(),
        dir.display()
    );
    let purged = Arc::new(BlockCache::purged(dir)?);
    let mut packed = pack(spec, &items, out, rule, Some(purged))?;
    check(&packed, out, &target).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "{} failed the verify pass again, packed without cached blocks: the tree or the writer \
             is at fault, not the block cache {}; it was not written",
            out.display(),
            dir.display()
        ))
    })?;
    if let Some(b) = &mut packed.summary.xz_blocks {
        b.cache_purged = true;
    }
    packed.publish(out)
}

/// The verify target of the package's architecture, with the spec's glibc floor, and
/// whether its binaries are checked.
fn verify_target(spec: &DebSpec) -> Result<(crate::verify::Target, bool)> {
    let name = spec.control.architecture.debian_name();
    let arch = crate::arch::Arch::ALL
        .into_iter()
        .find(|a| a.debian_arch() == Some(name))
        .with_context(|| format!("DebSpec.control.architecture {name} has no build arch to verify against"))?;
    Ok(match spec.verify {
        VerifyBinaries::No => (crate::verify::Target::for_arch(arch, None), false),
        VerifyBinaries::Yes { glibc } => (crate::verify::Target::for_arch(arch, glibc), true),
    })
}

/// The verify pass on the package's temp file, named as its final path, and data.tar.xz
/// compared with what the writer meant it to hold.
fn check(packed: &Packed, out: &Path, target: &(crate::verify::Target, bool)) -> Result<(), DebCheckError> {
    crate::verify::check_deb_release(packed.deb_tmp.path(), out, &target.0, target.1, packed.pieces.as_deref())
}

/// A package written to its temp file, not yet in place.
struct Packed {
    deb_tmp: TempFile,
    summary: DebSummary,
    /// (length, SHA-256) of data.tar.xz's blocks uncompressed; `None` for gzip and zstd.
    pieces: Option<Pieces>,
}

impl Packed {
    fn publish(self, out: &Path) -> Result<DebSummary> {
        self.deb_tmp.persist(out)?;
        Ok(self.summary)
    }
}

fn pack(
    spec: &DebSpec,
    items: &[Item<'_>],
    out: &Path,
    rule: BlockRule,
    cache: Option<Arc<BlockCache>>,
) -> Result<Packed> {
    let ext = spec.compression.extension();

    // 1. data.tar.<ext> into a temp file, hashing every file on the way.
    let (data_tmp, data_file) = TempFile::create(out, "data.tmp")?;
    let data = write_data_tar(spec, items, data_file, rule, cache)
        .with_context(|| format!("cannot write data.tar.{ext} for {}", out.display()))?;

    // 2. control.tar.<ext>: small (a few KiB per thousand files), built in memory.
    let control_file = control::render(&spec.control, data.installed_size_kib);
    let members = control::members(spec, control_file, data.md5sums)?;
    let control_tar = write_control_tar(spec, &members)
        .with_context(|| format!("cannot write control.tar.{ext} for {}", out.display()))?;

    // 3. ar archive into <out>.tmp; the caller verifies it, then renames it.
    let (deb_tmp, deb_file) = TempFile::create(out, "tmp")?;
    let (bytes, sha256) = assemble(spec, &control_tar, data.file, data.compressed_size, deb_file)
        .with_context(|| format!("cannot assemble {}", deb_tmp.path().display()))?;
    drop(data_tmp);

    let summary = DebSummary {
        path: out.to_path_buf(),
        bytes,
        sha256,
        installed_size_kib: data.installed_size_kib,
        files: data.files,
        entries: items.len() as u64,
        xz_blocks: data.xz_blocks,
    };
    Ok(Packed { deb_tmp, summary, pieces: data.pieces })
}

/// A reproducible `.tar.gz` of `src` (its folder name kept at the top): the macOS app, which
/// ships as a tarball. Same rules as the .deb's data: sorted, root:root, normalised modes,
/// every mtime `epoch`, symlinks kept (app bundles' frameworks are full of them).
pub fn write_tar_gz(src: &Path, out: &Path, epoch: u64) -> Result<()> {
    let name =
        src.file_name().and_then(|n| n.to_str()).with_context(|| format!("{} has no UTF-8 name", src.display()))?;
    let entries = spec::tree_entries(src, &format!("/{name}"))?;
    let items = layout::plan(&entries)?;
    let (tmp, file) = TempFile::create(out, "tmp")?;
    let encoder = Encoder::new(Compression::Gzip { level: 9 }, 1, BufWriter::with_capacity(256 << 10, file))?;
    let mut tar = TarWriter::new(encoder, epoch);
    // The "./" root entry is for dpkg; a tarball starts at the app's folder.
    for item in items.iter().filter(|i| i.tar_path != "./") {
        tar.append_item(item)?;
    }
    tar.finish()?
        .finish()
        .context("cannot finish the gzip stream")?
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot flush {} (disk full?)", tmp.path().display()))?;
    tmp.persist(out)
}

fn check_spec(spec: &DebSpec) -> Result<()> {
    control::validate(&spec.control)?;
    spec.compression.validate()?;
    if let Compression::Zstd { .. } = spec.compression
        && spec.target_dpkg < DpkgVersion::FIRST_WITH_ZSTD
    {
        bail!(
            "DebSpec.compression is zstd but DebSpec.target_dpkg is {} (bullseye or older), \
             whose dpkg cannot unpack zstd members (needs >= {}); use Compression::Xz {{ level: 6 }}, \
             or set target_dpkg to DpkgVersion::BOOKWORM if no bullseye device installs this package",
            spec.target_dpkg,
            DpkgVersion::FIRST_WITH_ZSTD
        );
    }
    if spec.source_date_epoch < MIN_SOURCE_DATE_EPOCH {
        bail!(
            "DebSpec.source_date_epoch {} is before 1980; lintian flags such files as ancient. \
             Use the release commit's time (git log -1 --format=%ct)",
            spec.source_date_epoch
        );
    }
    if spec.threads == 0 {
        bail!("DebSpec.threads is 0; use at least 1 (the output does not depend on it)");
    }
    Ok(())
}

struct DataTar {
    file: File,
    compressed_size: u64,
    md5sums: String,
    installed_size_kib: u64,
    files: u64,
    xz_blocks: Option<BlockStats>,
    pieces: Option<Pieces>,
}

/// data.tar's compressor: xz as content-defined blocks, gzip and zstd as one stream.
enum DataSink<W: Write + Send + 'static> {
    Stream(Encoder<W>),
    Blocks(XzBlockWriter<W>),
}

impl<W: Write + Send + 'static> DataSink<W> {
    fn new(spec: &DebSpec, rule: BlockRule, cache: Option<Arc<BlockCache>>, out: W) -> Result<Self> {
        Ok(match spec.compression {
            Compression::Xz { level } => DataSink::Blocks(XzBlockWriter::new(level, spec.threads, rule, cache, out)?),
            other => DataSink::Stream(Encoder::new(other, spec.threads, out)?),
        })
    }

    /// The writer, and for xz the block counts and the blocks' (length, SHA-256).
    fn finish(self) -> Result<(W, Option<(BlockStats, Pieces)>)> {
        match self {
            DataSink::Stream(e) => Ok((e.finish().context("cannot finish the compressed stream")?, None)),
            DataSink::Blocks(b) => {
                let (w, stats, _, pieces) = b.finish()?;
                Ok((w, Some((stats, pieces))))
            }
        }
    }
}

impl<W: Write + Send + 'static> Write for DataSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            DataSink::Stream(e) => e.write(buf),
            DataSink::Blocks(b) => b.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            DataSink::Stream(e) => e.flush(),
            DataSink::Blocks(b) => b.flush(),
        }
    }
}

impl<W: Write + Send + 'static> EntrySink for DataSink<W> {
    fn begin_entry(&mut self, content_size: u64) -> std::io::Result<()> {
        match self {
            DataSink::Stream(_) => Ok(()),
            DataSink::Blocks(b) => b.begin_entry(content_size),
        }
    }
    fn end_entry(&mut self, path: &str, identity: &[u8]) -> std::io::Result<()> {
        match self {
            DataSink::Stream(_) => Ok(()),
            DataSink::Blocks(b) => b.end_entry(path, identity),
        }
    }
}

fn write_data_tar(
    spec: &DebSpec,
    items: &[Item<'_>],
    file: File,
    rule: BlockRule,
    cache: Option<Arc<BlockCache>>,
) -> Result<DataTar> {
    // The compressors hand out 32-128 KiB at a time; 256 KiB writes keep syscalls rare.
    let sink = BufWriter::with_capacity(256 << 10, file);
    let encoder = DataSink::new(spec, rule, cache.clone(), sink)?;
    let mut tar = TarWriter::new(encoder, spec.source_date_epoch);
    let mut md5sums = String::new();
    let mut installed_size_kib = 0;
    let mut files = 0;
    for item in items {
        let written = tar.append_item(item)?;
        match (written.file_size, written.md5) {
            (Some(size), Some(md5)) => {
                // Policy 5.6.20 as dpkg-gencontrol counts: files by size rounded up to KiB,
                // every other object (directory, symlink) 1 KiB.
                installed_size_kib += size.div_ceil(1024);
                files += 1;
                control::md5sums_line(&mut md5sums, &md5, item.md5sums_path())?;
            }
            _ => installed_size_kib += 1,
        }
    }
    let encoder = tar.finish()?;
    let (sink, blocks) = encoder.finish()?;
    let (xz_blocks, pieces) = blocks.map_or((None, None), |(s, p)| (Some(s), Some(p)));
    let mut file =
        sink.into_inner().map_err(|e| e.into_error()).context("cannot flush the data temp file (disk full?)")?;
    let compressed_size = file.stream_position()?;
    if let (Some(cache), Some(config)) = (cache, &spec.xz_block_cache) {
        let limit = config.max_bytes.unwrap_or(2 * compressed_size);
        // Housekeeping: a failure here costs disk space, not this package.
        if let Err(e) = cache.evict(limit) {
            eprintln!("warning: cannot trim the .deb block cache {}: {e:#}", cache.dir().display());
        }
    }
    Ok(DataTar { file, compressed_size, md5sums, installed_size_kib, files, xz_blocks, pieces })
}

fn write_control_tar(spec: &DebSpec, members: &[(&'static str, Vec<u8>, u32)]) -> Result<Vec<u8>> {
    // One thread: control.tar is tiny and the bytes do not depend on the count anyway.
    let encoder = Encoder::new(spec.compression, 1, Vec::new())?;
    let mut tar = TarWriter::new(encoder, spec.source_date_epoch);
    tar.append_item(&Item { tar_path: "./".into(), kind: ItemKind::Dir, mode: 0o755 })?;
    for (name, content, mode) in members {
        tar.append_item(&Item {
            tar_path: format!("./{name}"),
            kind: ItemKind::File(FileSource::Bytes(content)),
            mode: *mode,
        })?;
    }
    Ok(tar.finish()?.finish()?)
}

fn assemble(spec: &DebSpec, control_tar: &[u8], mut data: File, data_size: u64, deb: File) -> Result<(u64, String)> {
    let ext = spec.compression.extension();
    let epoch = spec.source_date_epoch;
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, deb));
    out.write_all(ar::MAGIC)?;
    for (name, body) in [("debian-binary", &b"2.0\n"[..]), (&format!("control.tar.{ext}"), control_tar)] {
        ar::member_header(&mut out, name, body.len() as u64, epoch)?;
        out.write_all(body)?;
        ar::member_padding(&mut out, body.len() as u64)?;
    }
    ar::member_header(&mut out, &format!("data.tar.{ext}"), data_size, epoch)?;
    data.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = data.read(&mut buf).context("cannot read back the data temp file")?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        copied += n as u64;
    }
    if copied != data_size {
        bail!("data temp file changed size while being copied ({copied} of {data_size} bytes)");
    }
    ar::member_padding(&mut out, data_size)?;
    let (sink, bytes, sha256) = out.finish();
    sink.into_inner().map_err(|e| e.into_error()).context("cannot flush the package (disk full?)")?;
    Ok((bytes, sha256))
}
