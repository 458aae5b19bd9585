//! data.tar.xz's content-defined blocks and their cache, on a code-like tree of hundreds of
//! files: full pack == warm-cache repack, edits recompress only their own blocks, a damaged
//! cache entry is rebuilt, the cache stays within its limit. Small blocks (48-256 KiB) keep
//! the trees small; the rule's logic is the same as with the default sizes.

use super::*;

/// The default rule's proportions at 1/64 of its sizes.
const RULE: BlockRule = BlockRule { min: 48 << 10, target: 48 << 10, max: 256 << 10 };
const FILES: usize = 400;
const BIG: &str = "resources/app/vendor.bundle.js";

/// Minified-JS-like text of `len` bytes: compressible, and different for every seed.
fn code(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &["function", "return", "const", "order", "ticket", "=>", "{", "}", "(", ")", ";", "await"];
    let noise = pseudo_random(len, seed);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        let w = WORDS[noise[i % noise.len()] as usize % WORDS.len()];
        out.extend_from_slice(w.as_bytes());
        // One identifier per few words makes each file's text its own.
        if noise[(i + 1) % noise.len()].is_multiple_of(4) {
            out.extend_from_slice(format!(" v{}", noise[(i + 2) % noise.len()]).as_bytes());
        }
        out.push(if noise[(i + 3) % noise.len()].is_multiple_of(9) { b'\n' } else { b' ' });
        i += 4;
    }
    out.truncate(len);
    out
}

fn small_rel(i: usize) -> String {
    format!("resources/app/src/m{:02}/file{i:03}.js", i / 20)
}

/// FILES small files (1-16 KiB) in 20 folders and one 1 MiB bundle (a large entry: more
/// than max / 2) under the fixture's app.
fn code_tree(fx: &Fixture) {
    let root = fx.unpacked();
    for i in 0..FILES {
        let len = 1024 + (pseudo_random(2, i as u64 + 100)[1] as usize) * 60;
        put(&root, &small_rel(i), &code(len, i as u64 + 1), 0o644);
    }
    put(&root, BIG, &code(1 << 20, 999), 0o644);
}

fn spec(fx: &Fixture, cache: Option<&Path>, threads: u32) -> DebSpec {
    let mut spec = fx.spec(DebArch::Amd64, false);
    spec.compression = Compression::Xz { level: 1 };
    spec.threads = threads;
    spec.xz_block_cache = cache.map(|dir| BlockCacheConfig { dir: dir.to_path_buf(), max_bytes: None });
    spec
}

fn pack(fx: &Fixture, spec: &DebSpec, name: &str) -> (Vec<u8>, BlockStats) {
    let out = fx.out(name);
    let summary = write_deb_with(spec, &out, RULE).unwrap();
    (fs::read(&out).unwrap(), summary.xz_blocks.expect("xz packages report their blocks"))
}

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Overwrite 16 bytes in the middle of `rel` (same size).
fn edit_in_place(root: &Path, rel: &str) {
    let p = root.join(rel);
    let mut content = fs::read(&p).unwrap();
    let mid = content.len() / 2;
    content[mid..mid + 16].copy_from_slice(b"/*edited here*/\n");
    fs::write(&p, content).unwrap();
}

