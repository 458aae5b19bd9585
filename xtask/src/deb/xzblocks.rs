//! data.tar.xz as one .xz stream of content-defined blocks, each compressed on its own, in
//! parallel, and reusable from a [`BlockCache`] when its bytes did not change.
//!
//! # Block rule
//!
//! The tar stream is cut only at entry boundaries, except inside large files. With the
//! constants of [`BlockRule::DEFAULT`] (`min` 3 MiB, `target` 3 MiB, `max` 16 MiB):
//!
//! 1. Before an entry whose content is larger than `max / 2` (a *large* entry) the current
//!    block ends. The large entry is cut into pieces of `max` bytes counted from its own
//!    first header byte (its headers go with the first piece), and the block ends after its
//!    last piece. A large file therefore always starts and ends blocks of its own.
//! 2. An entry *passes* if `h < 2^64 * len / target`, where `len` is the entry's length in
//!    the tar (headers, content, padding) and `h` is the first 8 bytes (big-endian) of
//!    SHA-256(tar path, NUL, identity): the content's MD5 for files, the target for
//!    symlinks, empty for directories. Every tar byte thus ends a passing entry with
//!    probability 1 / `target`, whatever the entry sizes.
//! 3. After an entry that passes, the block ends unless another passing entry (or a large
//!    entry) ended less than `min` bytes earlier in the tar stream. The test looks at the
//!    stream, not at where the current block began, so it is local: whether an entry ends
//!    a block depends only on it and the `min` bytes before it. Natural cuts are at least
//!    `min` apart; blocks average about `target * e^(min / target)` (~8 MiB).
//! 4. Before any other entry, if its content would take the block past `max` bytes, the
//!    block ends at its most cut-like entry boundary at or past `min` bytes from its start:
//!    the smallest `h / len`, the earliest on a tie. The bytes after that boundary start
//!    the next block; repeated while the entry still does not fit. This is rare (about 5%
//!    of blocks) and ends at the next natural cut.
//!
//! An edit to one file changes its hash and maybe its length, so only the cut decisions for
//! itself and the entries in the `min` bytes after it can change: at most one natural cut
//! moves, appears or disappears, so the block holding the file and at most one neighbour
//! change. Every other block keeps its bytes, except inside a stretch split by rule 4, whose
//! blocks may all change.
//!
//! # Store rule
//!
//! A block that order-0 statistics call incompressible is stored as LZMA2 uncompressed
//! chunks instead of being compressed: count its byte values in each 64 KiB chunk, add up
//! each chunk's Shannon entropy (`sum(count * log2(len / count))` bits), and store the block
//! when that estimate is at least 99 % of its 8 bits per byte. Counting per chunk keeps a
//! stretch of code inside compressed bytes visible: a 64 KiB chunk of text among random
//! bytes lowers the estimate by its own saving, where one histogram over the block would
//! blur it into the noise. PyInstaller executables (zlib-compressed entries) estimate
//! 99.4-99.6 %, and xz -6 saves 0-1.6 % of them at ~2.5 MB/s on one core: a 16 MiB block
//! of an arm64 service binary took ~6 s to save 190 KB. Blocks of code and text estimate
//! 65-80 %. The rule costs that 0-1.6 % on such blocks, and more only on random bytes
//! that repeat themselves (LZMA would find the repeats); it never changes what a block
//! decodes to. The logarithms are fixed-point integers, so every host decides alike.
//!
//! # Format
//!
//! liblzma writes every piece: stream header, each block by `lzma_block_buffer_encode`
//! (LZMA2 at the preset, CRC64 check, sizes in the block header) or by
//! `lzma_block_uncomp_encode` (the store rule), the index and the stream footer. Blocks
//! depend only on their bytes and the preset, so neither the thread count nor the cache
//! changes the output.
//!
//! # What was meant
//!
//! Every block's uncompressed bytes are hashed (SHA-256) by the worker that handles it; the
//! cache key is derived from that hash. [`XzBlockWriter::finish`] hands back the list of
//! (length, SHA-256) pieces, the tar stream as the writer meant it, so that a decode of the
//! finished data.tar.xz can prove the package holds exactly that stream whatever the cache
//! held.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};
use liblzma_sys as sys;
use sha2::{Digest, Sha256};

