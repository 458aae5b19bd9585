//! Temp files beside the output that disappear unless explicitly kept, and a writer that
//! counts and hashes what passes through it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// A file that is deleted when dropped (error return or panic unwinding) unless
/// [`TempFile::persist`] renamed it into place. Lives in the output's directory so the
/// final rename is atomic (same filesystem).
pub(super) struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// `.<out>.<suffix>`, truncated if a crashed run left one behind. Hidden, like
    /// `fsx::tmp_sibling`: a run killed outright (no unwinding) must not leave a file that
    /// looks like a release artifact beside the real ones.
    pub fn create(out: &Path, suffix: &str) -> Result<(Self, File)> {
        let mut name = std::ffi::OsString::from(".");
        name.push(out.file_name().with_context(|| format!("output path {} has no file name", out.display()))?);
        name.push(".");
        name.push(suffix);
        let path = out.with_file_name(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("cannot create {} (is the output directory writable?)", path.display()))?;
        Ok((TempFile { path, keep: false }, file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rename onto `dest`; from here on the file is the caller's.
    pub fn persist(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest)
            .with_context(|| format!("cannot rename {} to {}", self.path.display(), dest.display()))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the error that got us here matters more than this one.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Counts bytes and computes SHA-256 of everything written through it.
pub(super) struct HashingWriter<W: Write> {
    inner: W,
    sha256: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, sha256: Sha256::new(), bytes: 0 }
    }

    /// (inner writer, byte count, sha256 hex)
    pub fn finish(self) -> (W, u64, String) {
        let digest = self.sha256.finalize();
        (self.inner, self.bytes, crate::fingerprint::hex(&digest))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