#[test]
fn full_pack_equals_warm_repack_and_repack_compresses_only_changed_blocks() {
    let fx = Fixture::new();
    code_tree(&fx);
    let cache = fx.dir.path().join("deb-blocks");

    let (full, s) = pack(&fx, &spec(&fx, None, 2), "full.deb");
    assert!(s.blocks >= 20, "expected >= 20 blocks on a ~4 MiB tree, got {s:?}");
    assert_eq!((s.compressed + s.stored, s.reused, s.corrupt), (s.blocks, 0, 0), "{s:?}");
    // The fixture's app.asar is 300 000 random bytes: a large entry of two pieces, stored.
    assert_eq!(s.stored, 2, "{s:?}");

    // Cold cache: same bytes, everything compressed and stored.
    let (cold, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "cold.deb");
    assert!(cold == full, "a pack that fills the cache differs from a pack without it");
    assert_eq!(s.compressed + s.stored, s.blocks);
    assert_eq!(cache_entries(&cache).len() as u64, s.compressed, "stored blocks are not cached");
    // Warm cache, other thread counts: same bytes, nothing compressed.
    for threads in [1, 5] {
        let (warm, s) = pack(&fx, &spec(&fx, Some(&cache), threads), "warm.deb");
        assert!(warm == full, "warm repack with {threads} threads differs from the full pack");
        assert_eq!((s.compressed, s.reused + s.stored), (0, s.blocks), "{s:?}");
    }

    // One file edited: the repack compresses its block (and at most one neighbour) and
    // equals a full pack of the edited tree.
    let rel = small_rel(205);
    edit_in_place(&fx.unpacked(), &rel);
    let (repack, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "repack.deb");
    let (full2, _) = pack(&fx, &spec(&fx, None, 1), "full2.deb");
    assert!(repack == full2, "repack with a warm cache differs from a full pack of the same tree");
    assert!(repack != full, "the edit did not change the package");
    assert!((1..=2).contains(&s.compressed), "one edit recompressed {} of {} blocks", s.compressed, s.blocks);
    assert_eq!(s.reused, s.blocks - s.compressed - s.stored);

    // The real tools accept the result.
    let deb = fx.out("repack.deb");
    let data = fx.dir.path().join("data.tar.xz");
    fs::write(&data, run_raw("ar", "binutils", &[&"p", &deb, &"data.tar.xz"]).stdout).unwrap();
    run("xz", "xz-utils", &[&"-t", &data]);
    let robot = run("xz", "xz-utils", &[&"--robot", &"-l", &data]);
    let listed: u64 = robot
        .lines()
        .find(|l| l.starts_with("totals"))
        .and_then(|l| l.split('\t').nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read xz --list output:\n{robot}"));
    assert_eq!(listed, s.blocks);
    run("dpkg-deb", "dpkg", &[&"--info", &deb]);
    assert!(run("dpkg-deb", "dpkg", &[&"--contents", &deb]).contains(&format!("./opt/KitchnTabs/{rel}")));
    let tar = run_raw("dpkg-deb", "dpkg", &[&"--fsys-tarfile", &deb]);
    assert!(tar.status.success());
    let x = fx.dir.path().join("x");
    run("dpkg-deb", "dpkg", &[&"-x", &deb, &x]);
    assert_eq!(fs::read(x.join("opt/KitchnTabs").join(&rel)).unwrap(), fs::read(fx.unpacked().join(&rel)).unwrap());
    assert_eq!(fs::read(x.join("opt/KitchnTabs").join(BIG)).unwrap(), fs::read(fx.unpacked().join(BIG)).unwrap());
}

#[test]
fn an_edit_changes_only_its_block_and_at_most_one_neighbour() {
    let fx = Fixture::new();
    code_tree(&fx);
    let cache = fx.dir.path().join("deb-blocks");
    let (_, base) = pack(&fx, &spec(&fx, Some(&cache), 2), "base.deb");
    let root = fx.unpacked();
    let mut worst = 0;
    for i in (3..FILES).step_by(23) {
        let rel = small_rel(i);
        let p = root.join(&rel);
        let original = fs::read(&p).unwrap();
        let grown = [&original[..], &code(5000, 7_000 + i as u64)[..]].concat();
        let shrunk = original[..original.len() / 3].to_vec();
        let mut changed = original.clone();
        changed[10..26].copy_from_slice(b"/*edited here*/\n");
        for (kind, content) in [("in place", changed), ("grown", grown), ("shrunk", shrunk)] {
            fs::write(&p, &content).unwrap();
            let (_, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "edit.deb");
            assert!(
                (1..=2).contains(&s.compressed),
                "{rel} {kind}: {} of {} blocks recompressed, expected its own plus at most one neighbour",
                s.compressed,
                s.blocks
            );
            worst = worst.max(s.compressed);
        }
        fs::write(&p, &original).unwrap();
        let (_, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "restored.deb");
        assert_eq!(s.compressed, 0, "restoring {rel} should reuse every block");
        assert_eq!(s.blocks, base.blocks);
    }
    // A large file is split at offsets from its own start: an in-place edit in its middle
    // touches the one piece that holds it.
    edit_in_place(&root, BIG);
    let (_, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "big.deb");
    assert_eq!(s.compressed, 1, "editing the middle of {BIG}: {s:?}");
    eprintln!("worst small-file edit recompressed {worst} of {} blocks", base.blocks);
}

#[test]
fn corrupt_cache_entries_are_detected_and_rebuilt() {
    let fx = Fixture::new();
    code_tree(&fx);
    let cache = fx.dir.path().join("deb-blocks");
    let (full, _) = pack(&fx, &spec(&fx, None, 2), "full.deb");
    pack(&fx, &spec(&fx, Some(&cache), 2), "warm.deb");
    let entries = cache_entries(&cache);
    assert!(entries.len() >= 20);
    // A flipped byte in the compressed data, a truncated entry, an empty one, a flipped
    // byte in the stored sizes.
    let mut raw = fs::read(&entries[0]).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x40;
    fs::write(&entries[0], raw).unwrap();
    let raw = fs::read(&entries[1]).unwrap();
    fs::write(&entries[1], &raw[..raw.len() - 7]).unwrap();
    fs::write(&entries[2], b"").unwrap();
    let mut raw = fs::read(&entries[3]).unwrap();
    raw[9] ^= 1;
    fs::write(&entries[3], raw).unwrap();

    let (repack, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "repack.deb");
    assert!(repack == full, "a package built from a damaged cache differs from the full pack");
    assert_eq!((s.corrupt, s.compressed), (4, 4), "{s:?}");
    // Rebuilt: the next pack reuses everything.
    let (again, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "again.deb");
    assert!(again == full);
    assert_eq!((s.corrupt, s.compressed, s.reused + s.stored), (0, 0, s.blocks), "{s:?}");
}

#[test]
fn cache_is_trimmed_to_its_limit_and_leaves_no_temp_files() {
    let fx = Fixture::new();
    code_tree(&fx);
    let cache = fx.dir.path().join("deb-blocks");
    let size = |dir: &Path| cache_entries(dir).iter().map(|p| fs::metadata(p).unwrap().len()).sum::<u64>();

    // Default limit: twice this package's data.tar.xz, after several different versions.
    let mut data_size = 0;
    for v in 0..4 {
        edit_in_place(&fx.unpacked(), &small_rel(50 * v + 1));
        put(&fx.unpacked(), "resources/app/src/m00/file000.js", &code(200_000, 50 + v as u64), 0o644);
        let out = fx.out("v.deb");
        write_deb_with(&spec(&fx, Some(&cache), 2), &out, RULE).unwrap();
        data_size = run_raw("ar", "binutils", &[&"p", &out, &"data.tar.xz"]).stdout.len() as u64;
        assert!(size(&cache) <= 2 * data_size, "cache {} > 2 x {data_size}", size(&cache));
    }
    assert!(data_size > 0);
    assert!(cache_entries(&cache).iter().all(|p| p.extension().is_some_and(|e| e == "xzblk")));

    // An explicit limit below one package: the cache shrinks to it, the package is whole.
    let mut limited = spec(&fx, Some(&cache), 2);
    limited.xz_block_cache.as_mut().unwrap().max_bytes = Some(100_000);
    let (bytes, _) = pack(&fx, &limited, "limited.deb");
    assert!(size(&cache) <= 100_000, "cache {} > 100000", size(&cache));
    let (full, _) = pack(&fx, &spec(&fx, None, 2), "full.deb");
    assert!(bytes == full);
}

/// xz --robot -lvv's block lines: (uncompressed size, total size) of each block.
fn listed_blocks(data: &Path) -> Vec<(u64, u64)> {
    let robot = run("xz", "xz-utils", &[&"--robot", &"-lvv", &data]);
    // block <stream> <block in stream> <block in file> <comp off> <uncomp off> <total size>
    // <uncomp size> ...
    robot
        .lines()
        .filter(|l| l.starts_with("block\t"))
        .map(|l| {
            let f: Vec<u64> = l.split('\t').skip(1).take(7).map(|n| n.parse().unwrap()).collect();
            (f[6], f[5])
        })
        .collect()
}

/// What `xz -6` saves on `data`, in per mille of its length.
fn xz_saving_permille(fx: &Fixture, name: &str, data: &[u8]) -> i64 {
    let file = fx.dir.path().join(name);
    fs::write(&file, data).unwrap();
    let out = run_raw("xz", "xz-utils", &[&"-6", &"-T1", &"-c", &file]);
    assert!(out.status.success(), "xz -6 {name}: {}", String::from_utf8_lossy(&out.stderr));
    1000 - (1000 * out.stdout.len() as i64) / data.len() as i64
}

#[test]
fn the_store_rule_stores_what_xz_would_barely_shrink() {
    use super::super::xzblocks::incompressible;
    use std::io::Write as _;
    let fx = Fixture::new();
    let js = code(1 << 20, 5);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&code(4 << 20, 6)).unwrap();
    let zlib = z.finish().unwrap();
    assert!(zlib.len() > 256 << 10, "{}", zlib.len());
    let random = pseudo_random(1 << 20, 3);
    // PyInstaller's CArchive: zlib streams of many files, each behind its own header.
    let mut archive = Vec::new();
    for i in 0..200u64 {
        archive.extend_from_slice(format!("entry-{i:04}.pyc\0\0\0\0").as_bytes());
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&code(24 << 10, 100 + i)).unwrap();
        archive.extend(z.finish().unwrap());
    }
    // Runs of zeros, 1 % of the bytes, as an executable's headers and tables leave between
    // its compressed entries: one histogram over the whole block sees a spike at 0 (its
    // collision entropy is 1.028 times uniform), yet xz saves nothing, because coding the
    // random bytes as LZMA literals costs what the runs save.
    let mut zeros = random.clone();
    for at in (0..zeros.len()).step_by(24 << 10) {
        zeros[at..at + 256].fill(0);
    }
    let cases: [(&str, Vec<u8>, bool); 7] = [
        ("random", random.clone(), true),
        ("random+zeros", zeros, true),
        ("zlib", zlib, true),
        ("archive", archive, true),
        ("js", js.clone(), false),
        // One 64 KiB chunk of code in a MiB of random bytes: xz saves ~4 % of it.
        ("random+js", [&random[..15 << 16], &js[..1 << 16]].concat(), false),
        ("half", [&pseudo_random(512 << 10, 4)[..], &js[..512 << 10]].concat(), false),
    ];
    for (name, data, stored) in &cases {
        let saving = xz_saving_permille(&fx, name, data);
        assert_eq!(incompressible(data), *stored, "{name}: xz -6 saves {saving} per mille");
        // The rule agrees with xz: what it stores xz shrinks by under 2 %, what it
        // compresses by over 2 %.
        assert_eq!(saving < 20, *stored, "{name}: xz -6 saves {saving} per mille");
    }
    assert!(!incompressible(&[]));
}

