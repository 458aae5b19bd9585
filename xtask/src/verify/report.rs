//! Findings, the report that collects them, its text table, verdict and JSON.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

/// What was checked. One variant per rule so callers and tests match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A file that must be a binary has zero bytes.
    Empty,
    /// A structure points past the end of the data (a cut copy or download).
    Truncated,
    /// Structure inside the data is inconsistent (bad ident, entry sizes...).
    Malformed,
    /// A Git LFS pointer was packaged instead of the object it points to.
    LfsPointer,
    /// Not the executable format of the target (script given explicitly, Mach-O on Linux...).
    Format,
    Class,
    Endianness,
    Machine,
    ArmEabi,
    FloatAbi,
    Interpreter,
    /// `GLIBC_x.y` required above the target's floor.
    Glibc,
    /// `GLIBC_PRIVATE` or a GLIBC tag this tool does not know: reported, not compared.
    GlibcTag,
    /// Mach-O CPU type (or no matching slice in a fat binary).
    MachoCpu,
    /// PyInstaller cookie / TOC unreadable.
    PyinstallerArchive,
    /// One PyInstaller TOC entry unreadable (bounds, inflate, size).
    PyinstallerEntry,
    /// Tar member with an absolute path or a `..` component.
    UnsafeMemberPath,
    /// The .deb's control `Architecture:` does not match the target.
    DebArchitecture,
    /// A symbolic or hard link that dangles, loops or points out of the tree.
    Link,
    /// An input that holds no regular file to check (an empty folder or package).
    NothingChecked,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Empty => "empty",
            Check::Truncated => "truncated",
            Check::Malformed => "malformed",
            Check::LfsPointer => "lfs_pointer",
            Check::Format => "format",
            Check::Class => "class",
            Check::Endianness => "endianness",
            Check::Machine => "machine",
            Check::ArmEabi => "arm_eabi",
            Check::FloatAbi => "float_abi",
            Check::Interpreter => "interpreter",
            Check::Glibc => "glibc",
            Check::GlibcTag => "glibc_tag",
            Check::MachoCpu => "macho_cpu",
            Check::PyinstallerArchive => "pyinstaller_archive",
            Check::PyinstallerEntry => "pyinstaller_entry",
            Check::UnsafeMemberPath => "unsafe_member_path",
            Check::DebArchitecture => "deb_architecture",
            Check::Link => "link",
            Check::NothingChecked => "nothing_checked",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    #[serde(serialize_with = "lossy_path")]
    pub file: PathBuf,
    /// Where inside `file`: a .deb member, a PyInstaller entry, or
    /// "deb member -> pyinstaller entry".
    pub inner: Option<String>,
    pub check: Check,
    pub severity: Severity,
    pub expected: String,
    pub found: String,
    pub fix: String,
    /// Byte offset the finding refers to, within the innermost object named.
    pub offset: Option<u64>,
}

/// A finding before it is tied to a file: what the per-object rules return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub check: Check,
    pub severity: Severity,
    pub expected: String,
    pub found: String,
    pub fix: String,
    pub offset: Option<u64>,
}

impl Issue {
    pub fn error(check: Check, expected: String, found: String, fix: String) -> Issue {
        Issue { check, severity: Severity::Error, expected, found, fix, offset: None }
    }

    pub fn into_finding(self, file: &Path, inner: Option<String>) -> Finding {
        Finding {
            file: file.to_path_buf(),
            inner,
            check: self.check,
            severity: self.severity,
            expected: self.expected,
            found: self.found,
            fix: self.fix,
            offset: self.offset,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveSummary {
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    /// Set when the archive sits inside a .deb member.
    pub inner: Option<String>,
    /// major*100 + minor, as the cookie stores it (311 = Python 3.11).
    pub python_version: u32,
    pub python_libname: String,
    /// TOC entries.
    pub entries: u32,
    /// Entries that are ELF (or Mach-O) objects and were checked.
    pub binaries: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Inputs (or files inside a folder) that could not be read; the others are still checked.
    pub input_errors: Vec<InputError>,
    /// Files looked at on disk or in .deb data members (not counting archive entries).
    pub files_checked: u64,
    /// ELF / Mach-O objects checked, including those nested in archives.
    pub elfs_checked: u64,
    pub archives: Vec<ArchiveSummary>,
}

/// Warnings that say the same thing (check, expected, found, fix) about different objects:
/// one line in the table and one JSON object, with a count and the first few places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarningGroup<'r> {
    pub check: Check,
    pub severity: Severity,
    pub expected: &'r str,
    pub found: &'r str,
    pub fix: &'r str,
    /// Warnings in the group.
    pub count: usize,
    /// Distinct files they are in.
    pub files: usize,
    /// The first [`EXAMPLES`] places, in report order.
    pub examples: Vec<Place<'r>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Place<'r> {
    #[serde(serialize_with = "lossy_path")]
    pub file: &'r Path,
    pub inner: Option<&'r str>,
    pub offset: Option<u64>,
}

/// Places named per warning group.
pub const EXAMPLES: usize = 3;

/// The JSON document: errors one by one, warnings grouped, then what could not be read.
#[derive(Serialize)]
struct JsonReport<'r> {
    findings: Vec<&'r Finding>,
    warnings: Vec<WarningGroup<'r>>,
    input_errors: &'r [InputError],
    files_checked: u64,
    elfs_checked: u64,
    archives: &'r [ArchiveSummary],
}

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors() > 0
    }

