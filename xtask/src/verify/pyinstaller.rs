//! PyInstaller one-file archives (CArchive, PyInstaller 5.x/6.x layout).
//!
//! The bootloader is a normal executable; the bundled interpreter and
//! extensions live in the archive, so the outer ELF alone says little about the
//! real requirements (PyInstaller 6's bootloader needs glibc 2.14, the embedded
//! libpython of Debian 12 needs 2.35). Every entry that is an ELF or Mach-O object is checked with
//! the same rules as a file on disk.
//!
//! Every length and offset read from the cookie or the TOC is checked against
//! the data before it is used; decompression is bounded by the declared size.

use std::io::Read;
use std::ops::Range;

use flate2::read::ZlibDecoder;

use super::elf::{ELF_MAGIC, macho};
use super::report::{ArchiveSummary, Check, Issue, Severity};

/// "MEI\014\013\012\013\016", the cookie's first 8 bytes.
pub const COOKIE_MAGIC: [u8; 8] = [0x4D, 0x45, 0x49, 0x0C, 0x0B, 0x0A, 0x0B, 0x0E];
pub const COOKIE_LEN: usize = 88;
/// entry_length, data_offset, stored_length, uncompressed_length (u32 each), compressed, typecode.
const TOC_ENTRY_HEADER: usize = 18;
/// Never pre-allocate more than this for an inflated entry; the Vec grows with real output.
const MAX_PREALLOC: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Offset of the magic in the data.
    pub position: usize,
    pub pkg_length: u32,
    pub toc_offset: u32,
    pub toc_length: u32,
    /// major*100 + minor (311 = 3.11).
    pub python_version: u32,
    pub python_libname: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    /// Offset of this TOC record in the data (for messages).
    pub record_offset: usize,
    pub data_offset: u32,
    pub stored_length: u32,
    pub uncompressed_length: u32,
    pub compressed: bool,
    pub typecode: u8,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// Offset of the package start in the data; entry offsets count from here.
    pub package_start: usize,
    pub cookie: Cookie,
    pub entries: Vec<TocEntry>,
}

/// Where an archive was looked for; decides whether a bad cookie is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The ELF `pydata` section: the archive must be there and valid.
    PydataSection(Range<usize>),
    /// Anywhere in the file, as PyInstaller's bootloader and its `CArchiveReader` look:
    /// backwards from the end of the file for the cookie magic, the last one winning.
    /// The magic may also be a constant in some program's .rodata, so candidates that do
    /// not validate are skipped. Only the last [`SCAN_WINDOW`] bytes are searched.
    Scan,
}

/// How far before the end of the file the cookie is looked for. What follows the
/// cookie in a one-file build is small: the section names and section header table
/// (Linux, a few KiB) or the code signature (macOS, under 1 % of the file), so this
/// covers executables of more than a GiB while a scan of a huge file stays a few ms.
pub const SCAN_WINDOW: usize = 16 << 20;