#[test]
fn fixed_point_log2_is_exact_on_powers_of_two_and_close_elsewhere() {
    use super::super::xzblocks::log2_q16;
    for k in 0..40u64 {
        assert_eq!(log2_q16(1 << k), k << 16);
    }
    for x in [3u64, 5, 7, 10, 255, 1000, 4097, 65535, 65537, 1 << 20 | 12345] {
        let exact = (x as f64).log2() * 65536.0;
        let got = log2_q16(x) as f64;
        // Truncation in each squaring step costs at most a few units in the last place.
        assert!(got <= exact + 1.0 && exact - got < 4.0, "log2({x}): {got} vs {exact}");
    }
}

#[test]
fn incompressible_blocks_are_stored_uncached_and_packs_stay_identical() {
    let fx = Fixture::new();
    code_tree(&fx);
    // A large entry (more than max / 2) of random bytes: the blocks of its pieces are stored.
    const BIN: &str = "resources/python-service/print_service";
    put(&fx.unpacked(), BIN, &pseudo_random(600 << 10, 77), 0o755);
    let cache = fx.dir.path().join("deb-blocks");

    // Pieces of 256 KiB: 3 of this file, 2 of the fixture's random app.asar (300 000 bytes).
    let (full, s) = pack(&fx, &spec(&fx, None, 1), "full.deb");
    assert_eq!(s.stored, 5, "{s:?}");
    let (cold, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "cold.deb");
    assert!(cold == full, "a pack that fills the cache differs from a pack without it");
    assert_eq!(cache_entries(&cache).len() as u64, s.blocks - s.stored, "stored blocks are not cached");
    let (warm, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "warm.deb");
    assert!(warm == full, "warm repack differs from the full pack");
    assert_eq!((s.stored, s.compressed, s.reused), (5, 0, s.blocks - 5), "{s:?}");

    // xz itself sees five blocks no smaller than their bytes (LZMA2 uncompressed chunks)
    // and every other block compressed; the file comes back whole.
    let deb = fx.out("warm.deb");
    let data = fx.dir.path().join("data.tar.xz");
    fs::write(&data, run_raw("ar", "binutils", &[&"p", &deb, &"data.tar.xz"]).stdout).unwrap();
    run("xz", "xz-utils", &[&"-t", &data]);
    let blocks = listed_blocks(&data);
    assert_eq!(blocks.len() as u64, s.blocks);
    let stored: Vec<_> = blocks.iter().filter(|(u, t)| t >= u).collect();
    assert_eq!(stored.len(), 5, "{blocks:?}");
    assert!(stored.iter().all(|(u, t)| t - u < 64), "uncompressed chunks cost 3 bytes per 64 KiB: {stored:?}");
    let x = fx.dir.path().join("x");
    run("dpkg-deb", "dpkg", &[&"-x", &deb, &x]);
    assert_eq!(fs::read(x.join("opt/KitchnTabs").join(BIN)).unwrap(), fs::read(fx.unpacked().join(BIN)).unwrap());
}

