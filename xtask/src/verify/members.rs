//! The files of an archive's tree (a .deb's data member, a tarball): member paths
//! that leave the tree are refused, each regular file is checked as the stream passes
//! it, and links are resolved against the whole tree once the stream has ended.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::containers::{self, Nest, OpenTar};
use super::elf::{ELF_MAGIC, macho};
use super::links::{self, Node, Resolved, Root};
use super::object::{self, Expect, Origin, read_up_to};
use super::report::{Check, Issue, Report};
use super::target::{BinFormat, Target};

/// Initial buffer cap for a member's bytes; the Vec grows with data actually read.
const MAX_PREALLOC: u64 = 64 << 20;

/// Absolute paths and `..` components escape the install root: refuse them.
pub fn unsafe_member_path(path: &[u8]) -> Option<&'static str> {
    if path.first() == Some(&b'/') {
        return Some("absolute path");
    }
    if path.split(|&b| b == b'/').any(|part| part == b"..") {
        return Some("`..` component");
    }
    None
}

pub(super) fn unsafe_path_finding(display: &str, why: &str, file: &Path, inner: String, report: &mut Report) {
    report.findings.push(
        Issue::error(
            Check::UnsafeMemberPath,
            "a relative path inside the package (./usr/..., no `..`)".to_string(),
            format!("{display:?}: {why}"),
            "rebuild the package with dpkg-deb or another packager; never hand-edit member names".to_string(),
        )
        .into_finding(file, Some(inner)),
    );
}

/// What the tree holds at a member's path.
enum Entry {
    File(FileEntry),
    Dir,
    /// A symbolic link with its target as written.
    Symlink(PathBuf),
    /// A hard link to this earlier member (a path relative to the root).
    Hard(PathBuf),
    Other,
}

struct FileEntry {
    mode: u32,
    /// What the file was checked as.
    expect: Expect,
    /// For a file checked as `Expect::Any`: what checking it as a library adds, kept in
    /// case a link named like a library reaches it (its bytes are gone by then).
    as_library: Option<Report>,
}

/// A link member, resolved when the whole tree is known.
struct LinkMember {
    at: PathBuf,
    display: String,
    to: PathBuf,
    hard: bool,
}

/// The files of one archive, gathered while its tar stream is read.
pub(super) struct Tree<'t> {
    file: &'t Path,
    target: &'t Target,
    root: Root,
    entries: HashMap<PathBuf, Entry>,
    links: Vec<LinkMember>,
    report: Report,
    /// Where this archive sits inside `file` ("a.tar.gz -> b.tar"): set for a tarball
    /// nested in another archive, whose member names are given after it.
    prefix: Option<String>,
    /// Archives enclosing this one inside `file` (0 for the file itself).
    depth: u8,
    /// Reads a tarball found among the files (see `Nest::open_tar`).
    open_tar: OpenTar,
}

impl<'t> Tree<'t> {
    pub fn new(file: &'t Path, target: &'t Target, root: Root, open_tar: OpenTar) -> Self {
        Tree {
            file,
            target,
            root,
            entries: HashMap::new(),
            links: Vec::new(),
            report: Report::default(),
            prefix: None,
            depth: 0,
            open_tar,
        }
    }

    /// The tree of a tarball at `prefix` inside `file`, `depth` archives down.
    pub fn nested(mut self, prefix: Option<String>, depth: u8) -> Self {
        self.prefix = prefix;
        self.depth = depth;
        self
    }

