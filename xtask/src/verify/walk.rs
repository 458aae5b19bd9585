//! From paths to a report: explicit files, .deb packages, tarballs and directory
//! trees, and the per-blob dispatch shared by files on disk, archive members and
//! PyInstaller entries.
//!
//! Speed on large trees (an unpacked Electron app is ~250 MB in hundreds of
//! files) comes from: one readdir pass, an 8-byte sniff that drops non-binaries
//! without reading them, mmap for large objects (advised random-access) so
//! only the pages the ELF checks touch are read, and a few workers per core.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use walkdir::WalkDir;

use super::containers::{self, Kind, Nest};
use super::elf::{ELF_MAGIC, macho};
use super::links::{self, LinkError, Node, Resolved, Root};
use super::object::{Expect, Origin, SNIFF_LEN, check_bytes, expectation, link_finding, read_up_to};
use super::report::{Check, Finding, InputError, InputErrorKind, Issue, Report};
use super::target::Target;
use super::{deb, decode, tarball};

/// Below this size a plain read is cheaper than setting up a mapping.
const MMAP_MIN: u64 = 256 << 10;
/// What a run accepts beyond the checks themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// An input that holds no regular file passes (else it is a `nothing_checked` error).
    pub allow_empty: bool,
}

/// Verify every path: binaries, directories (walked), .deb packages, tarballs. An input
/// that cannot be read is recorded in `input_errors` and the others are still checked.
pub fn verify_paths(paths: &[PathBuf], target: &Target, options: Options) -> Report {
    let mut report = Report::default();
    for path in paths {
        let part = verify_input(path, target);
        if part.files_checked == 0 && part.input_errors.is_empty() && !options.allow_empty {
            report.findings.push(nothing_checked(path));
        }
        report.merge(part);
    }
    report.sort();
    report
}

fn verify_input(path: &Path, target: &Target) -> Report {
    match std::fs::metadata(path) {
        Err(err) => Report::unreadable(InputError::io(path, &err)),
        Ok(meta) if meta.is_dir() => verify_dir(path, target),
        Ok(meta) if meta.is_file() => check_file(path, Expect::Binary, target),
        // A FIFO or device would block or never end; a release holds neither.
        Ok(_) => Report::unreadable(InputError::new(path, InputErrorKind::Io, "not a regular file or directory")),
    }
}

pub(super) fn nothing_checked(path: &Path) -> Finding {
    let what = if path.is_dir() {
        "the folder holds no regular file (only links, special files or empty folders)"
    } else {
        "the archive holds no regular file"
    };
    Issue::error(
        Check::NothingChecked,
        "at least one regular file to check".to_string(),
        what.to_string(),
        "check the path and the build step that fills it; pass --allow-empty when an empty input is expected"
            .to_string(),
    )
    .into_finding(path, None)
}

/// Check bytes already in memory as if they were a file named on the command line.
#[cfg(any(test, fuzzing))]
pub fn verify_bytes(data: &[u8], file: &Path, target: &Target) -> Report {
    let mut report = Report { files_checked: 1, ..Report::default() };
    let origin = Origin::new(file, None);
    check_bytes(data, &origin, Expect::Binary, target, &mut report, 0);
    report.sort();
    report
}

/// Open the archive `data` (asar, zip, gzip, tarball) as if it were a file called `name` in
/// a folder; data that sniffs as no archive gives an empty report.
#[cfg(any(test, fuzzing))]
pub fn verify_archive_bytes(data: &[u8], name: &str, target: &Target) -> Report {
    let mut report = Report::default();
    let head = &data[..data.len().min(SNIFF_LEN)];
    if let Some(kind) = containers::sniff(name, head) {
        containers::open(kind, data, &Nest::new(Path::new(name), target, None, 1, tarball::open_nested), &mut report);
    }
    report.sort();
    report
}

/// One regular file of a walked tree.
struct Job {
    path: PathBuf,
    mode: u32,
    expect: Expect,
}