// ------------------------------------------------ cache entries that lie about their content

/// The uncompressed size recorded in a cache entry's header (bytes 16..24 in every format).
fn entry_uncompressed(path: &Path) -> u64 {
    let raw = fs::read(path).unwrap();
    u64::from_le_bytes(raw[16..24].try_into().unwrap())
}

fn entry_key(path: &Path) -> String {
    path.file_stem().unwrap().to_str().unwrap().to_string()
}

/// Store under `victim`'s key a well-formed entry whose block decodes to `data` (which must
/// have the victim's uncompressed size): what a buggy or hostile writer could leave.
fn forge(cache: &Path, victim: &Path, data: &[u8]) {
    assert_eq!(data.len() as u64, entry_uncompressed(victim));
    let block = crate::deb::xzblocks::write_block(data, Some(1)).unwrap();
    crate::deb::blockcache::BlockCache::open(cache).unwrap().put(&entry_key(victim), &block).unwrap();
}

/// `len` bytes of tar: a header for another file, its content, zero padding.
fn tar_with_foreign_file(len: usize) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path("./opt/KitchnTabs/planted").unwrap();
    header.set_size(len as u64 - 1024);
    header.set_mode(0o755);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(&code(len - 1024, 4242));
    out.resize(len, 0);
    out
}