    /// A member's place for findings: its path, after the archive's own place in `file`.
    fn inner(&self, display: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix} -> {display}"),
            None => display.to_string(),
        }
    }

    /// What the tree is called in link findings.
    fn noun(&self) -> &'static str {
        match self.root {
            Root::System => "package",
            Root::Detached => "archive",
        }
    }

    /// One tar entry: refuse an unsafe path, record links, check a regular file.
    pub fn visit<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, display: &str) -> io::Result<()> {
        let raw = entry.path_bytes().into_owned();
        if let Some(why) = unsafe_member_path(&raw) {
            let inner = self.inner(display);
            unsafe_path_finding(display, why, self.file, inner, &mut self.report);
            return Ok(());
        }
        let Some(at) = links::tree_path(&entry.path()?) else {
            return Ok(()); // not reached: unsafe paths were refused above
        };
        for ancestor in at.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() {
                self.entries.entry(ancestor.to_path_buf()).or_insert(Entry::Dir);
            }
        }
        let header = entry.header();
        let kind = header.entry_type();
        let link_name = || entry.link_name().ok().flatten().map(|l| l.into_owned());
        if kind.is_symlink() || kind.is_hard_link() {
            let Some(to) = link_name() else {
                return Ok(()); // a link without a target is no link: nothing to check
            };
            let hard = kind.is_hard_link();
            if hard && let Some(why) = unsafe_member_path(to.as_os_str().as_encoded_bytes()) {
                let what = format!("{display} (hard link to {})", to.display());
                let inner = self.inner(display);
                unsafe_path_finding(&what, why, self.file, inner, &mut self.report);
                return Ok(());
            }
            let node =
                if hard { Entry::Hard(links::tree_path(&to).unwrap_or_default()) } else { Entry::Symlink(to.clone()) };
            self.entries.insert(at.clone(), node);
            self.links.push(LinkMember { at, display: display.to_string(), to, hard });
            return Ok(());
        }
        if kind.is_dir() {
            self.entries.insert(at, Entry::Dir);
            return Ok(());
        }
        if !(kind.is_file() || kind.is_contiguous()) {
            self.entries.insert(at, Entry::Other); // devices, FIFOs: no bytes of their own
            return Ok(());
        }
        let mode = header.mode().unwrap_or(0);
        let file = self.check_file(entry, display, mode)?;
        self.entries.insert(at, Entry::File(file));
        Ok(())
    }

    fn check_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        display: &str,
        mode: u32,
    ) -> io::Result<FileEntry> {
        let size = entry.size();
        self.report.files_checked += 1;
        let base = display.rsplit('/').next().unwrap_or(display);
        let expect = object::expectation(base, mode);

        let mut head = [0u8; 8];
        let n = read_up_to(entry, &mut head)?;
        let head = &head[..n];
        let is_elf = head.starts_with(&ELF_MAGIC);
        let is_object = is_elf || macho::is_macho_magic(head);
        // A plain file is sniffed even when nothing is expected of it: a link may reach it.
        let want = if is_object { size } else { size.min(object::SNIFF_LEN as u64) };
        let mut bytes = Vec::with_capacity(want.min(MAX_PREALLOC) as usize);
        bytes.extend_from_slice(head);
        entry.take(want.saturating_sub(n as u64)).read_to_end(&mut bytes)?;
        if (bytes.len() as u64) < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("member data ends after {} of {size} bytes", bytes.len()),
            ));
        }
        if !is_object && let Some(kind) = containers::sniff(base, &bytes) {
            // An archive inside the archive: its files are checked in turn.
            let nest = Nest::new(self.file, self.target, Some(self.inner(display)), self.depth + 1, self.open_tar);
            containers::read_rest_and_open(kind, bytes, entry, size, &nest, &mut self.report)?;
            return Ok(FileEntry { mode, expect, as_library: None });
        }
        let origin = Origin::new(self.file, Some(self.inner(display)));
        object::check_bytes(&bytes, &origin, expect, self.target, &mut self.report, 0);
        // As `Expect::Any` an object of the target's own format is checked in full already;
        // anything else is judged again as a library now, while its bytes are here.
        let own_format = match self.target.format {
            BinFormat::Elf { .. } => is_elf,
            BinFormat::MachO { .. } => is_object && !is_elf,
        };
        let as_library = (expect == Expect::Any && !own_format)
            .then(|| {
                let mut report = Report::default();
                object::check_bytes(&bytes, &origin, Expect::Library, self.target, &mut report, 0);
                report
            })
            .filter(|report| !report.findings.is_empty() || report.elfs_checked > 0);
        Ok(FileEntry { mode, expect, as_library })
    }

    /// The report so far, for a stream that broke off: links are not judged, since
    /// their targets may lie in the part never read.
    pub fn partial(self) -> Report {
        self.report
    }

    /// Resolve every link against the whole tree, then hand over the report.
    pub fn finish(mut self) -> Report {
        let links = std::mem::take(&mut self.links);
        for link in &links {
            let name = link.at.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if link.hard {
                // Tar stores a hard link's target as a path from the root, written earlier.
                let real = links::tree_path(&link.to).unwrap_or_default();
                if matches!(self.entries.get(&real), Some(Entry::File(_))) {
                    self.raise(&real, &name);
                } else {
                    let issue = Issue::error(
                        Check::Link,
                        format!("a hard link to a file stored earlier in the {}", self.noun()),
                        format!(
                            "{} -> {}: no regular file stored at that path before it",
                            link.display,
                            link.to.display()
                        ),
                        "rebuild the archive with tar, dpkg-deb or another packager".to_string(),
                    );
                    let inner = self.inner(&link.display);
                    self.report.findings.push(issue.into_finding(self.file, Some(inner)));
                }
                continue;
            }
            let entries = &self.entries;
            let mut lookup = |at: &Path| -> io::Result<Node> {
                Ok(match entries.get(at) {
                    Some(Entry::File(_) | Entry::Hard(_)) => Node::File,
                    Some(Entry::Dir) => Node::Dir,
                    Some(Entry::Symlink(to)) => Node::Link(to.clone()),
                    Some(Entry::Other) => Node::Other,
                    None if at.as_os_str().is_empty() => Node::Dir,
                    None => Node::Missing,
                })
            };
            match links::resolve(&link.at, &link.to, self.root, &mut lookup) {
                Ok(Resolved::File(real)) => {
                    let real = match self.entries.get(&real) {
                        Some(Entry::Hard(first)) => first.clone(),
                        _ => real,
                    };
                    self.raise(&real, &name);
                }
                Ok(Resolved::Dir | Resolved::Other | Resolved::Elsewhere) => {}
                Err(err) => {
                    let display = Path::new(&link.display);
                    let issue = object::link_finding(display, &link.to, &err, self.noun());
                    let inner = self.inner(&link.display);
                    self.report.findings.push(issue.into_finding(self.file, Some(inner)));
                }
            }
        }
        self.report
    }

    /// The file at `real` is also named `name`: check it as that name demands, once.
    fn raise(&mut self, real: &Path, name: &str) {
        let Some(Entry::File(file)) = self.entries.get_mut(real) else { return };
        let raised = file.expect.raised(object::expectation(name, file.mode));
        if raised == file.expect {
            return;
        }
        file.expect = raised;
        if raised == Expect::Library
            && let Some(extra) = file.as_library.take()
        {
            self.report.merge(extra);
        }
    }
}
