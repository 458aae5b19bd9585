//! Archives inside a release: Electron asar archives, zip archives, single-file gzip
//! streams (`libfoo.so.gz`) and tarballs, found in a folder, a tarball, a .deb or another of
//! these. Each file they hold is checked like a file of a folder, and archives among them
//! are opened in turn, down to `MAX_NESTING` levels.
//!
//! An archive is recognised by its first bytes (zip `PK\x03\x04`, gzip `1f 8b 08`, a tar
//! `ustar` header or the compressor's magic for a tarball name), an asar by its name plus a
//! sane size pickle, so the walk's short sniff still drops every other file unread. Findings
//! inside name the chain of places, `app.asar -> node_modules/x/x.node`, as .deb members and
//! PyInstaller entries are named. Decompressed sizes are bounded (`inflate_limit`): a small
//! member that inflates without end is an input error, not hours of work.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use super::asar;
use super::decode::{Counting, codec_for_name};
use super::elf::{ELF_MAGIC, macho};
use super::object::{self, Origin, SNIFF_LEN, read_up_to};
use super::report::{InputError, InputErrorKind, Report};
use super::target::Target;

/// Archives inside archives are opened this many levels deep; deeper is an input error.
pub const MAX_NESTING: u8 = 8;
/// Data inflating to at most this much is accepted at any ratio (zero-filled files
/// compress a thousandfold and are harmless at this size).
const SMALL_INFLATE: u64 = 64 << 20;
/// Beyond `SMALL_INFLATE`, data may inflate to this many times its compressed size.
/// Release content (binaries, JavaScript, images) stays well under 20:1.
const MAX_RATIO: u64 = 200;
/// Largest nested archive or inflated file held in memory to be checked.
const MAX_BLOB: u64 = 1 << 30;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 0x08];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// An archive format this module opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Asar,
    Zip,
    /// One gzip stream of one file; a tarball's gzip is `Tar(".gz")`.
    Gzip,
    /// A tarball, with the compression suffix its name gives.
    Tar(&'static str),
}

/// What archive `head` (a file's first bytes, up to `SNIFF_LEN`) starts, given its `name`.
pub fn sniff(name: &str, head: &[u8]) -> Option<Kind> {
    if let Some(codec) = codec_for_name(Path::new(name)) {
        let magic_fits = match codec {
            "" => head.get(257..262) == Some(b"ustar"),
            ".gz" => head.starts_with(GZIP_MAGIC),
            ".xz" => head.starts_with(XZ_MAGIC),
            ".zst" => head.starts_with(ZSTD_MAGIC),
            _ => false,
        };
        if magic_fits {
            return Some(Kind::Tar(codec));
        }
    }
    if head.starts_with(ZIP_MAGIC) {
        return Some(Kind::Zip);
    }
    if head.starts_with(GZIP_MAGIC) {
        return Some(Kind::Gzip);
    }
    // A tar header found by content: a gzip's inner file named `foo` rather than `foo.tar`.
    if head.get(257..262) == Some(b"ustar") {
        return Some(Kind::Tar(""));
    }
    let is_asar_name = name.len() >= 5 && name.as_bytes()[name.len() - 5..].eq_ignore_ascii_case(b".asar");
    if is_asar_name && asar::looks_like_asar(head) {
        return Some(Kind::Asar);
    }
    None
}

/// Bytes that `compressed` bytes may inflate to before the data counts as a bomb.
pub fn inflate_limit(compressed: u64) -> u64 {
    compressed.saturating_mul(MAX_RATIO).clamp(SMALL_INFLATE, MAX_BLOB)
}

/// An archive being opened: where it is, for findings and errors.
pub struct Nest<'a> {
    pub file: &'a Path,
    pub target: &'a Target,
    /// Its place inside `file` ("./opt/app/resources/app.asar"); `None` when it is `file`.
    pub chain: Option<String>,
    /// Archives enclosing it inside `file`, itself included.
    pub depth: u8,
    /// How a tarball inside is read: `tarball::open_nested`, handed down because the
    /// tarball reader's trees call back into this module for the archives they hold.
    pub open_tar: OpenTar,
}

