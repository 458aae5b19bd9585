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

use super::elf::{self, ELF_MAGIC, macho};
use super::links::{self, LinkError, Node, Resolved, Root};
use super::pyinstaller::{self, Location};
use super::report::{ArchiveSummary, Check, Finding, InputError, InputErrorKind, Issue, Report};
use super::target::{BinFormat, Target};
use super::{deb, tarball};

/// Bytes read to classify a file that is not an object (LFS pointer, script...).
pub const SNIFF_LEN: usize = 512;
/// Below this size a plain read is cheaper than setting up a mapping.
const MMAP_MIN: u64 = 256 << 10;
/// A PyInstaller archive inside a PyInstaller archive is looked into; deeper is not.
const MAX_DEPTH: u8 = 2;
const LFS_POINTER: &[u8] = b"version https://git-lfs.github.com/spec/v1";

/// How strongly a file is expected to be a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Named on the command line: must be an object of the target's format.
    Binary,
    /// Named like a library (`*.so`, `*.so.1.2`, `*.node`, `*.dylib`): an object of the
    /// target's format, or a GNU ld script (libc6-dev's `libc.so` is one). Names that only
    /// contain `.so.` (`/etc/ld.so.conf`, `libstdc++.so.6.0.30-gdb.py`) are not library names.
    Library,
    /// Has an exec bit: must be runnable (an object, or a `#!` script).
    Executable,
    /// Anything else: checked only if it turns out to be an object.
    Any,
}

impl Expect {
    /// The expectation of a file also reached through a link whose own name gives
    /// `by_link`: a plain file named like a library through a link must be one.
    pub fn raised(self, by_link: Expect) -> Expect {
        match self {
            Expect::Any => by_link,
            other => other,
        }
    }
}

/// The directory-walk rule: library names first, then exec bits.
pub fn expectation(file_name: &str, mode: u32) -> Expect {
    // `libfoo.so` or `libfoo.so.6.0.30`: after `.so`, nothing or a version of digits and dots.
    let shared_object = file_name.match_indices(".so").any(|(i, _)| {
        let rest = &file_name[i + 3..];
        rest.is_empty()
            || (rest.starts_with('.') && rest.len() > 1 && rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
    });
    let library = shared_object || file_name.ends_with(".node") || file_name.ends_with(".dylib");
    if library {
        Expect::Library
    } else if mode & 0o111 != 0 {
        Expect::Executable
    } else {
        Expect::Any
    }
}

/// What a run accepts beyond the checks themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// An input that holds no regular file passes (else it is a `nothing_checked` error).
    pub allow_empty: bool,
}

/// Where a blob came from, for findings.
pub(crate) struct Origin<'a> {
    pub file: &'a Path,
    pub inner: Option<String>,
    /// Asks the storage behind the blob to read a range ahead (see `Bytes`).
    pub prefetch: Option<&'a dyn Fn(Range<usize>)>,
}

impl<'a> Origin<'a> {
    pub(crate) fn new(file: &'a Path, inner: Option<String>) -> Self {
        Origin { file, inner, prefetch: None }
    }
}

impl Origin<'_> {
    fn push(&self, report: &mut Report, issue: Issue) {
        report.findings.push(issue.into_finding(self.file, self.inner.clone()));
    }
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

