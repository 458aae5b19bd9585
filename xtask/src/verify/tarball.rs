//! Tar streams: the one reader behind a .deb's control and data members and plain
//! tarball inputs (`.tar`, `.tar.gz`/`.tgz`, `.tar.xz`/`.txz`, `.tar.zst`/`.tzst`; dist
//! writes the darwin app as a .tar.gz) and tarballs nested in another archive,
//! decompressed and read in place, nothing extracted to disk.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::containers::{Nest, inflate_limit};
use super::decode::{Bounded, Counting, DecoderError, LimitError, decoder, has_cause, is_decode_error};
use super::links::Root;
use super::members::Tree;
use super::report::{InputError, InputErrorKind, Report};
use super::target::Target;

/// Check every file of a tarball on disk, compressed as `codec` says.
pub fn verify_tarball_file(path: &Path, codec: &str, target: &Target) -> Report {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) => return Report::unreadable(InputError::io(path, &err)),
    };
    let pos = Rc::new(Cell::new(0));
    let raw = Counting { inner: BufReader::with_capacity(1 << 16, file), pos: pos.clone() };
    let source = Source { file: path, member: None, file_pos: pos, limit: None, expect: None };
    // A tarball is a folder packed: its links must stay inside it, as a folder's must.
    let mut tree = Tree::new(path, target, Root::Detached, open_nested);
    let read = read_tar(raw, codec, &source, &mut |entry, display| tree.visit(entry, display));
    match read {
        Ok(()) => tree.finish(),
        Err(err) => {
            let mut report = tree.partial();
            report.input_errors.push(err);
            report
        }
    }
}

/// Where a tar stream comes from, for errors.
pub(super) struct Source<'s> {
    pub file: &'s Path,
    /// The .deb member holding the stream; `None` for a tarball.
    pub member: Option<&'s str>,
    /// Bytes of the file read so far.
    pub file_pos: Rc<Cell<u64>>,
    /// What the decompressed stream must be, as (length, SHA-256) pieces in order: the
    /// record of the writer that made it. `None`: not checked.
    pub expect: Option<&'s [(u64, [u8; 32])]>,
    /// Most decompressed bytes accepted: set for tarballs nested in another archive, where
    /// a small member could otherwise inflate without end.
    pub limit: Option<u64>,
}

/// The decompressed stream compared piece by piece with a writer's record, as it is read.
struct PieceCheck<'e> {
    expect: &'e [(u64, [u8; 32])],
    /// The piece being hashed, and its bytes still to come.
    idx: usize,
    left: u64,
    hasher: Sha256,
    total: u64,
    /// The first difference found.
    mismatch: Option<String>,
}

impl<'e> PieceCheck<'e> {
    fn new(expect: &'e [(u64, [u8; 32])]) -> Self {
        PieceCheck {
            expect,
            idx: 0,
            left: expect.first().map_or(0, |p| p.0),
            hasher: Sha256::new(),
            total: 0,
            mismatch: None,
        }
    }

    fn update(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() && self.mismatch.is_none() {
            let Some(&(len, want)) = self.expect.get(self.idx) else {
                let wanted: u64 = self.expect.iter().map(|p| p.0).sum();
                self.mismatch = Some(format!("it is longer than the {wanted} bytes that were written"));
                return;
            };
            let n = (self.left.min(buf.len() as u64)) as usize;
            self.hasher.update(&buf[..n]);
            self.left -= n as u64;
            self.total += n as u64;
            buf = &buf[n..];
            if self.left == 0 {
                let got: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                if got != want {
                    self.mismatch = Some(format!(
                        "block {} (decompressed bytes {}..{}) has SHA-256 {}, the writer wrote {}",
                        self.idx,
                        self.total - len,
                        self.total,
                        crate::fingerprint::hex(&got),
                        crate::fingerprint::hex(&want)
                    ));
                }
                self.idx += 1;
                self.left = self.expect.get(self.idx).map_or(0, |p| p.0);
            }
        }
    }

    /// The verdict once the stream has ended.
    fn finish(&mut self) -> Option<String> {
        if self.mismatch.is_none() && self.idx < self.expect.len() {
            let wanted: u64 = self.expect.iter().map(|p| p.0).sum();
            self.mismatch = Some(format!("it ends after {} of the {wanted} bytes that were written", self.total));
        }
        self.mismatch.clone()
    }
}

/// Feeds what passes through to a [`PieceCheck`].
struct Checked<'e, R> {
    inner: R,
    check: Rc<RefCell<PieceCheck<'e>>>,
}

impl<R: Read> Read for Checked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.check.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

/// Called for each tar entry with its path as text; io errors get file,
/// member and offset added by `read_tar`.
pub(super) type Visitor<'v> = dyn FnMut(&mut tar::Entry<'_, Box<dyn Read + '_>>, &str) -> io::Result<()> + 'v;

