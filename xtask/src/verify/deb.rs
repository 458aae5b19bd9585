//! .deb packages, read in place as one stream: ar members, then the control
//! and data tar (plain, gz, xz, zst; see `tarball`), nothing extracted to disk.
//!
//! The ar layer is read by hand. The `ar` crate (0.9) was the first choice, but
//! its reader indexes the GNU name table with an unchecked offset (a member
//! named "/99" with no table panics) and allocates the table from the header's
//! size field; a .deb only uses the common format (names of at most 15
//! characters, dpkg adds no tables), which is 60-byte headers and padding.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use super::decode::Counting;
use super::decode::tar_suffix;
use super::links::Root;
use super::md5sums::Md5sums;
use super::members::{Tree, unsafe_member_path, unsafe_path_finding};
use super::object::read_up_to;
use super::report::{Check, InputError, InputErrorKind, Issue, Report};
use super::tarball::{self, Source, Visitor};
use super::target::Target;

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const AR_HEADER_LEN: u64 = 60;
/// Largest control file read; real ones are a few KiB.
const MAX_CONTROL: u64 = 1 << 20;

/// True when `head` (the first bytes of a file) is an ar archive whose first
/// member is `debian-binary`.
pub fn is_deb_head(head: &[u8]) -> bool {
    head.starts_with(AR_MAGIC) && head.get(8..21) == Some(b"debian-binary")
}

pub fn verify_deb_file(path: &Path, target: &Target) -> Report {
    match File::open(path) {
        Ok(file) => verify_deb_reader(BufReader::with_capacity(1 << 16, file), path, target),
        Err(err) => Report::unreadable(InputError::io(path, &err)),
    }
}

/// Check a .deb from any byte stream; `path` names it in findings and errors. A package
/// that cannot be read to its end keeps the findings made before the break, beside the
/// input error.
pub fn verify_deb_reader<R: Read>(reader: R, path: &Path, target: &Target) -> Report {
    verify_deb_expecting(reader, path, target, None)
}

/// [`verify_deb_reader`], and data.tar's decompressed stream must be `expect`: (length,
/// SHA-256) pieces in order, the record of the writer that made the package. A difference
/// is an input error of kind [`InputErrorKind::Mismatch`]; the decode that checks the
/// binaries carries the check, so it costs one SHA-256 pass over the tar, no second decode.
pub fn verify_deb_expecting<R: Read>(
    reader: R,
    path: &Path,
    target: &Target,
    expect: Option<&[(u64, [u8; 32])]>,
) -> Report {
    let mut report = Report::default();
    if let Err(err) = read_deb(reader, path, target, expect, &mut report) {
        report.input_errors.push(err);
    }
    report
}

fn read_deb<R: Read>(
    reader: R,
    path: &Path,
    target: &Target,
    expect: Option<&[(u64, [u8; 32])]>,
    report: &mut Report,
) -> Result<(), InputError> {
    let mut ar = ArReader::new(reader, path)?;

    let member = ar.debian_binary()?;
    let mut version = Vec::new();
    ar.member_reader(&member)
        .take(64)
        .read_to_end(&mut version)
        .map_err(|err| ar.io_error(&err).member("debian-binary"))?;
    ar.finish_member(&member)?;
    if !version.starts_with(b"2.") {
        return Err(ar
            .error(
                InputErrorKind::DebianBinary,
                format!("debian-binary holds {:?}, expected \"2.0\\n\"", String::from_utf8_lossy(&version)),
            )
            .member("debian-binary")
            .at(member.data_offset));
    }

    let control = ar.next_required("control.tar")?;
    let mut control_info = ControlInfo::default();
    ar.read_tar(&control, None, &mut |entry, display| {
        read_control_entry(entry, display, path, &control.name, &mut control_info, report)
    })?;
    check_architecture(&control_info, &control.name, path, target, report);

    let data = ar.next_required("data.tar")?;
    // The package unpacks at `/`, beside every other package's files.
    let mut tree = Tree::new(path, target, Root::System, tarball::open_nested);
    match ar.read_tar(&data, expect, &mut |entry, display| tree.visit(entry, display)) {
        Ok(()) => {
            report.merge(tree.finish());
            Ok(())
        }
        Err(err) => {
            report.merge(tree.partial());
            Err(err)
        }
    }
}

