//! Decompressors for tar streams (a .deb's control.tar.* / data.tar.*, tarball
//! inputs, nested tarballs), chosen by the name's suffix, with memory bounded against
//! what a header may ask for, a byte bound for nested data, and errors tagged so they
//! can be told apart from tar errors after the tar crate has wrapped them.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// xz/lzma dictionary memory allowed: xz -9 needs 65 MiB; a header asking for
/// more is refused instead of allocated.
const XZ_MEMLIMIT: u64 = 256 << 20;
/// zstd window ceiling: 128 MiB, the reference decoder's default limit too.
const ZSTD_MAX_WINDOW: u64 = 128 << 20;

/// An error raised by a decompressor.
#[derive(Debug)]
pub(super) struct DecodeError(String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Marks every error of the wrapped decoder as a `DecodeError`.
struct Tagged<R>(R);

impl<R: Read> Read for Tagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|err| io::Error::new(err.kind(), DecodeError(err.to_string())))
    }
}

/// One .xz stream and nothing after it: the threaded decoder stops at the stream's end,
/// so what follows is checked here (one byte of it is an error).
struct OneXzStream<R: BufRead> {
    dec: liblzma::bufread::XzDecoder<R>,
    ended: bool,
}

impl<R: BufRead> Read for OneXzStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.dec.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.ended {
            self.ended = true;
            if !self.dec.get_mut().fill_buf()?.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "data after the end of the xz stream"));
            }
        }
        Ok(n)
    }
}

pub(super) enum DecoderError {
    Unsupported(String),
    Init(String),
}

/// Tarball names and the compression suffix each implies.
const TARBALL_NAMES: &[(&str, &str)] = &[
    (".tar", ""),
    (".tar.gz", ".gz"),
    (".tgz", ".gz"),
    (".tar.xz", ".xz"),
    (".txz", ".xz"),
    (".tar.zst", ".zst"),
    (".tzst", ".zst"),
];

/// The compression suffix of a file named like a tarball, `None` for other names.
pub(super) fn codec_for_name(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    TARBALL_NAMES.iter().find(|(ending, _)| name.ends_with(ending)).map(|&(_, codec)| codec)
}

/// Counts bytes read; shared so the position stays readable while a reader borrows the stream.
pub(super) struct Counting<R> {
    pub inner: R,
    pub pos: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos.set(self.pos.get() + n as u64);
        Ok(n)
    }
}

/// The part of a member name `<stem>.tar<suffix>` that names its compression.
pub(super) fn tar_suffix(name: &str) -> &str {
    name.split_once(".tar").map(|(_, s)| s).unwrap_or("")
}

/// The decoder for data compressed as `suffix` (".gz", ".xz", ".lzma", ".zst", "" for
/// none) says; `name` names the stream in errors.
pub(super) fn decoder<'a, R: Read + 'a>(raw: R, suffix: &str, name: &str) -> Result<Box<dyn Read + 'a>, DecoderError> {
    Ok(match suffix {
        "" => Box::new(raw),
        ".gz" => Box::new(Tagged(flate2::read::MultiGzDecoder::new(raw))),
        ".xz" => {
            // liblzma's threaded decoder, as dpkg's since 1.21: the blocks of a multi-block
            // stream (ours, `xz -T`'s, dpkg-deb's) decode in parallel; a single-block stream
            // decodes as before. Like dpkg, one stream: bytes after it are an error.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u32;
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(threads)
                .memlimit_threading(XZ_MEMLIMIT)
                .memlimit_stop(XZ_MEMLIMIT)
                .decoder()
                .map_err(|err| DecoderError::Init(format!("xz decoder: {err}")))?;
            Box::new(Tagged(OneXzStream {
                dec: liblzma::bufread::XzDecoder::new_stream(BufReader::with_capacity(1 << 16, raw), stream),
                ended: false,
            }))
        }
        ".lzma" => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(XZ_MEMLIMIT)
                .map_err(|err| DecoderError::Init(format!("lzma decoder: {err}")))?;
            Box::new(Tagged(liblzma::read::XzDecoder::new_stream(raw, stream)))
        }
        ".zst" => Box::new(Tagged(ZstdFrames::new(raw))),
        other => {
            return Err(DecoderError::Unsupported(format!(
                "member {name}: compression {other:?} is not supported (gz, xz, lzma, zst, none)"
            )));
        }
    })
}

/// True when `err` (or an error it wraps) came from a decompressor.
pub(super) fn is_decode_error(err: &io::Error) -> bool {
    has_cause::<DecodeError>(err)
}

/// True when `err` (or an error it wraps) is a `T`; the tar crate wraps reader errors
/// in its own error, so the chain is walked.
pub(super) fn has_cause<T: std::error::Error + 'static>(err: &io::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(e) = source {
        if e.is::<T>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<T>())
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Decompressed data past a safety limit (see `containers::inflate_limit`).
#[derive(Debug)]
pub(super) struct LimitError(pub String);

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitError {}

/// Passes at most `limit` bytes on; one more is a `LimitError`, so a stream that inflates
/// without end stops there instead of filling memory or running for hours.
pub(super) struct Bounded<R> {
    pub inner: R,
    pub read: u64,
    pub limit: u64,
    /// What the error says the data is ("the decompressed tar stream").
    pub what: String,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(LimitError(format!(
                "{} inflates past {} bytes, the limit for its compressed size",
                self.what, self.limit
            ))));
        }
        Ok(n)
    }
}

/// Pure-Rust zstd (ruzstd: the C zstd-sys build alone took 35 s of a release
/// build). Reads every frame of the stream, skips skippable frames and checks
/// each frame's content checksum when present.
struct ZstdFrames<R> {
    src: BufReader<R>,
    dec: FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdFrames<R> {
    fn new(raw: R) -> Self {
        let mut dec = FrameDecoder::new();
        dec.set_max_window_size(ZSTD_MAX_WINDOW);
        ZstdFrames { src: BufReader::with_capacity(1 << 16, raw), dec, in_frame: false }
    }

    fn start_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.src.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.dec.reset(&mut self.src) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let want = u64::from(length);
                    let skipped = io::copy(&mut (&mut self.src).take(want), &mut io::sink())?;
                    if skipped < want {
                        return Err(zstd_error("skippable frame cut short"));
                    }
                }
                Err(err) => return Err(zstd_error(&err.to_string())),
            }
        }
    }
}

fn zstd_error(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {msg}"))
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.start_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            while self.dec.can_collect() == 0 && !self.dec.is_finished() {
                self.dec
                    .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(|err| zstd_error(&err.to_string()))?;
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.dec.is_finished() && self.dec.can_collect() == 0 {
                if let (Some(stored), Some(computed)) =
                    (self.dec.get_checksum_from_data(), self.dec.get_calculated_checksum())
                    && stored != computed
                {
                    return Err(zstd_error(&format!(
                        "content checksum {stored:#010x} does not match the data ({computed:#010x})"
                    )));
                }
                self.in_frame = false;
            }
        }
    }
}
