//! A deterministic mini-fuzzer: every reader gets N mutated copies of a real
//! fixture (seeded xorshift, so a failure names a reproducible iteration).
//! The only assertion is the contract: no panic, and every outcome is a report
//! or an InputError. `FUZZ_ITERS` overrides N (default 20 000 per reader).

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use super::common::*;

use crate::rng::XorShift;

fn iterations() -> usize {
    std::env::var("FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// Offsets in `hot` are picked half of the time: headers, cookies, TOCs.
fn mutate(rng: &mut XorShift, seed: &[u8], hot: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut data = seed.to_vec();
    let ops = 1 + rng.below(4);
    for _ in 0..ops {
        if data.is_empty() {
            break;
        }
        let at = if !hot.is_empty() && rng.below(2) == 0 {
            let r = &hot[rng.below(hot.len())];
            (r.start + rng.below(r.len().max(1))).min(data.len() - 1)
        } else {
            rng.below(data.len())
        };
        match rng.below(7) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = rng.next_u64() as u8,
            2 => {
                let interesting: [u32; 8] = [0, 1, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, data.len() as u32];
                let v = interesting[rng.below(interesting.len())];
                let bytes = if rng.below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(x) = data.get_mut(at + i) {
                        *x = *b;
                    }
                }
            }
            3 => data.truncate(at),
            4 => {
                let len = rng.below(64).min(data.len() - at);
                data.drain(at..at + len);
            }
            5 => {
                let chunk: Vec<u8> = (0..rng.below(32)).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, chunk);
            }
            _ => {
                // copy a block from elsewhere over this spot
                let from = rng.below(data.len());
                let len = rng.below(64).min(data.len() - from).min(data.len() - at);
                let block = data[from..from + len].to_vec();
                data[at..at + len].copy_from_slice(&block);
            }
        }
    }
    data
}

fn fuzz(name: &str, seed: &[u8], hot: &[std::ops::Range<usize>], salt: u64, run: impl Fn(&[u8])) {
    let n = iterations();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ salt);
    let start = std::time::Instant::now();
    for i in 0..n {
        let state = rng.0;
        let data = mutate(&mut rng, seed, hot);
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            let dump = std::env::temp_dir().join(format!("minifuzz-{name}-{i}.bin"));
            std::fs::write(&dump, &data).ok();
            panic!("{name}: panic at iteration {i} (rng state {state:#x}); input saved to {}", dump.display());
        }
    }
    eprintln!("{name}: {n} mutated inputs in {:?}", start.elapsed());
}

#[test]
fn minifuzz_elf() {
    let fx = Fx::new();
    let t = target("armv7l").with_glibc_floor(2, 31);
    for (i, seed) in [fx.armhf_dyn(), fx.x64_fake_glibc()].iter().enumerate() {
        let bytes = std::fs::read(seed).unwrap();
        let shoff = if bytes[4] == 1 { read_u32_le(&bytes, 32) as usize } else { read_u64_le(&bytes, 40) as usize };
        let hot = [0..64, 64..400, shoff..bytes.len()];
        fuzz(&format!("elf{i}"), &bytes, &hot, i as u64, |data| {
            let _ = crate::verify::verify_bytes(data, Path::new("fuzz.elf"), &t);
        });
    }
}

#[test]
fn minifuzz_pyinstaller() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let bytes = std::fs::read(&app.path).unwrap();
    let p = app.pkg_start;
    let l = &app.layout;
    let hot = [
        p + l.toc_offset..p + l.cookie,
        p + l.cookie..p + l.cookie + 88,
        p + l.data_offsets[1]..p + l.data_offsets[1] + 64,
    ];
    let t = target("x64");
    fuzz("pyinstaller", &bytes, &hot, 7, |data| {
        let _ = crate::verify::verify_bytes(data, Path::new("fuzz.pyi"), &t);
    });
    // The archive parser on its own, without the ELF layer in front.
    let pkg = bytes[p..p + l.len].to_vec();
    let hot_pkg = vec![l.toc_offset..l.cookie, l.cookie..l.len];
    fuzz("pyinstaller-pkg", &pkg, &hot_pkg, 8, |data| {
        if let Ok(Some(archive)) = crate::verify::pyinstaller::locate(data, crate::verify::pyinstaller::Location::Scan)
        {
            for entry in &archive.entries {
                let _ = archive.entry_data(data, entry);
            }
        }
    });
}