/// Stream `raw` through the decompressor for `codec` and the tar reader, handing each
/// entry to `visit`; then drain the decompressor so a corrupt or cut tail (checksums
/// sit at the end) is noticed even after the tar's end marker.
pub(super) fn read_tar<'r>(
    raw: impl Read + 'r,
    codec: &str,
    source: &Source<'_>,
    visit: &mut Visitor<'_>,
) -> Result<(), InputError> {
    let label = source.member.map_or_else(|| source.file.display().to_string(), str::to_string);
    let decoded = Rc::new(Cell::new(0u64));
    let decoded_stream = decoder(raw, codec, &label).map_err(|e| e.into_input_error(source))?;
    let decoded_stream: Box<dyn Read + 'r> = match source.limit {
        Some(limit) => Box::new(Bounded {
            inner: decoded_stream,
            read: 0,
            limit,
            what: format!("{label}: the decompressed tar stream"),
        }),
        None => decoded_stream,
    };
    let counting = Counting { inner: decoded_stream, pos: decoded.clone() };
    let check = source.expect.map(|e| Rc::new(RefCell::new(PieceCheck::new(e))));
    // A stream that differs from the record usually breaks the tar reader or the visitor
    // first: the difference, once found, is the error to report.
    let differs = |check: &Option<Rc<RefCell<PieceCheck<'_>>>>, at_end: bool| {
        let check = check.as_ref()?;
        let mut c = check.borrow_mut();
        let verdict = if at_end { c.finish() } else { c.mismatch.clone() };
        verdict.map(|why| mismatch_error(source, &why))
    };
    let result = read_checked(counting, check.clone(), source, &decoded, visit);
    if let Some(err) = differs(&check, result.is_ok()) {
        return Err(err);
    }
    result
}

fn mismatch_error(source: &Source<'_>, why: &str) -> InputError {
    let what = source.member.unwrap_or("the tar stream");
    let err = InputError::new(
        source.file,
        InputErrorKind::Mismatch,
        format!("{what} does not decompress to the tar stream that was written: {why}"),
    );
    match source.member {
        Some(member) => err.member(member),
        None => err,
    }
}

fn read_checked<'r, 'e: 'r>(
    counting: Counting<Box<dyn Read + 'r>>,
    check: Option<Rc<RefCell<PieceCheck<'e>>>>,
    source: &Source<'_>,
    decoded: &Rc<Cell<u64>>,
    visit: &mut Visitor<'_>,
) -> Result<(), InputError> {
    let next_header = Cell::new(0u64);
    let fail = |err: io::Error, entry: Option<&str>, tar_at: u64| classify(err, source, entry, tar_at);
    let stream: Box<dyn Read + 'r> = match check {
        Some(check) => Box::new(Checked { inner: counting, check }),
        None => Box::new(counting),
    };
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(|err| fail(err, None, 0))?;
    for entry in entries {
        let mut entry = entry.map_err(|err| fail(err, None, next_header.get()))?;
        let header_at = entry.raw_header_position();
        let data_end = entry.size().div_ceil(512).saturating_mul(512);
        next_header.set(entry.raw_file_position().saturating_add(data_end));
        let display = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        visit(&mut entry, &display).map_err(|err| fail(err, Some(&display), header_at))?;
    }
    let mut stream = archive.into_inner();
    io::copy(&mut stream, &mut io::sink()).map_err(|err| fail(err, None, decoded.get()))?;
    Ok(())
}

impl DecoderError {
    fn into_input_error(self, source: &Source<'_>) -> InputError {
        let (kind, what) = match self {
            DecoderError::Unsupported(what) => (InputErrorKind::UnsupportedCompression, what),
            DecoderError::Init(what) => (InputErrorKind::Decompress, what),
        };
        let err = InputError::new(source.file, kind, what);
        match source.member {
            Some(member) => err.member(member),
            None => err,
        }
    }
}

/// Decoder errors carry the file offset of the compressed data reached; tar
/// errors `tar_at`, the offset of the tar header concerned in the decompressed stream.
fn classify(err: io::Error, source: &Source<'_>, entry: Option<&str>, tar_at: u64) -> InputError {
    let (prefix, where_) = match (source.member, entry) {
        (Some(member), Some(entry)) => (format!("{member}: "), Some(format!("{member} -> {entry}"))),
        (Some(member), None) => (format!("{member}: "), Some(member.to_string())),
        (None, entry) => (String::new(), entry.map(str::to_string)),
    };
    let file_pos = source.file_pos.get();
    let err = if has_cause::<LimitError>(&err) {
        InputError::new(
            source.file,
            InputErrorKind::Limit,
            format!("{err}: a decompression bomb or a damaged archive; repack it from the original files"),
        )
    } else if is_decode_error(&err) {
        InputError::new(
            source.file,
            InputErrorKind::Decompress,
            format!("{prefix}compressed data is corrupt near file byte {file_pos}: {err}"),
        )
        .at(file_pos)
    } else {
        InputError::new(
            source.file,
            InputErrorKind::Tar,
            format!("{prefix}tar stream unreadable at the header at byte {tar_at} of the decompressed data: {err}"),
        )
        .at(tar_at)
    };
    match where_ {
        Some(at) => err.member(at),
        None => err,
    }
}

/// Check every file of a tarball found inside another archive (`data`, compressed as
/// `codec` says); `containers` calls this through `Nest::open_tar`.
pub(super) fn open_nested(data: &[u8], codec: &'static str, nest: &Nest, out: &mut Report) {
    let pos = Rc::new(Cell::new(0u64));
    let source = Source {
        file: nest.file,
        member: nest.chain.as_deref(),
        file_pos: pos.clone(),
        limit: Some(inflate_limit(data.len() as u64)),
        expect: None,
    };
    let raw = Counting { inner: data, pos };
    // A tarball is a folder packed: its links must stay inside it.
    let mut tree =
        Tree::new(nest.file, nest.target, Root::Detached, open_nested).nested(nest.chain.clone(), nest.depth);
    match read_tar(raw, codec, &source, &mut |entry, display| tree.visit(entry, display)) {
        Ok(()) => out.merge(tree.finish()),
        Err(err) => {
            out.merge(tree.partial());
            out.input_errors.push(err);
        }
    }
}