use super::blockcache::{BlockCache, EncodedBlock, Lookup};
use super::tarball::EntrySink;

/// (uncompressed length, SHA-256 of the uncompressed bytes) of every block, in order.
pub(super) type Pieces = Vec<(u64, [u8; 32])>;

/// Where data.tar is cut into xz blocks: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlockRule {
    pub min: usize,
    pub target: u64,
    pub max: usize,
}

impl BlockRule {
    /// 3 MiB minimum gap, ~8 MiB average, 16 MiB maximum: large enough that xz -6 (8 MiB
    /// dictionary) loses little ratio, small enough that a 200 MB package gives two cores
    /// ~25 blocks to share and an edit recompresses ~8-16 MiB.
    pub const DEFAULT: BlockRule = BlockRule { min: 3 << 20, target: 3 << 20, max: 16 << 20 };
}

/// How the blocks of one data.tar.xz were obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlockStats {
    pub blocks: u64,
    /// Compressed by LZMA2 in this run.
    pub compressed: u64,
    /// Taken from the block cache.
    pub reused: u64,
    /// Cache entries that failed verification (then recompressed and rewritten).
    pub corrupt: u64,
    /// Stored as LZMA2 uncompressed chunks by the store rule. Never cached (storing costs
    /// a copy and a CRC), so counted here on every pack: `blocks` is the sum of
    /// `compressed`, `stored` and `reused`.
    pub stored: u64,
    /// The first pack from the cache failed the verify pass: the cache was emptied and
    /// these counts are the second pack's, made without cached blocks.
    pub cache_purged: bool,
}

/// The chunk whose byte counts give one entropy term of the store rule: small enough to see
/// 64 KiB of text among compressed bytes, large enough that uniform bytes estimate within
/// 0.04 % of 8 bits (the empirical entropy of n samples falls short by ~255 / (2 n ln 2)).
const ENTROPY_CHUNK: usize = 64 << 10;

/// `log2(x)` for `x >= 1` in 16.16 fixed point, by repeated squaring of the mantissa. In
/// integers, because the store rule must decide the same on every host and libm's `log2`
/// is not correctly rounded everywhere.
pub(super) fn log2_q16(x: u64) -> u64 {
    debug_assert!(x > 0);
    let int = 63 - u64::from(x.leading_zeros());
    // The mantissa x / 2^int in [1, 2), as a 32-bit fraction.
    let mut m: u128 = (u128::from(x) << 32) >> int;
    let mut frac = 0u64;
    for bit in (0..16).rev() {
        m = (m * m) >> 32;
        if m >= 2 << 32 {
            m >>= 1;
            frac |= 1 << bit;
        }
    }
    (int << 16) | frac
}

/// The store rule (module docs): order-0 entropy per 64 KiB chunk is at least 99 % of
/// 8 bits per byte, so xz would barely shrink the bytes.
pub(super) fn incompressible(data: &[u8]) -> bool {
    if data.is_empty() {
        return false;
    }
    // Estimated bits, in 16.16 fixed point.
    let mut bits: u128 = 0;
    for chunk in data.chunks(ENTROPY_CHUNK) {
        let mut counts = [0u64; 256];
        for &b in chunk {
            counts[b as usize] += 1;
        }
        let log_len = log2_q16(chunk.len() as u64);
        bits += counts.iter().filter(|&&c| c > 0).map(|&c| u128::from(c * (log_len - log2_q16(c)))).sum::<u128>();
    }
    // bits >= 99 % of 8 bits per byte, in integers.
    100 * bits >= (99 * 8 * data.len() as u128) << 16
}