/// Checks every file of a tarball in memory (`data`, compressed as the suffix says).
pub type OpenTar = fn(data: &[u8], codec: &'static str, nest: &Nest, out: &mut Report);

impl<'a> Nest<'a> {
    pub fn new(file: &'a Path, target: &'a Target, chain: Option<String>, depth: u8, open_tar: OpenTar) -> Self {
        Nest { file, target, chain, depth, open_tar }
    }

    /// The place of `name`, a file of this archive.
    fn child(&self, name: &str) -> String {
        match &self.chain {
            Some(chain) => format!("{chain} -> {name}"),
            None => name.to_string(),
        }
    }

    /// The archive's own file name, last in its chain.
    fn name(&self) -> Cow<'_, str> {
        match &self.chain {
            Some(chain) => Cow::Borrowed(base_name(chain)),
            None => self.file.file_name().map_or(Cow::Borrowed(""), |n| n.to_string_lossy()),
        }
    }

    fn error(&self, kind: InputErrorKind, detail: String, offset: Option<u64>) -> InputError {
        let mut err = InputError::new(self.file, kind, detail);
        if let Some(chain) = &self.chain {
            err = err.member(chain.clone());
        }
        if let Some(offset) = offset {
            err = err.at(offset);
        }
        err
    }
}

/// The last path component of a place ("a.zip -> lib/x.so" gives "x.so").
fn base_name(place: &str) -> &str {
    let last = place.rsplit(" -> ").next().unwrap_or(place);
    last.rsplit('/').next().unwrap_or(last)
}

/// A tar member that sniffed as an archive: read the rest of its `size` bytes after `head`
/// and open it. Errors reading `rest` belong to the outer stream and are returned.
pub fn read_rest_and_open(
    kind: Kind,
    mut head: Vec<u8>,
    rest: &mut impl Read,
    size: u64,
    nest: &Nest,
    out: &mut Report,
) -> io::Result<()> {
    if size > MAX_BLOB {
        let detail = format!(
            "a nested archive of {size} bytes, above the {MAX_BLOB}-byte limit for archives inside archives: \
             ship it as a file of its own and verify it directly"
        );
        out.input_errors.push(nest.error(InputErrorKind::Limit, detail, None));
        return Ok(());
    }
    head.reserve(usize::try_from(size).unwrap_or(0).saturating_sub(head.len()));
    rest.take(size.saturating_sub(head.len() as u64)).read_to_end(&mut head)?;
    if (head.len() as u64) < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("member data ends after {} of {size} bytes", head.len()),
        ));
    }
    open(kind, &head, nest, out);
    Ok(())
}

/// Check every file of the archive `data`, which `sniff` called `kind`.
pub fn open(kind: Kind, data: &[u8], nest: &Nest, out: &mut Report) {
    if nest.depth > MAX_NESTING {
        let detail = format!(
            "archives nested {} deep, past the limit of {MAX_NESTING}: a crafted archive, \
             or one to unpack in the build so its files are shipped as files",
            nest.depth
        );
        out.input_errors.push(nest.error(InputErrorKind::Limit, detail, None));
        return;
    }
    match kind {
        Kind::Asar => open_asar(data, nest, out),
        Kind::Zip => open_zip(data, nest, out),
        Kind::Gzip => open_gzip(data, nest, out),
        Kind::Tar(codec) => (nest.open_tar)(data, codec, nest, out),
    }
}

/// One file of an archive, all its bytes at hand: an archive is opened, anything else
/// checked by its name and mode as a file of a folder.
fn check_inner(data: &[u8], name: &str, mode: u32, nest: &Nest, out: &mut Report) {
    let place = nest.child(name);
    let base = base_name(name);
    if let Some(kind) = sniff(base, &data[..data.len().min(SNIFF_LEN)]) {
        open(kind, data, &Nest::new(nest.file, nest.target, Some(place), nest.depth + 1, nest.open_tar), out);
        return;
    }
    let origin = Origin::new(nest.file, Some(place));
    object::check_bytes(data, &origin, object::expectation(base, mode), nest.target, out, 0);
}