/// `dpkg-deb -x` and `md5sum -c` of its own md5sums: Debian's tools, not ours, say the
/// package holds what its control data lists.
fn assert_dpkg_extract_and_md5sums_pass(fx: &Fixture, deb: &Path, name: &str) {
    let x = fx.dir.path().join(format!("x-{name}"));
    let ctl = fx.dir.path().join(format!("c-{name}"));
    run("dpkg-deb", "dpkg", &[&"-x", &deb, &x]);
    run("dpkg-deb", "dpkg", &[&"-e", &deb, &ctl]);
    let out = std::process::Command::new("md5sum")
        .arg("-c")
        .arg("--quiet")
        .arg(ctl.join("md5sums"))
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(out.status.success(), "md5sum -c failed in {}:\n{}", x.display(), String::from_utf8_lossy(&out.stdout));
}

/// The middle pieces of a large file all have the largest block size, so one entry copied
/// over another passes a size check: the repack must still equal a cold full pack.
#[test]
fn a_cache_entry_copied_over_another_is_not_shipped() {
    let fx = Fixture::new();
    // 50 MiB of text, distinct per MiB: four 16 MiB pieces (the default rule), cacheable.
    let mut big = Vec::with_capacity(50 << 20);
    for mib in 0..50u32 {
        let start = big.len();
        let mut line = 0u32;
        while big.len() - start < 1 << 20 {
            big.extend_from_slice(format!("mib {mib:03} line {line:06}: orders tickets printers\n").as_bytes());
            line += 1;
        }
        big.truncate(start + (1 << 20));
    }
    put(&fx.unpacked(), BIG, &big, 0o644);
    let cache = fx.dir.path().join("cache");
    let spec_of = |cache: Option<&Path>| spec(&fx, cache, 2);
    let full_out = fx.out("full.deb");
    write_deb(&spec_of(None), &full_out).unwrap();
    let full = fs::read(&full_out).unwrap();
    write_deb(&spec_of(Some(&cache)), &fx.out("warm.deb")).unwrap();

    let pieces: Vec<PathBuf> =
        cache_entries(&cache).into_iter().filter(|p| entry_uncompressed(p) == 16 << 20).collect();
    assert!(pieces.len() >= 3, "expected three 16 MiB pieces in the cache, found {pieces:?}");
    fs::copy(&pieces[0], &pieces[1]).unwrap();

    let repack_out = fx.out("repack.deb");
    write_deb(&spec_of(Some(&cache)), &repack_out).unwrap();
    assert!(fs::read(&repack_out).unwrap() == full, "the repack with a copied cache entry differs from a full pack");
    assert_dpkg_extract_and_md5sums_pass(&fx, &repack_out, "repack");
}