/// `data` as one xz block with a CRC64 check: LZMA2 at `preset`, or with `None` LZMA2
/// uncompressed chunks (the store rule: 3 bytes per 64 KiB chunk over the data itself).
pub(super) fn write_block(data: &[u8], preset: Option<u32>) -> Result<EncodedBlock> {
    // SAFETY: plain C structs, zero-initialised as liblzma's own LZMA_*_INIT macros do;
    // `opts` and `filters` outlive the call that reads them (uncompressed chunks need no
    // filter chain: liblzma sets its own); `out` has `bound` bytes of capacity and liblzma
    // writes at most `bound`, reporting the count in `pos`.
    unsafe {
        let mut opts: sys::lzma_options_lzma = std::mem::zeroed();
        let mut filters = [
            sys::lzma_filter { id: sys::LZMA_FILTER_LZMA2, options: (&raw mut opts).cast() },
            sys::lzma_filter { id: sys::LZMA_VLI_UNKNOWN, options: std::ptr::null_mut() },
        ];
        let mut block: sys::lzma_block = std::mem::zeroed();
        block.version = 0;
        block.check = sys::LZMA_CHECK_CRC64;
        let bound = sys::lzma_block_buffer_bound(data.len());
        let mut out: Vec<u8> = Vec::with_capacity(bound);
        let mut pos = 0usize;
        let (ret, what) = match preset {
            Some(level) => {
                if sys::lzma_lzma_preset(&mut opts, level) != 0 {
                    bail!("liblzma does not know xz preset {level}");
                }
                block.filters = filters.as_mut_ptr();
                let ret = sys::lzma_block_buffer_encode(
                    &mut block,
                    std::ptr::null(),
                    data.as_ptr(),
                    data.len(),
                    out.as_mut_ptr(),
                    &mut pos,
                    bound,
                );
                (ret, "compress")
            }
            None => {
                let ret = sys::lzma_block_uncomp_encode(
                    &mut block,
                    data.as_ptr(),
                    data.len(),
                    out.as_mut_ptr(),
                    &mut pos,
                    bound,
                );
                (ret, "store")
            }
        };
        if ret != sys::LZMA_OK {
            bail!("liblzma could not {what} a {} byte block (lzma_ret {ret}; out of memory?)", data.len());
        }
        out.set_len(pos);
        let unpadded = sys::lzma_block_unpadded_size(&block);
        if unpadded == 0 || unpadded > pos as u64 {
            bail!("liblzma returned an invalid block (unpadded size {unpadded} of {pos} bytes)");
        }
        Ok(EncodedBlock { bytes: out, unpadded, uncompressed: data.len() as u64 })
    }
}

/// Everything that decides a block's compressed bytes besides its content: part of the
/// cache key, so a different preset or liblzma never reuses another's blocks.
fn settings_tag(level: u32) -> String {
    // SAFETY: no arguments, returns a number.
    let version = unsafe { sys::lzma_version_number() };
    format!("xz-block v4 lzma2 preset {level} store order-0 99% per 64KiB check crc64 liblzma {version}")
}

/// The key of a block whose uncompressed bytes have SHA-256 `content`.
fn cache_key(tag: &str, content: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    h.update([0]);
    h.update(content);
    crate::fingerprint::hex(&h.finalize())
}

struct Job {
    seq: u64,
    data: Vec<u8>,
}

struct Done {
    seq: u64,
    result: Result<(EncodedBlock, Source, [u8; 32])>,
}

#[derive(Clone, Copy)]
enum Source {
    Compressed,
    /// The store rule applied.
    Stored,
    Reused,
    /// A corrupt cache entry was found and replaced.
    Repaired,
}

/// The workers: each takes a block, looks it up in the cache, compresses it on a miss.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(threads: u32, level: u32, cache: Option<Arc<BlockCache>>) -> Result<Pool> {
        let (job_tx, job_rx) = sync_channel::<Job>(threads as usize);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = std::sync::mpsc::channel::<Done>();
        let tag = Arc::new(settings_tag(level));
        let mut workers = Vec::new();
        for i in 0..threads {
            let (job_rx, done_tx, cache, tag) = (job_rx.clone(), done_tx.clone(), cache.clone(), tag.clone());
            let worker = std::thread::Builder::new()
                .name(format!("xz-block-{i}"))
                .spawn(move || {
                    loop {
                        let job = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let result = process(level, &tag, cache.as_deref(), &job.data);
                        if done_tx.send(Done { seq: job.seq, result }).is_err() {
                            return;
                        }
                    }
                })
                .context("cannot start an xz worker thread")?;
            workers.push(worker);
        }
        Ok(Pool { jobs: Some(job_tx), done, workers })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the job channel stops the workers once they finish their current block.
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A block by the store rule: stored or compressed at `level`.
fn encode(level: u32, data: &[u8]) -> Result<(EncodedBlock, Source)> {
    if incompressible(data) {
        Ok((write_block(data, None)?, Source::Stored))
    } else {
        Ok((write_block(data, Some(level))?, Source::Compressed))
    }
}