fn nothing_checked(path: &Path) -> Finding {
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

/// The finding for a link of a folder or archive (`tree` names which) that does not
/// resolve inside it.
pub(crate) fn link_finding(link: &Path, to: &Path, err: &LinkError, tree: &str) -> Issue {
    let fix = match err {
        LinkError::Absolute(_) | LinkError::AboveRoot => format!(
            "the link's target is not part of the {tree}: give the link a relative target inside the {tree}, \
             or put the file itself there"
        ),
        LinkError::Loop => "the links point at each other: point one of them at a file".to_string(),
        _ => format!("the link's target is missing: put the file in the {tree} or drop the link"),
    };
    Issue::error(
        Check::Link,
        format!("a link to a file or folder inside the {tree}"),
        format!("{} -> {}: {}", link.display(), to.display(), err.describe()),
        fix,
    )
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

/// One file on disk: sniff 24 bytes, then read it only if it needs checking.
fn check_file(path: &Path, expect: Expect, target: &Target) -> Report {
    read_and_check(path, expect, target).unwrap_or_else(Report::unreadable)
}

fn read_and_check(path: &Path, expect: Expect, target: &Target) -> Result<Report, InputError> {
    let mut file = File::open(path).map_err(|err| InputError::io(path, &err))?;
    let len = file.metadata().map_err(|err| InputError::io(path, &err))?.len();
    let mut head = [0u8; 24];
    let n = read_up_to(&mut file, &mut head).map_err(|err| InputError::io(path, &err))?;
    let head = &head[..n];

    let is_deb_name = path.extension().is_some_and(|ext| ext == "deb" || ext == "udeb");
    if deb::is_deb_head(head) || (is_deb_name && expect == Expect::Binary) {
        return Ok(deb::verify_deb_file(path, target));
    }
    // Tarballs are read when named on the command line; inside a folder they are data.
    if expect == Expect::Binary
        && let Some(codec) = tarball::codec_for_name(path)
    {
        return Ok(tarball::verify_tarball_file(path, codec, target));
    }
    let mut report = Report { files_checked: 1, ..Report::default() };
    let is_object = head.starts_with(&ELF_MAGIC) || macho::is_macho_magic(head);
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

/// Apply every rule that fits `data`: ELF / Mach-O checks, PyInstaller entries,
/// and the "must be a binary" rules (empty, truncated, LFS pointer, other format).
pub(crate) fn check_bytes(data: &[u8], origin: &Origin, expect: Expect, target: &Target, out: &mut Report, depth: u8) {
    let macho_target = matches!(target.format, BinFormat::MachO { .. });
    if data.is_empty() {
        if expect != Expect::Any {
            origin.push(
                out,
                Issue::error(
                    Check::Empty,
                    target.describe(),
                    "empty file (0 bytes)".to_string(),
                    "the build or copy step wrote nothing: rebuild and check its output".to_string(),
                ),
            );
        }
        return;
    }

    let short_elf = data.len() < 4 && ELF_MAGIC.starts_with(data) && expect != Expect::Any;
    if data.starts_with(&ELF_MAGIC) || short_elf {
        if macho_target && expect == Expect::Any {
            return; // a non-executable of the other platform's format
        }
        out.elfs_checked += 1;
        match elf::inspect(data) {
            Err(err) => origin.push(out, err.into_issue()),
            Ok(info) => {
                for issue in elf::check(&info, target) {
                    origin.push(out, issue);
                }
                // A one-file app is PyInstaller's bootloader, an executable that reads the
                // archive from its own file: a library never carries one.
                let location = match &info.pydata {
                    Some(range) => Some(Location::PydataSection(range.clone())),
                    None if info.is_executable() => Some(Location::Scan),
                    None => None,
                };
                if let Some(location) = location
                    && depth < MAX_DEPTH
                {
                    check_pyinstaller(data, location, origin, target, out, depth);
                }
            }
        }
        return;
    }

    if macho::is_macho_magic(data) {
        match macho::inspect(data) {
            Ok(Some(_)) if !macho_target && expect == Expect::Any => return,
            Ok(Some(info)) => {
                out.elfs_checked += 1;
                for issue in macho::check(&info, target) {
                    origin.push(out, issue);
                }
                if macho_target && depth < MAX_DEPTH {
                    check_pyinstaller(data, Location::Scan, origin, target, out, depth);
                }
                return;
            }
            Err(err) if expect != Expect::Any || macho_target => {
                out.elfs_checked += 1;
                origin.push(out, err.into_issue());
                return;
            }
            Err(_) | Ok(None) => {} // e.g. a Java class file: judged below
        }
    }

    if expect == Expect::Any {
        return;
    }
    if data.starts_with(LFS_POINTER) {
        origin.push(
            out,
            Issue::error(
                Check::LfsPointer,
                target.describe(),
                format!("Git LFS pointer ({})", lfs_summary(data)),
                "run `git lfs pull` (or enable LFS in CI checkout) before building the release".to_string(),
            ),
        );
        return;
    }
    if expect == Expect::Executable && data.starts_with(b"#!") {
        return; // an executable script runs anywhere its interpreter exists
    }
    if expect == Expect::Library && is_linker_script(data) {
        return; // `libc.so` in libc6-dev: the linker reads it, the loader never sees it
    }
    origin.push(
        out,
        Issue::error(
            Check::Format,
            target.describe(),
            describe_format(data),
            match expect {
                Expect::Binary => "this path must be a binary for the target: check what the build step put here",
                Expect::Library => {
                    "a file named like a library that is neither a binary for the target nor a linker script: \
                     rebuild it or check what the build step put here"
                }
                _ => "an executable file that is not a binary for the target: drop the exec bit or replace the file",
            }
            .to_string(),
        ),
    );
}

fn check_pyinstaller(data: &[u8], location: Location, origin: &Origin, target: &Target, out: &mut Report, depth: u8) {
    if let Some(prefetch) = origin.prefetch {
        match &location {
            Location::PydataSection(range) => prefetch(range.clone()),
            Location::Scan => prefetch(pyinstaller::scan_range(data.len())),
        }
    }
    let archive = match pyinstaller::locate(data, location) {
        Ok(Some(archive)) => archive,
        Ok(None) => return,
        Err(err) => {
            origin.push(out, err.into_issue());
            return;
        }
    };
    let summary = ArchiveSummary {
        path: origin.file.to_path_buf(),
        inner: origin.inner.clone(),
        python_version: 0,
        python_libname: String::new(),
        entries: 0,
        binaries: 0,
    };
    let nested_name = |name: &str| match &origin.inner {
        Some(outer) => format!("{outer} -> {name}"),
        None => name.to_string(),
    };
    let mut nested = Report::default();
    let walked = pyinstaller::walk_entries(data, &archive, summary, |name, bytes| {
        let before = nested.elfs_checked;
        let inner_origin = Origin::new(origin.file, Some(nested_name(name)));
        check_bytes(bytes, &inner_origin, Expect::Any, target, &mut nested, depth + 1);
        nested.elfs_checked > before
    });
    for err in walked.errors {
        let inner = err.entry.as_deref().map(nested_name).or_else(|| origin.inner.clone());
        out.findings.push(err.into_issue().into_finding(origin.file, inner));
    }
    out.merge(nested);
    out.archives.push(walked.summary);
}

fn lfs_summary(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(&data[..data.len().min(SNIFF_LEN)]);
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string());
    match (field("oid "), field("size ")) {
        (Some(oid), Some(size)) => format!("{oid}, {size} bytes"),
        (Some(oid), None) => oid,
        _ => "spec v1".to_string(),
    }
}

/// A short name for what a non-binary file is, for the "found" column.
fn describe_format(data: &[u8]) -> String {
    let head = &data[..data.len().min(SNIFF_LEN)];
    if head.starts_with(b"#!") {
        let line = head.split(|&b| b == b'\n').next().unwrap_or(head);
        let line = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
        return format!("script ({line})");
    }
    let known: &[(&[u8], &str)] = &[
        (b"MZ", "PE/COFF (Windows) executable"),
        (b"\x1f\x8b", "gzip data"),
        (b"PK\x03\x04", "zip archive"),
        (b"!<arch>\n", "ar archive"),
        (b"\xca\xfe\xba\xbe", "Java class file (or broken universal Mach-O)"),
        (b"\xfd7zXZ\x00", "xz data"),
        (b"\x28\xb5\x2f\xfd", "zstd data"),
    ];
    if let Some((_, name)) = known.iter().find(|(magic, _)| head.starts_with(magic)) {
        return name.to_string();
    }
    if macho::is_macho_magic(head) {
        return "Mach-O (unreadable header)".to_string();
    }
    if is_text(head) {
        return "text".to_string();
    }
    let hex: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("data (starts with {})", hex.join(" "))
}

/// A GNU ld script, as `ld` accepts in place of a library: text whose first command (after
/// comments) is one of the script commands a `.so` script uses.
pub(crate) fn is_linker_script(data: &[u8]) -> bool {
    if !is_text(data) {
        return false;
    }
    let head = String::from_utf8_lossy(&data[..data.len().min(SNIFF_LEN)]).into_owned();
    let mut rest = head.as_str();
    loop {
        rest = rest.trim_start();
        match rest.strip_prefix("/*").and_then(|r| r.split_once("*/")) {
            Some((_, after)) => rest = after,
            None => break,
        }
    }
    ["GROUP", "INPUT", "OUTPUT_FORMAT", "SEARCH_DIR", "OUTPUT_ARCH", "AS_NEEDED"]
        .iter()
        .any(|cmd| rest.strip_prefix(cmd).is_some_and(|r| r.trim_start().starts_with('(')))
}

/// UTF-8 without control characters other than whitespace, judged on the first
/// `SNIFF_LEN` bytes (a character cut at that boundary does not count against it).
pub(crate) fn is_text(data: &[u8]) -> bool {
    let head = &data[..data.len().min(SNIFF_LEN)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // Only an incomplete last character, cut by the sniff length, is forgiven.
        Err(err) if err.error_len().is_none() && head.len() == SNIFF_LEN => {
            std::str::from_utf8(&head[..err.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !text.is_empty() && text.chars().all(|c| !c.is_control() || c.is_whitespace())
}

/// Fill `buf` as far as the reader allows (a short read is not the end of the data).
pub(super) fn read_up_to<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}
