//! A deterministic GNU tar stream: fixed owner (0:0 root/root), fixed mtime, "./" paths,
//! GNU LongLink records for names of 100 bytes or more.
//!
//! The `tar` crate supplies the 512-byte header (field encoding, checksum); names are
//! written here because its `Builder` drops the leading "./" that dpkg-deb emits.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use md5::{Digest, Md5};

use super::layout::{FileSource, Item, ItemKind};

const BLOCK: usize = 512;
/// GNU tar switches to a LongLink record at this length (the name field is 100 bytes and
/// GNU tar keeps it NUL-terminated).
const NAME_FIELD: usize = 100;
/// Read buffer for file contents: syscalls are noise next to xz at this size, and every
/// MiB here counts against dpkg-deb's peak memory.
const COPY_BUF: usize = 256 << 10;

/// Per-item result of writing data.tar.
#[derive(Debug, Clone)]
pub(super) struct Written {
    /// Size in bytes for regular files, `None` for directories and symlinks.
    pub file_size: Option<u64>,
    /// MD5 of a regular file's content, lower-case hex.
    pub md5: Option<String>,
}

/// A tar byte sink that wants to know where entries begin and end (the xz block writer cuts
/// blocks there); the defaults ignore both.
pub(super) trait EntrySink: Write {
    /// Called before an entry's first header; `content_size` is 0 for directories and
    /// symlinks.
    fn begin_entry(&mut self, _content_size: u64) -> io::Result<()> {
        Ok(())
    }
    /// Called after an entry's last padding byte. `identity` is the content's MD5 for files,
    /// the link target for symlinks, empty for directories.
    fn end_entry(&mut self, _path: &str, _identity: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

impl EntrySink for Vec<u8> {}

pub(super) struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
    buf: Vec<u8>,
}

impl<W: EntrySink> TarWriter<W> {
    pub fn new(out: W, mtime: u64) -> Self {
        TarWriter { out, mtime, buf: Vec::new() }
    }

    /// Write one planned item, streaming a file's content and hashing it on the way.
    pub fn append_item(&mut self, item: &Item<'_>) -> Result<Written> {
        match item.kind {
            ItemKind::Dir => {
                self.begin(&item.tar_path, 0)?;
                self.header(&item.tar_path, tar::EntryType::Directory, item.mode, 0, None)?;
                self.end(&item.tar_path, &[])?;
                Ok(Written { file_size: None, md5: None })
            }
            ItemKind::Symlink(target) => {
                let target =
                    target.to_str().with_context(|| format!("symlink {} has a non-UTF-8 target", item.tar_path))?;
                self.begin(&item.tar_path, 0)?;
                self.header(&item.tar_path, tar::EntryType::Symlink, item.mode, 0, Some(target))?;
                self.end(&item.tar_path, target.as_bytes())?;
                Ok(Written { file_size: None, md5: None })
            }
            ItemKind::File(FileSource::Bytes(bytes)) => {
                let md5 = self.file(item, bytes.len() as u64, &mut &bytes[..], None)?;
                Ok(Written { file_size: Some(bytes.len() as u64), md5: Some(md5) })
            }
            ItemKind::File(FileSource::Path(path)) => {
                let mut file = File::open(path).with_context(|| {
                    format!("cannot open {} for {} (check it exists and is readable)", path.display(), item.tar_path)
                })?;
                let meta = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?;
                if !meta.is_file() {
                    bail!(
                        "{} (for {}) is not a regular file; give a Source::Dir or Source::Symlink",
                        path.display(),
                        item.tar_path
                    );
                }
                let size = meta.len();
                let md5 = self.file(item, size, &mut file, Some(path))?;
                Ok(Written { file_size: Some(size), md5: Some(md5) })
            }
        }
    }

    /// Two zero blocks end the archive.
    pub fn finish(mut self) -> Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK]).context("cannot write the tar end-of-archive blocks")?;
        Ok(self.out)
    }

    fn begin(&mut self, path: &str, content_size: u64) -> Result<()> {
        self.out.begin_entry(content_size).with_context(|| format!("cannot start the tar entry {path}"))
    }

    fn end(&mut self, path: &str, identity: &[u8]) -> Result<()> {
        self.out.end_entry(path, identity).with_context(|| format!("cannot end the tar entry {path}"))
    }

    fn file(&mut self, item: &Item<'_>, size: u64, content: &mut dyn Read, path: Option<&Path>) -> Result<String> {
        self.begin(&item.tar_path, size)?;
        self.header(&item.tar_path, tar::EntryType::Regular, item.mode, size, None)?;
        if self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF];
        }
        let what =
            || path.map_or_else(|| item.tar_path.clone(), |p| format!("{} (for {})", p.display(), item.tar_path));
        let mut md5 = Md5::new();
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match content.read(&mut self.buf[..want]) {
                Ok(0) => bail!(
                    "{} shrank while it was being packaged ({} bytes missing); \
                     do not modify the tree during the build",
                    what(),
                    left
                ),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", what())),
            };
            md5.update(&self.buf[..n]);
            self.out
                .write_all(&self.buf[..n])
                .with_context(|| format!("cannot write {} into the compressor", what()))?;
            left -= n as u64;
        }
        // One extra byte means the file grew after its size went into the header.
        let mut probe = [0u8; 1];
        if path.is_some() && content.read(&mut probe).unwrap_or(0) != 0 {
            bail!("{} grew while it was being packaged; do not modify the tree during the build", what());
        }
        self.pad(size)?;
        let md5 = md5.finalize();
        self.end(&item.tar_path, &md5)?;
        Ok(crate::fingerprint::hex(&md5))
    }

    fn header(&mut self, path: &str, kind: tar::EntryType, mode: u32, size: u64, link: Option<&str>) -> Result<()> {
        if path.len() >= NAME_FIELD {
            self.long_record(b'L', path)?;
        }
        if let Some(link) = link
            && link.len() >= NAME_FIELD
        {
            self.long_record(b'K', link)?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h.set_username("root").context("tar header: user name")?;
        h.set_groupname("root").context("tar header: group name")?;
        // Raw copies: the GNU reader takes the full name from the LongLink record; the
        // header keeps the first 100 bytes, like GNU tar.
        copy_truncated(&mut h.as_old_mut().name, path);
        if let Some(link) = link {
            copy_truncated(&mut h.as_old_mut().linkname, link);
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes()).with_context(|| format!("cannot write the tar header of {path}"))
    }

    /// GNU `././@LongLink` record: type 'L' carries a long name, 'K' a long link target.
    fn long_record(&mut self, kind: u8, value: &str) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        copy_truncated(&mut h.as_old_mut().name, "././@LongLink");
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_username("root").context("tar header: user name")?;
        h.set_groupname("root").context("tar header: group name")?;
        // The value is NUL-terminated inside the record.
        let len = value.len() as u64 + 1;
        h.set_size(len);
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(value.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(len)
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem]).context("cannot write tar padding")?;
        }
        Ok(())
    }
}

fn copy_truncated(field: &mut [u8], value: &str) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value.as_bytes()[..n]);
    field[n..].fill(0);
}