/// The block for `data` and the SHA-256 of `data`.
fn process(level: u32, tag: &str, cache: Option<&BlockCache>, data: &[u8]) -> Result<(EncodedBlock, Source, [u8; 32])> {
    let content: [u8; 32] = Sha256::digest(data).into();
    let (block, source) = lookup_or_encode(level, tag, cache, data, &content)?;
    Ok((block, source, content))
}

fn lookup_or_encode(
    level: u32,
    tag: &str,
    cache: Option<&BlockCache>,
    data: &[u8],
    content: &[u8; 32],
) -> Result<(EncodedBlock, Source)> {
    let Some(cache) = cache else {
        return encode(level, data);
    };
    let key = cache_key(tag, content);
    let repaired = match cache.get(&key, data.len() as u64)? {
        Lookup::Hit(block) => return Ok((block, Source::Reused)),
        Lookup::Miss => false,
        Lookup::Corrupt => true,
    };
    match encode(level, data)? {
        // Storing costs a copy and a CRC, no more than reading a cache entry back: stored
        // blocks are not cached.
        (block, Source::Stored) => Ok((block, Source::Stored)),
        (block, _) => {
            cache.put(&key, &block)?;
            Ok((block, if repaired { Source::Repaired } else { Source::Compressed }))
        }
    }
}

/// A writer of data.tar bytes that cuts them into blocks (see the module docs), has them
/// compressed by `threads` workers and writes the .xz stream to `out` in order. At most
/// `threads` blocks are queued or being compressed while the next one fills.
pub(super) struct XzBlockWriter<W: Write> {
    out: W,
    rule: BlockRule,
    cur: Vec<u8>,
    /// Bytes of the current entry so far.
    entry_len: u64,
    /// Inside a large entry (rule 1).
    large: bool,
    /// Entry ends inside `cur` (rule 4's candidates), in order.
    boundaries: Vec<Boundary>,
    /// Tar bytes so far.
    pos: u64,
    /// Tar offset after the last passing or large entry (rule 3).
    last_pass: Option<u64>,
    pool: Pool,
    max_in_flight: u64,
    next_seq: u64,
    next_write: u64,
    finished: BTreeMap<u64, (EncodedBlock, Source, [u8; 32])>,
    /// (unpadded, uncompressed) of every written block, for the index.
    index: Vec<(u64, u64)>,
    /// (uncompressed length, SHA-256 of the uncompressed bytes) of every written block.
    pieces: Pieces,
    stats: BlockStats,
    compressed_bytes: u64,
}

impl<W: Write> XzBlockWriter<W> {
    pub fn new(level: u32, threads: u32, rule: BlockRule, cache: Option<Arc<BlockCache>>, mut out: W) -> Result<Self> {
        let threads = threads.max(1);
        let pool = Pool::start(threads, level, cache)?;
        let mut header = [0u8; sys::LZMA_STREAM_HEADER_SIZE as usize];
        // SAFETY: zeroed flags (version 0) with the check set; `header` has the 12 bytes
        // the function writes.
        let ret = unsafe {
            let mut flags: sys::lzma_stream_flags = std::mem::zeroed();
            flags.check = sys::LZMA_CHECK_CRC64;
            sys::lzma_stream_header_encode(&flags, header.as_mut_ptr())
        };
        if ret != sys::LZMA_OK {
            bail!("liblzma could not encode an xz stream header (lzma_ret {ret})");
        }
        out.write_all(&header).context("cannot write the xz stream header")?;
        Ok(XzBlockWriter {
            out,
            rule,
            cur: Vec::with_capacity(rule.max + (64 << 10)),
            entry_len: 0,
            large: false,
            boundaries: Vec::new(),
            pos: 0,
            last_pass: None,
            pool,
            max_in_flight: threads as u64,
            next_seq: 0,
            next_write: 0,
            finished: BTreeMap::new(),
            index: Vec::new(),
            pieces: Vec::new(),
            stats: BlockStats::default(),
            compressed_bytes: header.len() as u64,
        })
    }