/// One file of an archive as a stream (a zip entry, a gzip's content): its first bytes
/// decide whether the rest is read at all; at most `limit` bytes are.
fn check_stream(
    reader: &mut dyn Read,
    name: &str,
    mode: u32,
    limit: u64,
    nest: &Nest,
    out: &mut Report,
) -> Result<(), io::Error> {
    let mut bytes = vec![0u8; SNIFF_LEN];
    let n = read_up_to(reader, &mut bytes)?;
    bytes.truncate(n);
    let is_object = bytes.starts_with(&ELF_MAGIC) || macho::is_macho_magic(&bytes);
    if is_object || sniff(base_name(name), &bytes).is_some() {
        reader.take(limit.saturating_sub(n as u64) + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            let detail = format!(
                "{}: inflates past {limit} bytes, the limit for its compressed size: \
                 a decompression bomb or a damaged archive; repack it from the original files",
                nest.child(name)
            );
            out.input_errors.push(nest.error(InputErrorKind::Limit, detail, None));
            return Ok(());
        }
    }
    check_inner(&bytes, name, mode, nest, out);
    Ok(())
}

fn open_asar(data: &[u8], nest: &Nest, out: &mut Report) {
    let files = match asar::files(data) {
        Ok(files) => files,
        Err(err) => {
            let detail = format!(
                "asar archive unreadable: {}; repack it with @electron/asar (electron-builder does)",
                err.detail
            );
            out.input_errors.push(nest.error(InputErrorKind::Asar, detail, Some(err.offset)));
            return;
        }
    };
    for file in files {
        let mode = if file.executable { 0o755 } else { 0o644 };
        check_inner(&data[file.range.clone()], &file.path, mode, nest, out);
    }
}

fn open_zip(data: &[u8], nest: &Nest, out: &mut Report) {
    let fix = "repack it with zip or another archiver";
    let mut archive = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(archive) => archive,
        Err(err) => {
            let detail =
                format!("zip archive unreadable (end of central directory or central directory): {err}; {fix}");
            out.input_errors.push(nest.error(InputErrorKind::Zip, detail, None));
            return;
        }
    };
    for i in 0..archive.len() {
        let listed = archive.name_for_index(i).and_then(Result::ok).map_or_else(|| "?".to_string(), |n| n.to_string());
        let mut entry = match archive.by_index(i) {
            Ok(entry) => entry,
            Err(err) => {
                let name = listed;
                let detail = format!("zip entry {i} ({name}) unreadable: {err}; {fix}");
                out.input_errors.push(nest.error(InputErrorKind::Zip, detail, None));
                continue;
            }
        };
        if entry.is_dir() || entry.is_symlink() {
            continue; // a link's target is an entry checked as itself
        }
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let at = entry.header_start();
        let (size, compressed) = (entry.size(), entry.compressed_size());
        let limit = inflate_limit(compressed);
        if size > limit {
            let detail = format!(
                "{}: declares {size} bytes from {compressed} compressed, past the limit of {limit} \
                 (ratio {MAX_RATIO}:1 beyond {SMALL_INFLATE} bytes): a decompression bomb or a damaged archive; {fix}",
                nest.child(&name)
            );
            out.input_errors.push(nest.error(InputErrorKind::Limit, detail, Some(at)));
            continue;
        }
        let mode = entry.unix_mode().unwrap_or(0o644);
        // The declared size bounds the read: one byte more is a lie, caught as a limit.
        if let Err(err) = check_stream(&mut entry, &name, mode, size, nest, out) {
            let detail = format!("zip entry {name} (local header at byte {at}) does not inflate: {err}; {fix}");
            out.input_errors.push(nest.error(InputErrorKind::Zip, detail, Some(at)));
        }
    }
}

fn open_gzip(data: &[u8], nest: &Nest, out: &mut Report) {
    let own = nest.name();
    let lower = own.to_ascii_lowercase();
    let inner = if lower.ends_with(".gz") { own[..own.len() - 3].to_string() } else { own.to_string() };
    let pos = Rc::new(Cell::new(0u64));
    let mut decoder = flate2::read::MultiGzDecoder::new(Counting { inner: data, pos: pos.clone() });
    if let Err(err) = check_stream(&mut decoder, &inner, 0o644, inflate_limit(data.len() as u64), nest, out) {
        let detail = format!("gzip data is corrupt near byte {}: {err}; recompress it with gzip", pos.get());
        out.input_errors.push(nest.error(InputErrorKind::Decompress, detail, Some(pos.get())));
    }
}