#[test]
fn minifuzz_deb() {
    let fx = Fx::new();
    let t = target("armv7l");
    let x64 = std::fs::read(fx.x64_so()).unwrap();
    let armhf = std::fs::read(fx.armhf_dyn()).unwrap();
    let tar = raw_tar(&[("./usr/bin/a", &armhf[..], 0o755), ("./usr/lib/x.so", &x64[..], 0o644)]);
    let build = |data_name: &str, data: Vec<u8>| {
        let path = fx.path(data_name);
        write_ar(
            &path,
            &[("debian-binary", b"2.0\n".to_vec()), ("control.tar.gz", control_tar_gz("armhf")), (data_name, data)],
        );
        std::fs::read(path).unwrap()
    };
    let plain = build("data.tar", tar.clone());
    let gz = build("data.tar.gz", gzip(&tar));
    let dpkg_xz =
        std::fs::read(dpkg_build(&fx, &deb_tree(&fx, "fz", "armhf", &[("usr/bin/a", armhf.clone(), 0o755)]), "xz"))
            .unwrap();
    let dpkg_zst =
        std::fs::read(dpkg_build(&fx, &deb_tree(&fx, "fz2", "armhf", &[("usr/bin/a", armhf.clone(), 0o755)]), "zstd"))
            .unwrap();
    for (i, (name, seed)) in
        [("deb-tar", plain), ("deb-gz", gz), ("deb-xz", dpkg_xz), ("deb-zst", dpkg_zst)].into_iter().enumerate()
    {
        // ar headers sit near the start; tar headers at 512-byte boundaries of the data member.
        let data_at = seed.windows(8).position(|w| w == b"data.tar").unwrap();
        let hot = [0..200, data_at..(data_at + 1600).min(seed.len())];
        fuzz(name, &seed, &hot, 100 + i as u64, |data| {
            let _ = crate::verify::deb::verify_deb_reader(Cursor::new(data), Path::new("fuzz.deb"), &t);
        });
    }
}

#[test]
fn minifuzz_containers() {
    let fx = Fx::new();
    let t = target("x64");
    let so = std::fs::read(fx.arm64_so()).unwrap();
    let json =
        format!("{{\"files\":{{\"lib\":{{\"files\":{{\"a.node\":{{\"size\":{},\"offset\":\"0\"}}}}}}}}}}", so.len());
    let padded = json.len().div_ceil(4) * 4;
    let mut asar = Vec::new();
    for word in [4, 8 + padded, 4 + padded, json.len()] {
        asar.extend_from_slice(&(word as u32).to_le_bytes());
    }
    asar.extend_from_slice(json.as_bytes());
    asar.resize(16 + padded, 0);
    asar.extend_from_slice(&so);
    let zip = fx.path("seed.zip");
    let script = "import sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
                  \x20   z.write(sys.argv[2], 'lib/libfoo.so')\n\
                  \x20   z.writestr('README', 'natives')\n";
    run_tool("python3", &["-c", script, zip.to_str().unwrap(), fx.arm64_so().to_str().unwrap()]);
    let zip = std::fs::read(&zip).unwrap();
    let zip_len = zip.len();
    let seeds = [
        ("app.asar", asar, vec![0..8, 8..16 + padded]),
        ("natives.zip", zip, vec![0..64, zip_len.saturating_sub(200)..zip_len]),
        ("libfoo.so.gz", gzip(&so), vec![0..10, 10..32]),
        ("vendor.tar.gz", gzip(&raw_tar(&[("lib/libfoo.so", &so[..], 0o644)])), vec![0..10, 10..64]),
    ];
    for (i, (name, seed, hot)) in seeds.into_iter().enumerate() {
        let clean = crate::verify::verify_archive_bytes(&seed, name, &t);
        assert_eq!(clean.findings.len(), 1, "{name}: the seed's arm64 library is found:\n{}", clean.render_table());
        fuzz(name, &seed, &hot, 200 + i as u64, |data| {
            let _ = crate::verify::verify_archive_bytes(data, name, &t);
        });
    }
}
