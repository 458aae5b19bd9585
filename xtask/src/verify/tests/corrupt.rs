//! Truncated and corrupted copies of real ELF fixtures: each gives the exact
//! finding kind and offset, never a panic.

use super::common::*;
use crate::verify::{Check, Severity};

fn check_copy(fx: &Fx, name: &str, bytes: &[u8], t: &crate::verify::Target) -> crate::verify::Report {
    let path = fx.write(name, bytes);
    verify(&[&path], t)
}

#[test]
fn truncated_elf32_at_each_structure() {
    let fx = Fx::new();
    let bytes = std::fs::read(fx.armhf_dyn()).unwrap();
    let t = target("armv7l");
    let phoff = read_u32_le(&bytes, 28) as u64;
    let shoff = read_u32_le(&bytes, 32) as u64;
    // (cut, check, offset, found)
    let cases: Vec<(usize, Check, Option<u64>, String)> = vec![
        (0, Check::Empty, None, "empty file (0 bytes)".into()),
        (2, Check::Truncated, Some(2), "ELF identification needs 16 bytes, data ends at byte 2".into()),
        (10, Check::Truncated, Some(10), "ELF identification needs 16 bytes, data ends at byte 10".into()),
        (40, Check::Truncated, Some(40), "ELF32 header needs 52 bytes, data ends at byte 40".into()),
        (
            100,
            Check::Truncated,
            Some(phoff),
            format!("program header table spans bytes {phoff}..{}, data ends at byte 100", phoff + 9 * 32),
        ),
        (
            bytes.len() - 1,
            Check::Truncated,
            Some(shoff),
            format!("section header table spans bytes {shoff}..{}, data ends at byte {}", bytes.len(), bytes.len() - 1),
        ),
    ];
    let phnum = u16::from_le_bytes([bytes[44], bytes[45]]);
    assert_eq!(phnum, 9, "fixture layout changed: update the expected table span");
    for (cut, check, offset, found) in cases {
        let report = check_copy(&fx, &format!("cut{cut}"), &bytes[..cut], &t);
        let f = only(&report);
        assert_eq!((f.check, f.offset, &f.found), (check, offset, &found), "cut at {cut}");
        assert_eq!(f.severity, Severity::Error);
    }
    // A cut inside the loadable segments.
    let report = check_copy(&fx, "cut-half", &bytes[..bytes.len() / 2], &t);
    let f = only(&report);
    assert_eq!(f.check, Check::Truncated);
    assert!(f.found.starts_with("segment "), "{}", f.found);
}

#[test]
fn truncated_elf64_and_static() {
    let fx = Fx::new();
    let t = target("arm64");
    for (name, bytes) in
        [("dyn", std::fs::read(fx.arm64_dyn()).unwrap()), ("static", std::fs::read(fx.arm64_static()).unwrap())]
    {
        let report = check_copy(&fx, &format!("{name}-63"), &bytes[..63], &t);
        assert_eq!(only(&report).found, "ELF64 header needs 64 bytes, data ends at byte 63");
        let shoff = read_u64_le(&bytes, 40);
        let cut = bytes.len() - 100;
        let report = check_copy(&fx, &format!("{name}-tail"), &bytes[..cut], &t);
        let f = only(&report);
        assert_eq!((f.check, f.offset), (Check::Truncated, Some(shoff)), "{name}: {}", f.found);
    }
}