    /// 2 when an input could not be read, else 1 when a check failed, else 0.
    pub fn exit_code(&self) -> i32 {
        if !self.input_errors.is_empty() {
            2
        } else if self.has_errors() {
            1
        } else {
            0
        }
    }

    /// The report of an input that could not be read.
    pub(crate) fn unreadable(err: InputError) -> Report {
        Report { input_errors: vec![err], ..Report::default() }
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == severity).count()
    }

    /// Findings with the given check, for callers and tests.
    #[cfg(test)]
    pub fn with_check(&self, check: Check) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.check == check).collect()
    }

    pub(crate) fn merge(&mut self, other: Report) {
        self.findings.extend(other.findings);
        self.input_errors.extend(other.input_errors);
        self.files_checked += other.files_checked;
        self.elfs_checked += other.elfs_checked;
        self.archives.extend(other.archives);
    }

    /// Stable order: by file, then inner path, then check; workers finish in any order.
    pub(crate) fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            (&a.file, &a.inner, a.check, a.severity, a.offset).cmp(&(&b.file, &b.inner, b.check, b.severity, b.offset))
        });
        self.input_errors.sort_by(|a, b| (&a.file, &a.member, a.offset).cmp(&(&b.file, &b.member, b.offset)));
        self.archives.sort_by(|a, b| (&a.path, &a.inner).cmp(&(&b.path, &b.inner)));
    }

    /// The warnings grouped by what they say, in order of first appearance.
    pub fn warning_groups(&self) -> Vec<WarningGroup<'_>> {
        let mut groups: Vec<WarningGroup<'_>> = Vec::new();
        let mut files: Vec<std::collections::HashSet<&Path>> = Vec::new();
        let mut index: std::collections::HashMap<(Check, &str, &str, &str), usize> = Default::default();
        for f in self.findings.iter().filter(|f| f.severity == Severity::Warning) {
            let key = (f.check, f.expected.as_str(), f.found.as_str(), f.fix.as_str());
            let i = *index.entry(key).or_insert_with(|| {
                groups.push(WarningGroup {
                    check: f.check,
                    severity: f.severity,
                    expected: &f.expected,
                    found: &f.found,
                    fix: &f.fix,
                    count: 0,
                    files: 0,
                    examples: Vec::new(),
                });
                files.push(Default::default());
                groups.len() - 1
            });
            let group = &mut groups[i];
            group.count += 1;
            if files[i].insert(&f.file) {
                group.files += 1;
            }
            if group.examples.len() < EXAMPLES {
                group.examples.push(Place { file: &f.file, inner: f.inner.as_deref(), offset: f.offset });
            }
        }
        groups
    }

    /// One line: "FAIL ..." when any error finding exists or an input could not be read, else "OK ...".
    pub fn verdict(&self, target_name: &str) -> String {
        let (errors, warnings) = (self.errors(), self.warnings());
        let word = if errors > 0 || !self.input_errors.is_empty() { "FAIL" } else { "OK" };
        let unreadable = match self.input_errors.len() {
            0 => String::new(),
            n => format!(", {n} input(s) unreadable"),
        };
        format!(
            "{word}: {errors} error(s), {warnings} warning(s){unreadable} for target {target_name}; \
             {} file(s), {} binary object(s), {} PyInstaller archive(s) checked",
            self.files_checked,
            self.elfs_checked,
            self.archives.len()
        )
    }

    /// Plain-text table: a header row, one row per error, one row per warning group.
    pub fn render_table(&self) -> String {
        const HEADERS: [&str; 7] = ["SEVERITY", "FILE", "INNER", "CHECK", "EXPECTED", "FOUND", "FIX"];
        let found = |found: &str, offset: Option<u64>| match offset {
            Some(off) => format!("{found} (at byte {off})"),
            None => found.to_string(),
        };
        let mut rows: Vec<[String; 7]> = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| {
                [
                    "error".to_string(),
                    f.file.to_string_lossy().into_owned(),
                    f.inner.clone().unwrap_or_else(|| "-".to_string()),
                    f.check.to_string(),
                    f.expected.clone(),
                    found(&f.found, f.offset),
                    f.fix.clone(),
                ]
            })
            .collect();
        for g in self.warning_groups() {
            let offset = if g.count == 1 { g.examples[0].offset } else { None };
            let (file, inner) = g.places();
            rows.push([
                match g.count {
                    1 => "warning".to_string(),
                    n => format!("warning x{n}"),
                },
                file,
                inner,
                g.check.to_string(),
                g.expected.to_string(),
                found(g.found, offset),
                g.fix.to_string(),
            ]);
        }
        let mut widths = HEADERS.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut push_row = |cells: &[&str]| {
            let last = cells.len() - 1;
            for (i, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    let pad = widths[i] - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push('\n');
        };
        push_row(&HEADERS);
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            push_row(&cells);
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(&JsonReport {
            findings: self.findings.iter().filter(|f| f.severity == Severity::Error).collect(),
            warnings: self.warning_groups(),
            input_errors: &self.input_errors,
            files_checked: self.files_checked,
            elfs_checked: self.elfs_checked,
            archives: &self.archives,
        })
    }
}