/// A well-formed entry whose block decodes to a tar header of another file: the pack that
/// reads it is rebuilt (not shipped, not an error), and the next pack is clean.
#[test]
fn a_forged_cache_entry_is_caught_by_the_verify_pass_and_rebuilt() {
    let fx = Fixture::new();
    code_tree(&fx);
    let cache = fx.dir.path().join("cache");
    let (full, _) = pack(&fx, &spec(&fx, None, 1), "full.deb");
    pack(&fx, &spec(&fx, Some(&cache), 2), "warm.deb");
    // The largest entry: a block of small files, cut at an entry boundary.
    let victim = cache_entries(&cache).into_iter().max_by_key(|p| entry_uncompressed(p)).unwrap();
    forge(&cache, &victim, &tar_with_foreign_file(entry_uncompressed(&victim) as usize));

    let (first, _) = pack(&fx, &spec(&fx, Some(&cache), 2), "first.deb");
    assert!(first == full, "the pack that read the forged entry differs from a full pack");
    let (second, s) = pack(&fx, &spec(&fx, Some(&cache), 2), "second.deb");
    assert!(second == full, "the pack after the rebuild differs from a full pack");
    assert_eq!((s.compressed, s.corrupt), (0, 0), "the rebuilt cache serves the next pack: {s:?}");
    assert_dpkg_extract_and_md5sums_pass(&fx, &fx.out("first.deb"), "first");
}