#[test]
fn flipped_header_fields() {
    let fx = Fx::new();
    let good = std::fs::read(fx.armhf_dyn()).unwrap();
    let t = target("armv7l");
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        edit(&mut b);
        b
    };
    // EI_CLASS
    let report = check_copy(&fx, "class", &with(&|b| b[4] = 7), &t);
    let f = only(&report);
    assert_eq!((f.check, f.offset), (Check::Malformed, Some(4)));
    assert_eq!(f.found, "EI_CLASS is 7 (1 = 32-bit, 2 = 64-bit)");
    // EI_DATA
    let f = only(&check_copy(&fx, "data", &with(&|b| b[5] = 0), &t)).clone();
    assert_eq!((f.check, f.offset), (Check::Malformed, Some(5)));
    // EI_VERSION
    let f = only(&check_copy(&fx, "version", &with(&|b| b[6] = 9), &t)).clone();
    assert_eq!((f.check, f.offset), (Check::Malformed, Some(6)));
    // e_phentsize
    let f = only(&check_copy(&fx, "phentsize", &with(&|b| b[42] = 33), &t)).clone();
    assert_eq!((f.check, f.offset), (Check::Malformed, Some(42)));
    assert_eq!(f.found, "e_phentsize is 33, ELF32 needs 32");
    // e_shentsize
    let f = only(&check_copy(&fx, "shentsize", &with(&|b| b[46] = 0), &t)).clone();
    assert_eq!((f.check, f.offset), (Check::Malformed, Some(46)));
    // e_machine: a valid ELF for another machine
    let f = only(&check_copy(&fx, "machine", &with(&|b| b[18] = 41), &t)).clone();
    assert_finding(&f, Check::Machine, Severity::Error, "ELF32 EM_ARM (40)", "ELF32 e_machine 41");
    // e_shoff far past the end
    let f = only(&check_copy(&fx, "shoff", &with(&|b| b[32..36].copy_from_slice(&0xffff_ff00u32.to_le_bytes())), &t))
        .clone();
    assert_eq!(f.check, Check::Truncated);
    assert_eq!(f.offset, Some(good.len() as u64), "clamped to the end of the data");
    // big-endian data byte with the same fields
    // EI_DATA flipped to big-endian: the fields read byte-swapped.
    let f = only(&check_copy(&fx, "be", &with(&|b| b[5] = 2), &t)).clone();
    assert_eq!((f.check, f.offset), (Check::Malformed, Some(42)));
    assert_eq!(f.found, "e_phentsize is 8192, ELF32 needs 32");
}

#[test]
fn corrupted_interpreter_and_verneed() {
    let fx = Fx::new();
    let good = std::fs::read(fx.x64_dyn()).unwrap();
    let t = target("x64").with_glibc_floor(2, 36);
    // PT_INTERP without its NUL: overwrite the string and the terminator.
    let interp = good.windows(27).position(|w| w == b"/lib64/ld-linux-x86-64.so.2").unwrap();
    let mut b = good.clone();
    for x in &mut b[interp..interp + 28] {
        *x = b'A';
    }
    let f = only(&check_copy(&fx, "interp", &b, &t)).clone();
    assert_eq!(f.check, Check::Malformed);
    assert!(f.found.starts_with("PT_INTERP"), "{}", f.found);

    // A different loader path is an interpreter finding, not corruption.
    let mut b = good.clone();
    b[interp + 1..interp + 6].copy_from_slice(b"libXX");
    let f = only(&check_copy(&fx, "interp2", &b, &t)).clone();
    assert_finding(
        &f,
        Check::Interpreter,
        Severity::Error,
        "/lib64/ld-linux-x86-64.so.2",
        "/libXX/ld-linux-x86-64.so.2",
    );

    // vn_aux of the first Verneed pointing far away.
    let info = crate::verify::elf::inspect(&good).unwrap();
    assert!(!info.version_needs.is_empty());
    let verneed_off = section_offset(&good, 0x6fff_fffe);
    let mut b = good.clone();
    b[verneed_off + 8..verneed_off + 12].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    let f = only(&check_copy(&fx, "vnaux", &b, &t)).clone();
    assert_eq!((f.check, f.offset), (Check::Malformed, Some(verneed_off as u64)));
    assert!(f.found.starts_with(".gnu.version_r"), "{}", f.found);

    // vn_cnt huge with vna_next 0 would loop over the same record: bounded.
    let mut b = good.clone();
    b[verneed_off + 2..verneed_off + 4].copy_from_slice(&0xffffu16.to_le_bytes());
    let aux = verneed_off + read_u32_le(&good, verneed_off + 8) as usize;
    b[aux + 12..aux + 16].copy_from_slice(&0u32.to_le_bytes());
    let f = only(&check_copy(&fx, "vncnt", &b, &t)).clone();
    assert_eq!(f.check, Check::Malformed);
    assert_eq!(f.found, ".gnu.version_r: more entries than the section holds");
}