    /// End the current block (if it holds anything) and hand it to the workers.
    fn cut(&mut self) -> io::Result<()> {
        self.cut_at(self.cur.len())
    }

    /// Hand `cur[..at]` to the workers as a block; `cur[at..]` starts the next one.
    fn cut_at(&mut self, at: usize) -> io::Result<()> {
        if at == 0 {
            return Ok(());
        }
        while self.next_seq - self.next_write >= self.max_in_flight {
            self.wait_one()?;
        }
        let mut rest = Vec::with_capacity(self.rule.max + (64 << 10));
        rest.extend_from_slice(&self.cur[at..]);
        let mut data = std::mem::replace(&mut self.cur, rest);
        data.truncate(at);
        self.boundaries.retain(|b| b.offset > at);
        for b in &mut self.boundaries {
            b.offset -= at;
        }
        let jobs = self.pool.jobs.as_ref().expect("open until finish");
        jobs.send(Job { seq: self.next_seq, data }).map_err(|_| io::Error::other("the xz workers stopped"))?;
        self.next_seq += 1;
        Ok(())
    }

    /// Wait for one finished block and write out every block that is now next in order.
    fn wait_one(&mut self) -> io::Result<()> {
        let done = self.pool.done.recv().map_err(|_| io::Error::other("an xz worker thread died"))?;
        let block = done.result.map_err(|e| io::Error::other(format!("{e:#}")))?;
        self.finished.insert(done.seq, block);
        while let Some((block, source, content)) = self.finished.remove(&self.next_write) {
            self.pieces.push((block.uncompressed, content));
            self.out.write_all(&block.bytes)?;
            self.compressed_bytes += block.bytes.len() as u64;
            self.index.push((block.unpadded, block.uncompressed));
            self.stats.blocks += 1;
            match source {
                Source::Compressed => self.stats.compressed += 1,
                Source::Stored => self.stats.stored += 1,
                Source::Reused => self.stats.reused += 1,
                Source::Repaired => {
                    self.stats.compressed += 1;
                    self.stats.corrupt += 1;
                }
            }
            self.next_write += 1;
        }
        Ok(())
    }

    /// Write the last block, the index and the stream footer; hand back the writer, the
    /// block counts, the size of the .xz stream and the (length, SHA-256) of every block's
    /// uncompressed bytes in order.
    pub fn finish(mut self) -> Result<(W, BlockStats, u64, Pieces)> {
        self.cut()?;
        while self.next_write < self.next_seq {
            self.wait_one()?;
        }
        // SAFETY: the index is created, filled, encoded into a buffer of exactly
        // lzma_index_size bytes and freed here; the flags are zeroed plus the two fields
        // liblzma reads; `footer` has the 12 bytes the function writes.
        let (index, footer) = unsafe {
            let i = sys::lzma_index_init(std::ptr::null());
            if i.is_null() {
                bail!("liblzma could not allocate the xz index (out of memory?)");
            }
            struct Free(*mut sys::lzma_index);
            impl Drop for Free {
                fn drop(&mut self) {
                    // SAFETY: allocated by lzma_index_init above, freed once.
                    unsafe { sys::lzma_index_end(self.0, std::ptr::null()) }
                }
            }
            let i = Free(i);
            for &(unpadded, uncompressed) in &self.index {
                let ret = sys::lzma_index_append(i.0, std::ptr::null(), unpadded, uncompressed);
                if ret != sys::LZMA_OK {
                    bail!("liblzma refused an xz index record ({unpadded}, {uncompressed}): lzma_ret {ret}");
                }
            }
            let size = sys::lzma_index_size(i.0) as usize;
            let mut index = vec![0u8; size];
            let mut pos = 0usize;
            let ret = sys::lzma_index_buffer_encode(i.0, index.as_mut_ptr(), &mut pos, size);
            if ret != sys::LZMA_OK || pos != size {
                bail!("liblzma could not encode the xz index (lzma_ret {ret})");
            }
            let mut flags: sys::lzma_stream_flags = std::mem::zeroed();
            flags.check = sys::LZMA_CHECK_CRC64;
            flags.backward_size = size as u64;
            let mut footer = [0u8; sys::LZMA_STREAM_HEADER_SIZE as usize];
            let ret = sys::lzma_stream_footer_encode(&flags, footer.as_mut_ptr());
            if ret != sys::LZMA_OK {
                bail!("liblzma could not encode the xz stream footer (lzma_ret {ret})");
            }
            (index, footer)
        };
        self.out.write_all(&index).context("cannot write the xz index")?;
        self.out.write_all(&footer).context("cannot write the xz stream footer")?;
        let size = self.compressed_bytes + (index.len() + footer.len()) as u64;
        let XzBlockWriter { out, stats, pieces, .. } = self;
        Ok((out, stats, size, pieces))
    }
}