/// The text of a .deb's `control` file (for an APT index), read through `reader` to its end:
/// debian-binary, control.tar, then data.tar skipped to its last byte, so a cut or malformed
/// package is an error here rather than a broken download later. Nothing is extracted.
pub fn read_control_text<R: Read>(reader: R, path: &Path) -> Result<String, InputError> {
    let mut ar = ArReader::new(reader, path)?;
    let ControlFiles { control, .. } = read_control_files(&mut ar, false)?;
    let data = ar.next_required("data.tar")?;
    ar.finish_member(&data)?;
    Ok(control)
}

/// What control.tar holds for a reader of the package: `control`, and, when `with_sums`,
/// `md5sums` (then required) and `conffiles` (empty when absent).
struct ControlFiles {
    control: String,
    md5sums: String,
    conffiles: String,
    /// control.tar's member name, for errors.
    member: String,
}

/// debian-binary, then control.tar read to its end through `ar`.
fn read_control_files<R: Read>(ar: &mut ArReader<'_, R>, with_sums: bool) -> Result<ControlFiles, InputError> {
    let member = ar.debian_binary()?;
    ar.finish_member(&member)?;
    let control = ar.next_required("control.tar")?;
    let (mut text, mut sums, mut conffiles) = (None, None, String::new());
    ar.read_tar(&control, None, &mut |entry, display| {
        if !entry.header().entry_type().is_file() {
            return Ok(());
        }
        let slot = match display.trim_start_matches("./") {
            "control" => &mut text,
            "md5sums" if with_sums => &mut sums,
            "conffiles" if with_sums => {
                entry.take(MAX_CONTROL).read_to_string(&mut conffiles)?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        let mut bytes = Vec::new();
        entry.take(MAX_CONTROL).read_to_end(&mut bytes)?;
        *slot = Some(String::from_utf8_lossy(&bytes).into_owned());
        Ok(())
    })?;
    let missing = |what: &str| {
        ar.error(InputErrorKind::MissingMember, format!("control.tar holds no ./{what} file")).member(&control.name)
    };
    let text = text.ok_or_else(|| missing("control"))?;
    let md5sums = match sums {
        Some(s) => s,
        None if with_sums => return Err(missing("md5sums")),
        None => String::new(),
    };
    Ok(ControlFiles { control: text, md5sums, conffiles, member: control.name })
}

/// The text of a .deb's `control` file, once the whole package has been read through
/// `reader` as dpkg would unpack it: debian-binary, control.tar (which must hold `control`
/// and `md5sums`), then data.tar decompressed to its end, every regular file's bytes held
/// against its md5sums line (see `md5sums`). What a repository must know before it offers
/// the package: damage anywhere is an error here, not a failed install on a board.
/// Nothing is extracted.
pub fn read_checked_control<R: Read>(reader: R, path: &Path) -> Result<String, InputError> {
    let mut ar = ArReader::new(reader, path)?;
    let files = read_control_files(&mut ar, true)?;
    let mut sums = Md5sums::parse(&files.md5sums, &files.conffiles, path, &files.member)?;
    let data = ar.next_required("data.tar")?;
    let at = |display: &str| format!("{} -> {display}", data.name);
    ar.read_tar(&data, None, &mut |entry, display| sums.visit(entry, display, path, at(display)))?;
    sums.finish(path, &data.name)?;
    Ok(files.control)
}

/// The fields of a .deb's `control` file (`Package`, `Version`, `Architecture`, ...), read in
/// place: what `dpkg-deb --field` prints, without dpkg. Continuation lines (leading space)
/// belong to the field above; only single-line fields are kept.
pub fn control_fields(path: &Path) -> Result<std::collections::BTreeMap<String, String>, InputError> {
    let file = File::open(path).map_err(|err| InputError::io(path, &err))?;
    let text = read_control_text(BufReader::with_capacity(1 << 16, file), path)?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

// ---------------------------------------------------------------- ar layer

struct ArReader<'p, R> {
    src: Counting<R>,
    pos: Rc<Cell<u64>>,
    file: &'p Path,
}

struct ArMember {
    name: String,
    size: u64,
    header_offset: u64,
    data_offset: u64,
}

impl<'p, R: Read> ArReader<'p, R> {
    fn new(reader: R, file: &'p Path) -> Result<Self, InputError> {
        let pos = Rc::new(Cell::new(0));
        let mut ar = ArReader { src: Counting { inner: reader, pos: pos.clone() }, pos, file };
        let mut magic = [0u8; 8];
        let n = read_up_to(&mut ar.src, &mut magic).map_err(|err| ar.io_error(&err))?;
        if &magic[..n] != AR_MAGIC {
            return Err(ar.error(InputErrorKind::ArHeader, "not an ar archive: missing \"!<arch>\\n\"").at(0));
        }
        Ok(ar)
    }

    /// The first member, which must be `debian-binary`.
    fn debian_binary(&mut self) -> Result<ArMember, InputError> {
        let member = self.next_member()?.ok_or_else(|| {
            self.error(InputErrorKind::MissingMember, "no members: debian-binary expected first").at(8)
        })?;
        if member.name != "debian-binary" {
            return Err(self
                .error(
                    InputErrorKind::MissingMember,
                    format!("first member is {:?}, expected debian-binary", member.name),
                )
                .at(member.header_offset));
        }
        Ok(member)
    }

    fn error(&self, kind: InputErrorKind, detail: impl Into<String>) -> InputError {
        InputError::new(self.file, kind, detail)
    }

    fn io_error(&self, err: &io::Error) -> InputError {
        InputError::io(self.file, err).at(self.pos.get())
    }

    fn next_member(&mut self) -> Result<Option<ArMember>, InputError> {
        let header_offset = self.pos.get();
        let mut hdr = [0u8; AR_HEADER_LEN as usize];
        let n = read_up_to(&mut self.src, &mut hdr).map_err(|err| self.io_error(&err))?;
        if n == 0 {
            return Ok(None);
        }
        if n < hdr.len() {
            return Err(self
                .error(InputErrorKind::Truncated, format!("file ends inside an ar member header ({n} of 60 bytes)"))
                .at(header_offset));
        }
        if &hdr[58..60] != b"`\n" {
            return Err(self
                .error(InputErrorKind::ArHeader, "ar member header does not end in \"`\\n\"")
                .at(header_offset + 58));
        }
        let raw_name = String::from_utf8_lossy(&hdr[..16]);
        let name = raw_name.trim_end_matches(' ');
        // GNU ar ends names with '/'; dpkg accepts both spellings.
        let name = name.strip_suffix('/').unwrap_or(name).to_string();
        let size = std::str::from_utf8(&hdr[48..58])
            .ok()
            .and_then(|s| s.trim_end_matches(' ').parse::<u64>().ok())
            .ok_or_else(|| {
                self.error(
                    InputErrorKind::ArHeader,
                    format!(
                        "member {name:?}: size field {:?} is not a decimal number",
                        String::from_utf8_lossy(&hdr[48..58])
                    ),
                )
                .at(header_offset + 48)
            })?;
        Ok(Some(ArMember { name, size, header_offset, data_offset: header_offset + AR_HEADER_LEN }))
    }

    /// Next member whose name starts with `prefix` ("control.tar", "data.tar"),
    /// skipping the `_`-prefixed members dpkg allows.
    fn next_required(&mut self, prefix: &str) -> Result<ArMember, InputError> {
        loop {
            let Some(member) = self.next_member()? else {
                return Err(self
                    .error(InputErrorKind::MissingMember, format!("no {prefix}.* member"))
                    .at(self.pos.get()));
            };
            if member.name.starts_with('_') {
                self.finish_member(&member)?;
                continue;
            }
            if !member.name.starts_with(prefix) {
                return Err(self
                    .error(
                        InputErrorKind::MissingMember,
                        format!("member {:?} where {prefix}.* was expected", member.name),
                    )
                    .at(member.header_offset));
            }
            return Ok(member);
        }
    }

    fn member_reader(&mut self, member: &ArMember) -> io::Take<&mut Counting<R>> {
        let left = (member.data_offset + member.size).saturating_sub(self.pos.get());
        (&mut self.src).take(left)
    }

    /// Skip what the consumer left of the member and its padding byte; a file
    /// that ends before the declared size is reported as truncated.
    fn finish_member(&mut self, member: &ArMember) -> Result<(), InputError> {
        let end = member.data_offset + member.size;
        let mut rest = self.member_reader(member);
        io::copy(&mut rest, &mut io::sink()).map_err(|err| self.io_error(&err).member(&member.name))?;
        if self.pos.get() < end {
            return Err(self
                .error(
                    InputErrorKind::Truncated,
                    format!(
                        "file ends at byte {} inside member {} (declared {} bytes from byte {})",
                        self.pos.get(),
                        member.name,
                        member.size,
                        member.data_offset
                    ),
                )
                .member(&member.name)
                .at(self.pos.get()));
        }
        if member.size % 2 == 1 {
            let mut pad = [0u8; 1];
            let n = read_up_to(&mut self.src, &mut pad).map_err(|err| self.io_error(&err))?;
            if n == 1 && pad[0] != b'\n' {
                return Err(self
                    .error(
                        InputErrorKind::ArHeader,
                        format!("padding byte after member {} is {:#04x}, expected '\\n'", member.name, pad[0]),
                    )
                    .at(end));
            }
        }
        Ok(())
    }

    /// Read the member's tar stream (see `tarball::read_tar`), then skip to its end.
    fn read_tar(
        &mut self,
        member: &ArMember,
        expect: Option<&[(u64, [u8; 32])]>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), InputError> {
        let source =
            Source { file: self.file, member: Some(&member.name), file_pos: self.pos.clone(), limit: None, expect };
        let codec = tar_suffix(&member.name).to_string();
        let result = tarball::read_tar(self.member_reader(member), &codec, &source, visit);
        // A cut file shows up as a decoder or tar error first; name the real cause.
        match (result, self.finish_member(member)) {
            (Ok(()), finish) => finish,
            (Err(_), Err(cut)) if cut.kind == InputErrorKind::Truncated => Err(cut),
            (Err(err), _) => Err(err),
        }
    }
}

// ---------------------------------------------------------------- tar members

#[derive(Default)]
struct ControlInfo {
    architecture: Option<String>,
    seen_control: bool,
}

fn read_control_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    display: &str,
    file: &Path,
    member: &str,
    info: &mut ControlInfo,
    report: &mut Report,
) -> io::Result<()> {
    let raw = entry.path_bytes().into_owned();
    if let Some(why) = unsafe_member_path(&raw) {
        unsafe_path_finding(display, why, file, format!("{member} -> {display}"), report);
        return Ok(());
    }
    if display.trim_start_matches("./") != "control" || !entry.header().entry_type().is_file() {
        return Ok(());
    }
    info.seen_control = true;
    let mut text = Vec::new();
    entry.take(MAX_CONTROL).read_to_end(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    info.architecture = text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case("Architecture").then(|| value.trim().to_string())
    });
    Ok(())
}

fn check_architecture(info: &ControlInfo, member: &str, file: &Path, target: &Target, report: &mut Report) {
    let Some(want) = target.debian_arch() else {
        return;
    };
    let inner = Some(format!("{member} -> ./control"));
    let found = match &info.architecture {
        Some(arch) if arch == want || arch == "all" => return,
        Some(arch) => arch.clone(),
        None if info.seen_control => "no Architecture field".to_string(),
        None => "no control file".to_string(),
    };
    report.findings.push(
        Issue::error(
            Check::DebArchitecture,
            format!("Architecture: {want} (or all)"),
            found,
            format!("build the package for Debian arch {want} (Debian calls armv7l \"armhf\")"),
        )
        .into_finding(file, inner),
    );
}
