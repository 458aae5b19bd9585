//! A directory of compressed xz blocks keyed by SHA-256 of their uncompressed bytes and the
//! compression settings, so that a repack compresses only the blocks that changed.
//!
//! One file per block, `<key>.xzblk`:
//! `MAGIC (8) | unpadded size (u64 LE) | uncompressed size (u64 LE) | SHA-256 of the key,
//! the two sizes and the block bytes (32) | block bytes`. A read checks the magic, the sizes
//! against the block and the caller's, and the SHA-256 with the key the entry was looked up
//! by; anything else (truncated file, flipped byte, one entry copied over another: the
//! middle pieces of a large file all have the same sizes) is reported as corrupt, deleted,
//! and the caller recompresses.
//!
//! The header only proves that the entry was written for its key, not that its bytes
//! decode to the content the key names (a forged or buggy entry could pass). That is proven
//! on the package: the writer records the SHA-256 of every block's uncompressed bytes, and
//! the verify pass that decodes data.tar.xz compares each decoded block with it (see
//! `write_deb_with`); a mismatch purges this directory and repacks without it. Writes go to a temp file in the same
//! directory and are renamed into place, so a reader sees a whole entry or none, even with
//! two builds sharing the directory. A hit sets the file's mtime to now: eviction removes
//! the oldest mtimes first (least recently used).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// `ktxzblk1` entries had a digest without the key: not trusted, read as corrupt.
const MAGIC: &[u8; 8] = b"ktxzblk2";
const HEADER: usize = 8 + 8 + 8 + 32;
const EXT: &str = "xzblk";

/// One finished xz block: header, compressed data, padding, check.
pub(super) struct EncodedBlock {
    pub bytes: Vec<u8>,
    /// The index's "unpadded size": everything but the block padding.
    pub unpadded: u64,
    pub uncompressed: u64,
}

pub(super) struct BlockCache {
    dir: PathBuf,
    /// False: lookups miss, entries are still written (the repack after a bad entry).
    read: bool,
    /// Makes temp names unique among this process's workers.
    tmp_counter: AtomicU64,
}

pub(super) enum Lookup {
    Hit(EncodedBlock),
    Miss,
    /// Present but damaged; already deleted.
    Corrupt,
}

impl BlockCache {
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the .deb block cache {} (is target/ writable?)", dir.display()))?;
        Ok(BlockCache { dir: dir.to_path_buf(), read: true, tmp_counter: AtomicU64::new(0) })
    }

    /// The cache with every entry deleted and lookups off: what a repack uses after the
    /// package built from this cache did not decode to what was written. Entries written by
    /// that repack (or by another build meanwhile) serve the next run, not this one.
    pub fn purged(dir: &Path) -> Result<Self> {
        let mut cache = BlockCache::open(dir)?;
        let listing = fs::read_dir(dir).with_context(|| format!("cannot list the block cache {}", dir.display()))?;
        for e in listing {
            let path = e.with_context(|| format!("cannot list the block cache {}", dir.display()))?.path();
            if path.extension().is_some_and(|x| x == EXT) {
                fs::remove_file(&path).with_context(|| {
                    format!("cannot remove the cached block {}; delete {} by hand", path.display(), dir.display())
                })?;
            }
        }
        cache.read = false;
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{EXT}"))
    }

    /// The cached block for `key`, whose uncompressed size must be `uncompressed`.
    pub fn get(&self, key: &str, uncompressed: u64) -> Result<Lookup> {
        if !self.read {
            return Ok(Lookup::Miss);
        }
        let path = self.path(key);
        let mut file = match File::options().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(e).with_context(|| format!("cannot open the cached block {}", path.display())),
        };
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).with_context(|| format!("cannot read the cached block {}", path.display()))?;
        match parse(&raw, key, uncompressed) {
            Some(block) => {
                // Recently used: eviction keeps it. Best effort, a failure only ages it.
                let _ = file.set_modified(SystemTime::now());
                Ok(Lookup::Hit(block))
            }
            None => {
                drop(file);
                fs::remove_file(&path).with_context(|| {
                    format!("cannot remove the corrupt cached block {}; delete the folder", path.display())
                })?;
                Ok(Lookup::Corrupt)
            }
        }
    }

    /// Store `block` under `key`: temp file, then rename.
    pub fn put(&self, key: &str, block: &EncodedBlock) -> Result<()> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{key}.{}.{n}.tmp", std::process::id()));
        let mut raw = Vec::with_capacity(HEADER + block.bytes.len());
        raw.extend_from_slice(MAGIC);
        raw.extend_from_slice(&block.unpadded.to_le_bytes());
        raw.extend_from_slice(&block.uncompressed.to_le_bytes());
        raw.extend_from_slice(&digest(key, block.unpadded, block.uncompressed, &block.bytes));
        raw.extend_from_slice(&block.bytes);
        let written = File::create(&tmp).and_then(|mut f| f.write_all(&raw));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write the cached block {} (disk full?)", tmp.display()));
        }
        let dest = self.path(key);
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot rename {} to {}", tmp.display(), dest.display()));
        }
        Ok(())
    }

    /// Delete the least recently used entries until the rest fit in `max_bytes`, and temp
    /// files that crashed runs left (older than an hour). Returns the bytes kept.
    pub fn evict(&self, max_bytes: u64) -> Result<u64> {
        let mut entries = Vec::new();
        let listing =
            fs::read_dir(&self.dir).with_context(|| format!("cannot list the block cache {}", self.dir.display()))?;
        for e in listing {
            let e = e.with_context(|| format!("cannot list the block cache {}", self.dir.display()))?;
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                if mtime.elapsed().is_ok_and(|age| age.as_secs() > 3600) {
                    let _ = fs::remove_file(&path);
                }
            } else if name.ends_with(&format!(".{EXT}")) {
                entries.push((mtime, name, meta.len(), path));
            }
        }
        // Newest first; the name breaks ties so the choice does not depend on listing order.
        entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut kept = 0u64;
        let mut full = false;
        for (_, _, len, path) in entries {
            if !full && kept + len <= max_bytes {
                kept += len;
            } else {
                // Everything older than the first entry that does not fit goes too.
                full = true;
                fs::remove_file(&path).with_context(|| format!("cannot evict {}", path.display()))?;
            }
        }
        Ok(kept)
    }
}

/// Binds the entry to its key: a file copied under another key fails this check.
fn digest(key: &str, unpadded: u64, uncompressed: u64, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    h.update(unpadded.to_le_bytes());
    h.update(uncompressed.to_le_bytes());
    h.update(bytes);
    h.finalize().into()
}

fn parse(raw: &[u8], key: &str, uncompressed: u64) -> Option<EncodedBlock> {
    if raw.len() < HEADER || &raw[..8] != MAGIC {
        return None;
    }
    let unpadded = u64::from_le_bytes(raw[8..16].try_into().ok()?);
    let stored_uncompressed = u64::from_le_bytes(raw[16..24].try_into().ok()?);
    let bytes = &raw[HEADER..];
    if stored_uncompressed != uncompressed
        // Block padding is 0-3 bytes up to a multiple of four.
        || unpadded == 0
        || unpadded > bytes.len() as u64
        || bytes.len() as u64 - unpadded > 3
        || !bytes.len().is_multiple_of(4)
        || digest(key, unpadded, stored_uncompressed, bytes)[..] != raw[24..56]
    {
        return None;
    }
    Some(EncodedBlock { bytes: bytes.to_vec(), unpadded, uncompressed })
}