impl WarningGroup<'_> {
    /// The FILE and INNER cells: the examples, and how many more there are.
    fn places(&self) -> (String, String) {
        let more = |shown: usize, all: usize| match all - shown {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        let mut files: Vec<String> = Vec::new();
        for p in &self.examples {
            let name = p.file.to_string_lossy().into_owned();
            if !files.contains(&name) {
                files.push(name);
            }
        }
        let file = format!("{}{}", files.join(", "), more(files.len(), self.files));
        let inners: Vec<&str> = self.examples.iter().filter_map(|p| p.inner).collect();
        let inner = if inners.is_empty() {
            "-".to_string()
        } else {
            format!("{}{}", inners.join(", "), more(inners.len(), self.count))
        };
        (file, inner)
    }
}

/// The input could not be read at all, so nothing can be said about it (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputError {
    #[serde(serialize_with = "lossy_path")]
    pub file: PathBuf,
    /// The .deb member (ar member, or "ar member -> tar member"), or the tarball's
    /// member, being read.
    pub member: Option<String>,
    /// Byte offset in the file, or in the member's (decompressed) stream when `member` is set.
    pub offset: Option<u64>,
    pub kind: InputErrorKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputErrorKind {
    /// open/read/metadata failed.
    Io,
    /// Not an ar archive, or an ar member header is invalid. Offset: in the file.
    ArHeader,
    /// The file ends before an ar member's declared size. Offset: in the file.
    Truncated,
    /// `debian-binary` is not "2.x".
    DebianBinary,
    /// A required member (control.tar.*, data.tar.*) is missing or out of order.
    MissingMember,
    /// data.tar / control.tar compressed with a codec not supported here.
    UnsupportedCompression,
    /// The compressed stream is corrupt or cut. Offset: compressed data reached, in the file.
    Decompress,
    /// The tar stream is corrupt or cut (checksum, header, short data).
    /// Offset: in the member's decompressed stream.
    Tar,
    /// The decompressed stream is not the one its writer recorded (checked only when the
    /// writer hands its record to the verify pass, as the .deb writer does).
    Mismatch,
    /// A data.tar file differs from the package's `md5sums`, md5sums names a file data.tar
    /// lacks or is missing or malformed (checked only by [`crate::verify::deb::read_checked_control`]).
    Md5sums,
    /// An Electron asar archive's header or file table is unreadable. Offset: in the archive.
    Asar,
    /// A zip archive's directory or an entry is unreadable. Offset: in the archive.
    Zip,
    /// A nested archive goes past a safety limit: nesting depth, inflated size or
    /// compression ratio (a decompression bomb, or damage).
    Limit,
}

impl InputError {
    pub(crate) fn new(file: &Path, kind: InputErrorKind, detail: impl Into<String>) -> Self {
        InputError { file: file.to_path_buf(), member: None, offset: None, kind, detail: detail.into() }
    }

    pub(crate) fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    pub(crate) fn member(mut self, member: impl Into<String>) -> Self {
        self.member = Some(member.into());
        self
    }

    pub(crate) fn io(file: &Path, err: &std::io::Error) -> Self {
        InputError::new(file, InputErrorKind::Io, err.to_string())
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {}", self.file.display())?;
        if let Some(member) = &self.member {
            write!(f, ", member {member}")?;
        }
        if let Some(offset) = self.offset {
            write!(f, ", at byte {offset}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for InputError {}

/// Paths are not always UTF-8; JSON output must not fail because of one.
fn lossy_path<P: AsRef<Path>, S: Serializer>(path: &P, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.as_ref().to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_match_json() {
        use Check::*;
        for check in [
            Empty,
            Truncated,
            Malformed,
            LfsPointer,
            Format,
            Class,
            Endianness,
            Machine,
            ArmEabi,
            FloatAbi,
            Interpreter,
            Glibc,
            GlibcTag,
            MachoCpu,
            PyinstallerArchive,
            PyinstallerEntry,
            UnsafeMemberPath,
            DebArchitecture,
            Link,
            NothingChecked,
        ] {
            let json = serde_json::to_value(check).unwrap();
            assert_eq!(json, check.as_str(), "{check:?}");
        }
    }
}
