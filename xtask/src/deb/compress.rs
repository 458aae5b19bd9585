//! Member compressors with reproducible settings.
//!
//! xz: always liblzma's multi-threaded encoder, even for one thread, with the block size
//! fixed here (see [`xz_block_size`]). Its output depends on preset, check and block size but not on the thread
//! count; the single-threaded encoder would produce different bytes (no block split), so
//! mixing the two would make the output depend on the machine.
//!
//! zstd: Debian's `zstd` tool (the library's own CLI: building libzstd into the xtask cost a
//! third of its clean build), always in worker mode (`-T1` and up) for the same reason: zstd's
//! job split depends on the parameters, not on the worker count, while single-thread mode is
//! a different encoder path.
//!
//! data.tar.xz does not come through here: see `xzblocks` (content-defined blocks).
//! control.tar.xz and other small xz members still do.
//!
//! gzip: header mtime 0, no file name, so the bytes depend on the content only.

use std::io::{self, Write};

use anyhow::{Context, Result};

use super::spec::Compression;
use super::tarball::EntrySink;

/// xz block size for a preset: 2 x the preset's dictionary, at least 1 MiB (16 MiB at -6).
///
/// Fixed here, not left to liblzma (`block_size = 0` means 3 x dict today, and liblzma
/// documents that its default "may change"): a change there must not change our bytes.
/// 2 x rather than dpkg-deb's 3 x: measured on a 205 MB Electron-like tree at -6 with 2
/// threads, peak RSS 258 MB instead of 284 MB (dpkg-deb: 275 MB) for 0.16% more bytes,
/// and twice as many blocks balance the two cores better at the end of the stream.
/// liblzma recommends 2-4 x the dictionary.
pub(super) fn xz_block_size(level: u32) -> u64 {
    const MIB: u64 = 1 << 20;
    // Dictionary sizes of xz presets 0..=9 (xz(1), "Presets" table).
    let dict = match level {
        0 => MIB / 4,
        1 => MIB,
        2 => 2 * MIB,
        3 | 4 => 4 * MIB,
        5 | 6 => 8 * MIB,
        7 => 16 * MIB,
        8 => 32 * MIB,
        _ => 64 * MIB,
    };
    (2 * dict).max(MIB)
}

pub(super) enum Encoder<W: Write> {
    Xz(liblzma::write::XzEncoder<W>),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(ZstdProcess<W>),
}

/// `zstd -LEVEL -T<threads> -c`: the stream goes to its stdin, a thread copies its stdout to
/// the writer.
pub(super) struct ZstdProcess<W: Write> {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    copier: Option<std::thread::JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> ZstdProcess<W> {
    fn start(level: i32, threads: u32, mut out: W) -> Result<Self> {
        let mut child = std::process::Command::new("zstd")
            .arg(format!("-{level}"))
            .arg(format!("-T{threads}"))
            .args(["--check", "-q", "-c", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .context("cannot start `zstd` for a zstd member: install it (Debian: apt-get install zstd), or use `compression: xz`")?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let copier = std::thread::spawn(move || {
            io::copy(&mut stdout, &mut out)?;
            Ok(out)
        });
        Ok(ZstdProcess { child, stdin, copier: Some(copier) })
    }

    fn finish(mut self) -> io::Result<W> {
        drop(self.stdin.take());
        let out = self
            .copier
            .take()
            .expect("finished once")
            .join()
            .map_err(|_| io::Error::other("the zstd copier panicked"))??;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(io::Error::other(format!("zstd exited with {status}")));
        }
        Ok(out)
    }
}

impl<W: Write> Write for ZstdProcess<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stdin.as_mut().expect("open until finish").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stdin.as_mut().expect("open until finish").flush()
    }
}

impl<W: Write> Drop for ZstdProcess<W> {
    fn drop(&mut self) {
        // An abandoned stream: stop the process rather than leave it waiting on stdin.
        if self.copier.is_some() {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl<W: Write + Send + 'static> Encoder<W> {
    pub fn new(compression: Compression, threads: u32, out: W) -> Result<Self> {
        let threads = threads.max(1);
        Ok(match compression {
            Compression::Xz { level } => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .preset(level)
                    .check(liblzma::stream::Check::Crc64)
                    .block_size(xz_block_size(level))
                    .threads(threads)
                    // 0 = lzma_code blocks until it made progress; no time-dependent flushes.
                    .timeout_ms(0)
                    .encoder()
                    .with_context(|| format!("cannot start the xz encoder (level {level}, {threads} threads)"))?;
                Encoder::Xz(liblzma::write::XzEncoder::new_stream(out, stream))
            }
            Compression::Gzip { level } => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    // 3 = Unix, what gzip(1) writes; the builder's default is "unknown".
                    .operating_system(3)
                    .write(out, flate2::Compression::new(level)),
            ),
            Compression::Zstd { level } => Encoder::Zstd(ZstdProcess::start(level, threads, out)?),
        })
    }

    /// Flush the compressor's tail and hand back the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Xz(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// A compressed stream has no use for entry boundaries.
impl<W: Write> EntrySink for Encoder<W> {}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Xz(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Xz(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// gzip a small in-package file (changelog) the way lintian wants it: max compression,
/// mtime 0, no stored name.
pub(super) fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new().mtime(0).operating_system(3).write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}