fn verify_dir(dir: &Path, target: &Target) -> Report {
    let mut report = Report::default();
    let mut jobs: Vec<Job> = Vec::new();
    // Path relative to `dir` -> index in `jobs`.
    let mut files: HashMap<PathBuf, usize> = HashMap::new();
    let mut symlinks: Vec<PathBuf> = Vec::new();
    // Symlinks are not followed by the walk; each is resolved inside the tree below.
    for entry in WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let at = err.path().unwrap_or(dir).to_path_buf();
                report.input_errors.push(InputError::new(&at, InputErrorKind::Io, err.to_string()));
                continue;
            }
        };
        if entry.file_type().is_symlink() && entry.depth() > 0 {
            symlinks.push(entry.into_path());
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(err) => {
                report.input_errors.push(InputError::new(entry.path(), InputErrorKind::Io, err.to_string()));
                continue;
            }
        };
        let mode = file_mode(&meta);
        let expect = expectation(&entry.file_name().to_string_lossy(), mode);
        if let Ok(rel) = entry.path().strip_prefix(dir) {
            files.insert(rel.to_path_buf(), jobs.len());
        }
        jobs.push(Job { path: entry.into_path(), mode, expect });
    }
    for link in &symlinks {
        let rel = link.strip_prefix(dir).unwrap_or(link);
        let to = match std::fs::read_link(link) {
            Ok(to) => to,
            Err(err) => {
                report.input_errors.push(InputError::io(link, &err));
                continue;
            }
        };
        match links::resolve(rel, &to, Root::Detached, &mut |at| disk_node(dir, at)) {
            // The target is checked once, as a file of the tree, with the link's name counted.
            Ok(Resolved::File(real)) => {
                if let Some(&i) = files.get(&real) {
                    let name = rel.file_name().unwrap_or_default().to_string_lossy();
                    let job = &mut jobs[i];
                    job.expect = job.expect.raised(expectation(&name, job.mode));
                }
            }
            Ok(Resolved::Dir | Resolved::Other | Resolved::Elsewhere) => {}
            Err(LinkError::Io(at, err)) => report.input_errors.push(InputError::io(&dir.join(at), &err)),
            Err(err) => report.findings.push(link_finding(rel, &to, &err, "folder").into_finding(link, None)),
        }
    }
    report.merge(run_parallel(&jobs, |job| check_file(&job.path, job.expect, target)));
    report
}

/// What a folder holds at `rel`, without following a link there.
fn disk_node(dir: &Path, rel: &Path) -> io::Result<Node> {
    let path = dir.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => Ok(Node::Link(std::fs::read_link(&path)?)),
        Ok(meta) if meta.is_dir() => Ok(Node::Dir),
        Ok(meta) if meta.is_file() => Ok(Node::File),
        Ok(_) => Ok(Node::Other),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Node::Missing),
        Err(err) => Err(err),
    }
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode()
}

#[cfg(not(unix))]
fn file_mode(_meta: &std::fs::Metadata) -> u32 {
    0
}

/// Run `job` over `items` on a few workers per core; the reports are merged (and later
/// sorted), so the outcome does not depend on scheduling.
fn run_parallel<T: Sync>(items: &[T], job: impl Fn(&T) -> Report + Sync) -> Report {
    // Per file the CPU work is small and, on a cold cache, each worker mostly
    // waits on page faults: 4 workers per core hide that latency (measured
    // on 2 cores: cold walk of 250 MB went from ~45 ms with 2 workers to ~23 ms
    // with 8; warm, no difference).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = (cores * 4).min(16).min(items.len()).max(1);
    let next = AtomicUsize::new(0);
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut local = Report::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        local.merge(job(item));
                    }
                    local
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut report = Report::default();
    for part in reports {
        report.merge(part);
    }
    report
}