/// The part of `data` a [`Location::Scan`] searches.
pub fn scan_range(len: usize) -> Range<usize> {
    len.saturating_sub(SCAN_WINDOW)..len
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyiError {
    /// `PyinstallerArchive` (cookie, TOC) or `PyinstallerEntry` (one entry's data).
    pub check: Check,
    /// Offset in the data the error is about.
    pub offset: u64,
    /// Entry name for entry errors.
    pub entry: Option<String>,
    pub detail: String,
}

impl PyiError {
    fn archive(offset: usize, detail: String) -> Self {
        PyiError { check: Check::PyinstallerArchive, offset: offset as u64, entry: None, detail }
    }

    fn entry(entry: &TocEntry, offset: usize, detail: String) -> Self {
        PyiError { check: Check::PyinstallerEntry, offset: offset as u64, entry: Some(entry.name.clone()), detail }
    }

    pub fn into_issue(self) -> Issue {
        let expected = match self.check {
            Check::PyinstallerEntry => "entry data inside the package that inflates to its declared size",
            _ => "valid PyInstaller cookie and TOC",
        };
        Issue {
            check: self.check,
            severity: Severity::Error,
            expected: expected.to_string(),
            found: self.detail,
            fix: "the one-file executable is corrupt or cut: rebuild it with PyInstaller and re-copy it".to_string(),
            offset: Some(self.offset),
        }
    }
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Find and parse the archive. `Ok(None)`: there is none.
pub fn locate(data: &[u8], location: Location) -> Result<Option<Archive>, PyiError> {
    match location {
        Location::PydataSection(range) => {
            let Some(section) = data.get(range.clone()) else {
                return Err(PyiError::archive(
                    range.start,
                    format!("pydata section {}..{} lies outside the data", range.start, range.end),
                ));
            };
            let Some(rel) = memchr::memmem::rfind(section, &COOKIE_MAGIC) else {
                return Err(PyiError::archive(
                    range.start,
                    format!("pydata section at {}..{} holds no cookie magic", range.start, range.end),
                ));
            };
            parse_within(data, range.start + rel, range.start).map(Some)
        }
        Location::Scan => {
            let window = scan_range(data.len());
            // Forward search (vectorised) collects the few candidates; the last one wins.
            let found: Vec<usize> = memchr::memmem::find_iter(&data[window.clone()], &COOKIE_MAGIC).collect();
            Ok(found.iter().rev().find_map(|&rel| parse_within(data, window.start + rel, 0).ok()))
        }
    }
}

/// As `parse`, with the package required to start at or after `floor`
/// (the pydata section's start).
fn parse_within(data: &[u8], position: usize, floor: usize) -> Result<Archive, PyiError> {
    let cookie = parse_cookie(data, position)?;
    let cookie_end = position + COOKIE_LEN;
    let pkg_len = cookie.pkg_length as usize;
    let package_start = cookie_end.checked_sub(pkg_len).ok_or_else(|| {
        PyiError::archive(
            position + 8,
            format!("pkg_length {} is larger than the {} bytes before the cookie's end", cookie.pkg_length, cookie_end),
        )
    })?;
    if package_start < floor {
        return Err(PyiError::archive(
            position + 8,
            format!(
                "pkg_length {} puts the package start at byte {package_start}, before the pydata section at {floor}",
                cookie.pkg_length
            ),
        ));
    }
    // The TOC lies between the entries and the cookie.
    let body_len = pkg_len.checked_sub(COOKIE_LEN).ok_or_else(|| {
        PyiError::archive(position + 8, format!("pkg_length {} is smaller than the cookie itself", cookie.pkg_length))
    })?;
    let toc_start = cookie.toc_offset as usize;
    let toc_end =
        toc_start.checked_add(cookie.toc_length as usize).filter(|&end| end <= body_len).ok_or_else(|| {
            PyiError::archive(
                position + 12,
                format!(
                    "TOC at package offset {} with length {} runs past the cookie (package body is {} bytes)",
                    cookie.toc_offset, cookie.toc_length, body_len
                ),
            )
        })?;
    let entries = parse_toc(data, package_start, toc_start, toc_end)?;
    Ok(Archive { package_start, cookie, entries })
}

fn parse_cookie(data: &[u8], position: usize) -> Result<Cookie, PyiError> {
    let raw = position.checked_add(COOKIE_LEN).and_then(|end| data.get(position..end)).ok_or_else(|| {
        PyiError::archive(
            position,
            format!("cookie at byte {position} needs {COOKIE_LEN} bytes, data ends at byte {}", data.len()),
        )
    })?;
    if raw[..8] != COOKIE_MAGIC {
        return Err(PyiError::archive(position, "cookie magic mismatch".to_string()));
    }
    let field = |at: usize| be32(raw, at).unwrap_or(0); // in range: raw is 88 bytes
    let libname = &raw[24..88];
    let libname_len = libname.iter().position(|&b| b == 0).unwrap_or(libname.len());
    Ok(Cookie {
        position,
        pkg_length: field(8),
        toc_offset: field(12),
        toc_length: field(16),
        python_version: field(20),
        python_libname: String::from_utf8_lossy(&libname[..libname_len]).into_owned(),
    })
}

fn parse_toc(data: &[u8], package_start: usize, toc_start: usize, toc_end: usize) -> Result<Vec<TocEntry>, PyiError> {
    let mut entries = Vec::new();
    let mut pos = toc_start;
    while pos < toc_end {
        let abs = package_start + pos;
        if toc_end - pos < TOC_ENTRY_HEADER {
            return Err(PyiError::archive(
                abs,
                format!("TOC record at package offset {pos} needs {TOC_ENTRY_HEADER} bytes, TOC ends at {toc_end}"),
            ));
        }
        let field = |at: usize| be32(data, abs + at).unwrap_or(0); // within toc_end, checked above
        let entry_length = field(0) as usize;
        if entry_length < TOC_ENTRY_HEADER + 1 || entry_length > toc_end - pos {
            return Err(PyiError::archive(
                abs,
                format!(
                    "TOC record at package offset {pos} has entry_length {entry_length} \
                     (minimum {}, {} bytes left in the TOC)",
                    TOC_ENTRY_HEADER + 1,
                    toc_end - pos
                ),
            ));
        }
        let name_bytes = &data[abs + TOC_ENTRY_HEADER..abs + entry_length];
        let Some(name_len) = name_bytes.iter().position(|&b| b == 0) else {
            return Err(PyiError::archive(
                abs + TOC_ENTRY_HEADER,
                format!("TOC record at package offset {pos}: name is not NUL-terminated"),
            ));
        };
        entries.push(TocEntry {
            record_offset: abs,
            data_offset: field(4),
            stored_length: field(8),
            uncompressed_length: field(12),
            compressed: data[abs + 16] != 0,
            typecode: data[abs + 17],
            name: String::from_utf8_lossy(&name_bytes[..name_len]).into_owned(),
        });
        pos += entry_length;
    }
    Ok(entries)
}

impl Archive {
    /// The entry's bytes, inflated when compressed, after bounds and size checks.
    pub fn entry_data<'d>(&self, data: &'d [u8], entry: &TocEntry) -> Result<std::borrow::Cow<'d, [u8]>, PyiError> {
        let start = entry.data_offset as usize;
        let stored = entry.stored_length as usize;
        // Entry data comes before the TOC.
        let toc_offset = self.cookie.toc_offset as usize;
        let Some(end) = start.checked_add(stored).filter(|&end| end <= toc_offset) else {
            return Err(PyiError::entry(
                entry,
                entry.record_offset + 4,
                format!(
                    "{}: data at package offset {start} + {stored} bytes runs past the TOC at {toc_offset}",
                    entry.name
                ),
            ));
        };
        let abs = self.package_start + start;
        let raw = &data[abs..self.package_start + end];
        let want = entry.uncompressed_length as usize;
        if !entry.compressed {
            if stored != want {
                return Err(PyiError::entry(
                    entry,
                    entry.record_offset + 8,
                    format!("{}: stored uncompressed with {stored} bytes but uncompressed_length {want}", entry.name),
                ));
            }
            return Ok(std::borrow::Cow::Borrowed(raw));
        }
        // Deflate expands at most ~1032:1, so the stored size bounds a sane guess.
        let guess = want.min(stored.saturating_mul(1032)).min(MAX_PREALLOC);
        let mut out = Vec::with_capacity(guess);
        // One byte over the declared size is enough to detect a lie.
        let read = ZlibDecoder::new(raw).take(u64::from(entry.uncompressed_length) + 1).read_to_end(&mut out);
        if let Err(err) = read {
            return Err(PyiError::entry(entry, abs, format!("{}: zlib stream does not inflate: {err}", entry.name)));
        }
        if out.len() != want {
            let got = if out.len() > want { format!("more than {want}") } else { out.len().to_string() };
            return Err(PyiError::entry(
                entry,
                abs,
                format!("{}: inflated to {got} bytes, TOC declares {want}", entry.name),
            ));
        }
        Ok(std::borrow::Cow::Owned(out))
    }
}