/// splitmix64: a deterministic stream of test decisions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random edits of a small tree interleaved with random damage to the cache: after every
/// step the cached pack is byte for byte the pack made without a cache.
#[test]
fn cached_packs_equal_full_packs_under_random_edits_and_corruption() {
    const TINY: BlockRule = BlockRule { min: 12 << 10, target: 12 << 10, max: 48 << 10 };
    const STEPS: usize = 200;
    let seed = std::env::var("BLOCK_CACHE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_cafe_u64);
    let mut rng = Rng(seed);
    let fx = Fixture::new();
    let root = fx.unpacked();
    let rel = |i: u64| format!("resources/app/src/f{i:02}.js");
    let mut live: Vec<u64> = (0..24).collect();
    for &i in &live {
        put(&root, &rel(i), &code(1024 + (i as usize) * 700, i), 0o644);
    }
    put(&root, "resources/app/big.js", &code(120 << 10, 77), 0o644);
    symlink("src/f00.js", root.join("resources/app/link.js")).unwrap();
    let cache = fx.dir.path().join("cache");
    let pack_with = |cache: Option<&Path>, name: &str| -> Vec<u8> {
        let out = fx.out(name);
        write_deb_with(&spec(&fx, cache, 2), &out, TINY).unwrap_or_else(|e| panic!("seed {seed}: {e:#}"));
        fs::read(&out).unwrap()
    };
    let mut next_file = 100;
    let mut full = Vec::new();
    for step in 0..STEPS {
        let what = rng.below(10);
        let entries = cache_entries(&cache_dir_or_create(&cache));
        let action = match what {
            0 => {
                let i = live[rng.below(live.len() as u64) as usize];
                put(&root, &rel(i), &code(500 + rng.below(20_000) as usize, rng.next()), 0o644);
                format!("rewrite {}", rel(i))
            }
            1 => {
                let i = live[rng.below(live.len() as u64) as usize];
                edit_in_place(&root, &rel(i));
                let p = root.join(rel(i));
                let mut c = fs::read(&p).unwrap();
                let at = rng.below(c.len() as u64) as usize;
                c[at] = b'a' + (rng.below(26) as u8);
                fs::write(&p, c).unwrap();
                format!("same-size edit of {}", rel(i))
            }
            2 => {
                live.push(next_file);
                put(&root, &rel(next_file), &code(300 + rng.below(30_000) as usize, rng.next()), 0o644);
                next_file += 1;
                format!("add {}", rel(next_file - 1))
            }
            3 if live.len() > 2 => {
                let i = live.swap_remove(rng.below(live.len() as u64) as usize);
                fs::remove_file(root.join(rel(i))).unwrap();
                format!("remove {}", rel(i))
            }
            4 => {
                let i = live[rng.below(live.len() as u64) as usize];
                let mode = if rng.below(2) == 0 { 0o755 } else { 0o644 };
                fs::set_permissions(root.join(rel(i)), fs::Permissions::from_mode(mode)).unwrap();
                format!("chmod {mode:o} {}", rel(i))
            }
            5 => {
                let i = live[rng.below(live.len() as u64) as usize];
                let link = root.join("resources/app/link.js");
                fs::remove_file(&link).unwrap();
                symlink(format!("src/f{i:02}.js"), &link).unwrap();
                format!("retarget link.js to f{i:02}.js")
            }
            _ if entries.is_empty() => "nothing cached to damage".to_string(),
            6 => {
                let e = &entries[rng.below(entries.len() as u64) as usize];
                let len = fs::metadata(e).unwrap().len();
                fs::OpenOptions::new().write(true).open(e).unwrap().set_len(rng.below(len)).unwrap();
                format!("truncate {}", e.display())
            }
            7 => {
                let e = &entries[rng.below(entries.len() as u64) as usize];
                let mut raw = fs::read(e).unwrap();
                let at = rng.below(raw.len() as u64) as usize;
                raw[at] ^= 1 << rng.below(8);
                fs::write(e, raw).unwrap();
                format!("flip a bit of {}", e.display())
            }
            8 => {
                let a = &entries[rng.below(entries.len() as u64) as usize];
                let b = &entries[rng.below(entries.len() as u64) as usize];
                fs::copy(a, b).unwrap();
                format!("copy {} over {}", a.display(), b.display())
            }
            _ => {
                let e = &entries[rng.below(entries.len() as u64) as usize];
                let len = entry_uncompressed(e) as usize;
                let data =
                    if len > 2048 && rng.below(2) == 0 { tar_with_foreign_file(len) } else { code(len, rng.next()) };
                forge(&cache, e, &data);
                format!("forge {}", e.display())
            }
        };
        let cached = pack_with(Some(&cache), "cached.deb");
        // Damage to the cache leaves the tree as it was: its full pack is the last one.
        if what <= 5 || full.is_empty() {
            full = pack_with(None, "full.deb");
        }
        assert!(
            cached == full,
            "seed {seed} (set BLOCK_CACHE_SEED to replay), step {step} ({action}): the cached pack differs from a full pack"
        );
    }
}

fn cache_dir_or_create(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    dir.to_path_buf()
}