/// A file's bytes: mapped when large (pages are read on first touch), read otherwise.
enum Bytes {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    /// Read a range ahead: an archive about to be inflated is read sequentially.
    fn prefetch(&self, range: Range<usize>) {
        if let Bytes::Map(map) = self {
            // Only a hint: failure changes speed, not results.
            let _ = map.advise_range(memmap2::Advice::WillNeed, range.start, range.len());
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(map) => map,
            Bytes::Owned(vec) => vec,
        }
    }
}

fn load(file: &mut File, len: u64, limit: Option<usize>, path: &Path) -> Result<Bytes, InputError> {
    let io_err = |err: io::Error| InputError::io(path, &err);
    if limit.is_none() && len >= MMAP_MIN {
        // SAFETY: the mapping is read-only and private to this process. The
        // remaining hazard is another process truncating the file while it is
        // mapped (SIGBUS); release artifacts are not rewritten during a check.
        let map = unsafe { memmap2::Mmap::map(&*file) }.map_err(io_err)?;
        // The ELF checks touch a few scattered pages (headers, .dynstr,
        // .gnu.version_r, section headers at the end); default readahead would
        // pull ~128 KiB around each, most of a cold tree's I/O. Only a hint.
        let _ = map.advise(memmap2::Advice::Random);
        return Ok(Bytes::Map(map));
    }
    let cap = limit.map_or(len, |l| len.min(l as u64));
    let mut buf = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0)).map_err(io_err)?;
    file.take(cap).read_to_end(&mut buf).map_err(io_err)?;
    Ok(Bytes::Owned(buf))
}

/// One file on disk: sniff 24 bytes, then read it only if it needs checking (an archive
/// that sniff finds is read whole and its files checked).
fn check_file(path: &Path, expect: Expect, target: &Target) -> Report {
    read_and_check(path, expect, target).unwrap_or_else(Report::unreadable)
}

fn read_and_check(path: &Path, expect: Expect, target: &Target) -> Result<Report, InputError> {
    let mut file = File::open(path).map_err(|err| InputError::io(path, &err))?;
    let len = file.metadata().map_err(|err| InputError::io(path, &err))?.len();
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    // A plain `.tar` is known by the `ustar` at byte 257, past the usual 24 bytes.
    let mut head = [0u8; 512];
    let want = if name.to_ascii_lowercase().ends_with(".tar") { head.len() } else { 24 };
    let n = read_up_to(&mut file, &mut head[..want]).map_err(|err| InputError::io(path, &err))?;
    let head = &head[..n];

    let is_deb_name = path.extension().is_some_and(|ext| ext == "deb" || ext == "udeb");
    if deb::is_deb_head(head) || (is_deb_name && expect == Expect::Binary) {
        return Ok(deb::verify_deb_file(path, target));
    }
    // Tarballs are read when named on the command line; inside a folder they are data.
    if expect == Expect::Binary
        && let Some(codec) = decode::codec_for_name(path)
    {
        return Ok(tarball::verify_tarball_file(path, codec, target));
    }
    let is_object = head.starts_with(&ELF_MAGIC) || macho::is_macho_magic(head);
    if !is_object && let Some(kind) = containers::sniff(&name, head) {
        if let Kind::Tar(codec) = kind {
            return Ok(tarball::verify_tarball_file(path, codec, target));
        }
        let data = load(&mut file, len, None, path)?;
        let mut report = Report { files_checked: 1, ..Report::default() };
        containers::open(kind, &data, &Nest::new(path, target, None, 1, tarball::open_nested), &mut report);
        return Ok(report);
    }
    let mut report = Report { files_checked: 1, ..Report::default() };
    let limit = if is_object {
        None
    } else if expect != Expect::Any {
        Some(SNIFF_LEN)
    } else {
        return Ok(report); // not executable, not an object: not our business
    };
    let data = load(&mut file, len, limit, path)?;
    let prefetch = |range: Range<usize>| data.prefetch(range);
    let origin = Origin { file: path, inner: None, prefetch: Some(&prefetch) };
    check_bytes(&data, &origin, expect, target, &mut report, 0);
    Ok(report)
}