/// The archive's summary and the entries that could not be read.
pub(crate) struct Walked {
    pub summary: ArchiveSummary,
    pub errors: Vec<PyiError>,
}

/// Walk every entry; hand ELF / Mach-O entries to `check_binary(name, bytes)`,
/// which says whether it checked the entry as a binary object.
pub(crate) fn walk_entries(
    data: &[u8],
    archive: &Archive,
    mut summary: ArchiveSummary,
    mut check_binary: impl FnMut(&str, &[u8]) -> bool,
) -> Walked {
    let mut errors = Vec::new();
    summary.python_version = archive.cookie.python_version;
    summary.python_libname = archive.cookie.python_libname.clone();
    summary.entries = u32::try_from(archive.entries.len()).unwrap_or(u32::MAX);
    for entry in &archive.entries {
        if entry.stored_length == 0 && entry.uncompressed_length == 0 {
            continue; // runtime options ('o') and empty files carry no data
        }
        match archive.entry_data(data, entry) {
            Ok(bytes) => {
                if (bytes.starts_with(&ELF_MAGIC) || macho::is_macho_magic(&bytes)) && check_binary(&entry.name, &bytes)
                {
                    summary.binaries += 1;
                }
            }
            Err(err) => errors.push(err),
        }
    }
    Walked { summary, errors }
}
