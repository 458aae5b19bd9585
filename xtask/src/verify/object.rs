//! One blob against the target: a file on disk, an archive member or a PyInstaller entry,
//! checked by what its name and mode make it expected to be (a library, an executable,
//! anything), with PyInstaller archives inside it looked into.

use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;

use super::elf::{self, ELF_MAGIC, macho};
use super::links::LinkError;
use super::pyinstaller::{self, Location};
use super::report::{ArchiveSummary, Check, Issue, Report};
use super::target::{BinFormat, Target};

/// Bytes read to classify a file that is not an object (LFS pointer, script...).
pub const SNIFF_LEN: usize = 512;
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