/// An entry end inside the current block.
#[derive(Debug, Clone, Copy)]
struct Boundary {
    /// Offset in the block just after the entry.
    offset: usize,
    /// The entry's hash and tar length (rule 2).
    h: u64,
    len: u64,
}

impl Boundary {
    /// Rule 2.
    fn passes(&self, rule: &BlockRule) -> bool {
        (self.h as u128) * (rule.target as u128) < (self.len as u128) << 64
    }

    /// Rule 4's order: smaller `h / len` is more cut-like.
    fn more_cut_like(&self, other: &Boundary) -> bool {
        (self.h as u128) * (other.len.max(1) as u128) < (other.h as u128) * (self.len.max(1) as u128)
    }
}

/// The first 8 bytes of SHA-256(path, NUL, identity), big-endian.
fn entry_hash(path: &str, identity: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update(path.as_bytes());
    h.update([0]);
    h.update(identity);
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

impl<W: Write> EntrySink for XzBlockWriter<W> {
    fn begin_entry(&mut self, content_size: u64) -> io::Result<()> {
        self.entry_len = 0;
        if content_size > (self.rule.max / 2) as u64 {
            self.cut()?;
            self.large = true;
        } else {
            while !self.cur.is_empty() && self.cur.len() as u64 + content_size > self.rule.max as u64 {
                // Rule 4. The block's end is a boundary past `min` (it holds more than
                // max / 2 >= min bytes), so there is always a candidate.
                let min = self.rule.min;
                let best = self
                    .boundaries
                    .iter()
                    .copied()
                    .filter(|b| b.offset >= min)
                    .reduce(|best, b| if b.more_cut_like(&best) { b } else { best })
                    .map_or(self.cur.len(), |b| b.offset);
                self.cut_at(best)?;
            }
        }
        Ok(())
    }

    fn end_entry(&mut self, path: &str, identity: &[u8]) -> io::Result<()> {
        if self.large {
            self.large = false;
            self.last_pass = Some(self.pos);
            return self.cut();
        }
        let b = Boundary { offset: self.cur.len(), h: entry_hash(path, identity), len: self.entry_len };
        if !b.passes(&self.rule) {
            self.boundaries.push(b);
            return Ok(());
        }
        let quiet = self.last_pass.is_none_or(|p| self.pos - p >= self.rule.min as u64);
        self.last_pass = Some(self.pos);
        if quiet {
            self.cut()
        } else {
            self.boundaries.push(b);
            Ok(())
        }
    }
}

impl<W: Write> Write for XzBlockWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = if self.large {
            // Pieces of `max` bytes from the large entry's start: the block began with it.
            let room = self.rule.max - self.cur.len();
            let n = room.min(buf.len());
            self.cur.extend_from_slice(&buf[..n]);
            if self.cur.len() == self.rule.max {
                self.cut()?;
            }
            n
        } else {
            self.cur.extend_from_slice(buf);
            buf.len()
        };
        self.entry_len += n as u64;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