/// File offset of the first section of type `sh_type` in a 64-bit LE ELF.
fn section_offset(b: &[u8], sh_type: u32) -> usize {
    let shoff = read_u64_le(b, 40) as usize;
    let shnum = u16::from_le_bytes([b[60], b[61]]) as usize;
    (0..shnum)
        .map(|i| shoff + i * 64)
        .find(|&h| read_u32_le(b, h + 4) == sh_type)
        .map(|h| read_u64_le(b, h + 24) as usize)
        .unwrap()
}

#[test]
fn arm_attributes_corrupted() {
    let fx = Fx::new();
    let good = std::fs::read(fx.armhf_dyn()).unwrap();
    let off = {
        let shoff = read_u32_le(&good, 32) as usize;
        let shnum = u16::from_le_bytes([good[48], good[49]]) as usize;
        (0..shnum)
            .map(|i| shoff + i * 40)
            .find(|&h| read_u32_le(&good, h + 4) == 0x7000_0003)
            .map(|h| read_u32_le(&good, h + 16) as usize)
            .unwrap()
    };
    assert_eq!(good[off], b'A', "attributes format version");
    let mut b = good.clone();
    b[off] = b'B';
    let f = only(&check_copy(&fx, "attrs", &b, &target("armv7l"))).clone();
    assert_eq!((f.check, f.offset), (Check::Malformed, Some(off as u64)));
    assert!(f.found.starts_with(".ARM.attributes"), "{}", f.found);
}

#[test]
fn program_header_offset_past_the_end_is_a_corrupt_header() {
    let fx = Fx::new();
    for (name, bytes, field, t) in [
        ("elf32", std::fs::read(fx.armhf_dyn()).unwrap(), 28usize, target("armv7l")),
        ("elf64", std::fs::read(fx.arm64_dyn()).unwrap(), 32, target("arm64")),
    ] {
        let len = bytes.len();
        let bad = len as u64 + 4096;
        let mut b = bytes.clone();
        if field == 28 {
            b[28..32].copy_from_slice(&(bad as u32).to_le_bytes());
        } else {
            b[32..40].copy_from_slice(&bad.to_le_bytes());
        }
        let path = fx.write(&format!("phoff-{name}"), &b);
        // readelf reads the same field; the file keeps its full length.
        let header = tool_output("readelf", &["-h", path.to_str().unwrap()]);
        assert!(header.contains(&format!("Start of program headers:          {bad} (bytes into file)")), "{header}");
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, len);
        let report = verify(&[&path], &t);
        let f = only(&report);
        assert_eq!((f.check, f.offset), (Check::Malformed, Some(field as u64)), "{name}: {}", f.found);
        assert!(
            f.found.starts_with(&format!("e_phoff is {bad}, past the end of the file ({len} bytes)")),
            "{}",
            f.found
        );
        assert!(f.fix.contains("corrupt") && !f.fix.contains("cut"), "{}", f.fix);
    }
    // e_phnum too large, the rest of the file whole: the header again, not a cut.
    let mut b = std::fs::read(fx.armhf_dyn()).unwrap();
    b[44..46].copy_from_slice(&0xfff0u16.to_le_bytes());
    let f = only(&check_copy(&fx, "phnum", &b, &target("armv7l"))).clone();
    assert_eq!((f.check, f.offset), (Check::Malformed, Some(44)), "{}", f.found);
    // A file really shorter than its program header table is still a cut file.
    let good = std::fs::read(fx.armhf_dyn()).unwrap();
    let f = only(&check_copy(&fx, "cut100", &good[..100], &target("armv7l"))).clone();
    assert_eq!(f.check, Check::Truncated);
}
