//! PyInstaller one-file archives: a synthetic one built with objcopy, a real
//! one when KT_PYINSTALLER_BIN is set, and corrupted copies.

use super::common::*;
use crate::verify::{Check, Severity};

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

#[test]
fn foreign_library_inside_archive_is_named() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let report = verify(&[&app.path], &target("x64").with_glibc_floor(2, 36));
    let f = only(&report);
    assert_finding(f, Check::Machine, Severity::Error, "ELF64 EM_X86_64 (62)", "ELF64 EM_AARCH64 (183)");
    assert_eq!(f.inner.as_deref(), Some("libforeign.so"));
    assert_eq!(f.file, app.path);

    assert_eq!(report.archives.len(), 1);
    let a = &report.archives[0];
    assert_eq!(a.python_version, 311);
    assert_eq!(a.python_libname, "libpython3.11.so.1.0");
    assert_eq!(a.entries, 5);
    assert_eq!(a.binaries, 2);
    assert_eq!(report.elfs_checked, 3, "bootloader + two embedded libraries");
}

#[test]
fn appended_archive_is_found_by_backward_scan() {
    let fx = Fx::new();
    let (path, _, _) = pyi_appended(&fx);
    let report = verify(&[&path], &target("x64"));
    let f = only(&report);
    assert_eq!(f.check, Check::Machine);
    assert_eq!(f.inner.as_deref(), Some("libforeign.so"));
    assert_eq!(report.archives[0].entries, 5);
}

#[test]
fn archive_parser_reads_toc() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let bytes = std::fs::read(&app.path).unwrap();
    let info = crate::verify::elf::inspect(&bytes).unwrap();
    let archive = crate::verify::pyinstaller::locate(
        &bytes,
        crate::verify::pyinstaller::Location::PydataSection(info.pydata.unwrap()),
    )
    .unwrap()
    .unwrap();
    assert_eq!(archive.package_start, app.pkg_start);
    let names: Vec<(&str, u8)> = archive.entries.iter().map(|e| (e.name.as_str(), e.typecode)).collect();
    assert_eq!(
        names,
        vec![
            ("pyi-runtime-option", b'o'),
            ("libforeign.so", b'b'),
            ("lib-dynload/_native.cpython-311-x86_64-linux-gnu.so", b'b'),
            ("certifi/cacert.pem", b'x'),
            ("PYZ.pyz", b'z'),
        ]
    );
    let lib = archive.entry_data(&bytes, &archive.entries[1]).unwrap();
    assert_eq!(&lib[..], &std::fs::read(fx.arm64_so()).unwrap()[..]);
}

// Real PyInstaller builds are verified by the native-build integration test
// (xtask/tests/native_build.rs), which builds them.

// ------------------------------------------------------------ corruption

/// Entry errors leave the other entries checked: the foreign library's
/// Machine finding stays, and exactly one entry error is expected beside it.
fn only_entry_error(report: &crate::verify::Report) -> &crate::verify::Finding {
    let machine = report.with_check(Check::Machine);
    assert_eq!(machine.len(), 1, "{}", report.render_table());
    assert_eq!(machine[0].inner.as_deref(), Some("libforeign.so"));
    let errors = report.with_check(Check::PyinstallerEntry);
    assert_eq!(report.findings.len(), 2, "{}", report.render_table());
    errors[0]
}

fn corrupt(fx: &Fx, app: &PyiApp, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> crate::verify::Report {
    let path = fx.patched(&app.path, name, edit);
    verify(&[&path], &target("x64"))
}

#[test]
fn cookie_magic_flipped() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let at = app.pkg_start + app.layout.cookie;
    let report = corrupt(&fx, &app, "magic", |b| b[at] ^= 0xff);
    let f = only(&report);
    assert_eq!(f.check, Check::PyinstallerArchive);
    assert_eq!(f.offset, Some(app.pkg_start as u64));
    assert!(f.found.contains("holds no cookie magic"), "{}", f.found);
}

#[test]
fn cookie_pkg_length_too_large() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let at = app.pkg_start + app.layout.cookie + 8;
    let report = corrupt(&fx, &app, "pkglen", |b| b[at..at + 4].copy_from_slice(&be32(0xffff_0000)));
    let f = only(&report);
    assert_eq!(f.check, Check::PyinstallerArchive);
    assert_eq!(f.offset, Some(at as u64));
    assert!(f.found.starts_with("pkg_length 4294901760 is larger than"), "{}", f.found);
}

#[test]
fn cookie_pkg_length_points_before_section() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let at = app.pkg_start + app.layout.cookie + 8;
    let bigger = (app.layout.len + 100) as u32;
    let report = corrupt(&fx, &app, "pkglen2", |b| b[at..at + 4].copy_from_slice(&be32(bigger)));
    let f = only(&report);
    assert_eq!(f.check, Check::PyinstallerArchive);
    assert_eq!(f.offset, Some(at as u64));
    assert!(f.found.contains("before the pydata section"), "{}", f.found);
}

#[test]
fn cookie_toc_length_past_cookie() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let at = app.pkg_start + app.layout.cookie + 16;
    let report = corrupt(&fx, &app, "toclen", |b| b[at..at + 4].copy_from_slice(&be32(0x7fff_ffff)));
    let f = only(&report);
    assert_eq!(f.check, Check::PyinstallerArchive);
    assert_eq!(f.offset, Some((at - 4) as u64), "reported at toc_offset");
    assert!(f.found.contains("runs past the cookie"), "{}", f.found);
}

#[test]
fn toc_entry_length_too_small() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let rec = app.pkg_start + app.layout.records[2];
    let report = corrupt(&fx, &app, "entrylen", |b| b[rec..rec + 4].copy_from_slice(&be32(5)));
    let f = only(&report);
    assert_eq!(f.check, Check::PyinstallerArchive);
    assert_eq!(f.offset, Some(rec as u64));
    assert!(f.found.contains("has entry_length 5"), "{}", f.found);
}

#[test]
fn toc_entry_length_past_toc() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let rec = app.pkg_start + app.layout.records[4];
    let report = corrupt(&fx, &app, "entrylen2", |b| b[rec..rec + 4].copy_from_slice(&be32(4096)));
    let f = only(&report);
    assert_eq!(f.check, Check::PyinstallerArchive);
    assert_eq!(f.offset, Some(rec as u64));
}

#[test]
fn entry_data_offset_out_of_bounds() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let rec = app.pkg_start + app.layout.records[1];
    let report = corrupt(&fx, &app, "dataoff", |b| b[rec + 4..rec + 8].copy_from_slice(&be32(0xfff0_0000)));
    let f = only(&report);
    assert_eq!(f.check, Check::PyinstallerEntry);
    assert_eq!(f.inner.as_deref(), Some("libforeign.so"));
    assert_eq!(f.offset, Some((rec + 4) as u64));
    assert!(f.found.contains("runs past the TOC"), "{}", f.found);
}

#[test]
fn entry_compressed_bytes_flipped() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let start = app.pkg_start + app.layout.data_offsets[1];
    let mid = start + app.layout.stored_lengths[1] / 2;
    let report = corrupt(&fx, &app, "zflip", |b| {
        for x in &mut b[mid..mid + 16] {
            *x ^= 0x5a;
        }
    });
    // The archive's other entries are still checked; the broken one is named.
    let entry_errors = report.with_check(Check::PyinstallerEntry);
    assert_eq!(entry_errors.len(), 1, "{}", report.render_table());
    let f = entry_errors[0];
    assert_eq!(f.inner.as_deref(), Some("libforeign.so"));
    assert_eq!(f.offset, Some(start as u64));
    assert!(f.found.contains("zlib stream does not inflate") || f.found.contains("inflated to"), "{}", f.found);
}

#[test]
fn entry_uncompressed_length_lies() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let rec = app.pkg_start + app.layout.records[2];
    let mut declared = 0;
    let report = corrupt(&fx, &app, "ulen", |b| {
        declared = u32::from_be_bytes(b[rec + 12..rec + 16].try_into().unwrap());
        b[rec + 12..rec + 16].copy_from_slice(&be32(declared + 1));
    });
    let f = only_entry_error(&report);
    assert_eq!(f.check, Check::PyinstallerEntry);
    assert_eq!(f.inner.as_deref(), Some("lib-dynload/_native.cpython-311-x86_64-linux-gnu.so"));
    assert_eq!(
        f.found,
        format!(
            "lib-dynload/_native.cpython-311-x86_64-linux-gnu.so: inflated to {declared} bytes, TOC declares {}",
            declared + 1
        )
    );
    // Declared smaller than the real data: the reader stops one byte past it.
    let report = corrupt(&fx, &app, "ulen2", |b| b[rec + 12..rec + 16].copy_from_slice(&be32(100)));
    assert_eq!(
        only_entry_error(&report).found,
        "lib-dynload/_native.cpython-311-x86_64-linux-gnu.so: inflated to more than 100 bytes, TOC declares 100"
    );
}

#[test]
fn uncompressed_entry_size_mismatch() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let rec = app.pkg_start + app.layout.records[4]; // PYZ.pyz, stored
    let report = corrupt(&fx, &app, "pyz", |b| b[rec + 12..rec + 16].copy_from_slice(&be32(7)));
    let f = only_entry_error(&report);
    assert_eq!(f.check, Check::PyinstallerEntry);
    assert_eq!(f.inner.as_deref(), Some("PYZ.pyz"));
    assert_eq!(f.offset, Some((rec + 8) as u64));
    assert_eq!(f.found, "PYZ.pyz: stored uncompressed with 256 bytes but uncompressed_length 7");
}

#[test]
fn truncated_copies_are_truncated_findings() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let len = std::fs::metadata(&app.path).unwrap().len() as usize;
    let cuts = [
        app.pkg_start + app.layout.records[0] + 3,  // inside the TOC
        app.pkg_start + app.layout.cookie + 40,     // inside the cookie
        app.pkg_start + app.layout.data_offsets[2], // inside entry data
        len - 1,                                    // inside the section header table
    ];
    for (i, cut) in cuts.into_iter().enumerate() {
        let report = corrupt(&fx, &app, &format!("cut{i}"), |b| b.truncate(cut));
        let f = only(&report);
        assert_eq!(f.check, Check::Truncated, "cut at {cut}: {f:?}");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.found.contains(&format!("data ends at byte {cut}")), "{}", f.found);
    }
}

#[test]
fn scan_skips_magic_that_is_not_a_cookie() {
    // The magic as a constant in an executable's data must not be mistaken
    // for an archive when there is no pydata section.
    let fx = Fx::new();
    let src = "static const unsigned char m[] = {0x4D,0x45,0x49,0x0C,0x0B,0x0A,0x0B,0x0E, 1,2,3,4};\n\
               int main(void) { return m[8]; }\n";
    let bin = fx.cc("gcc", "has-magic", src, "c", &["-O0"]);
    let bytes = std::fs::read(&bin).unwrap();
    assert!(bytes.windows(8).any(|w| w == COOKIE_MAGIC));
    let report = verify(&[&bin], &target("x64"));
    assert_clean(&report);
    assert!(report.archives.is_empty());
}

#[test]
fn archive_outside_a_pydata_section_is_found() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let renamed = fx.path("pyapp-other");
    run_tool("objcopy", &["--rename-section", "pydata=other", app.path.to_str().unwrap(), renamed.to_str().unwrap()]);
    let sections = tool_output("readelf", &["-S", "-W", renamed.to_str().unwrap()]);
    assert!(sections.contains(" other ") && !sections.contains("pydata"), "{sections}");
    let report = verify(&[&renamed], &target("x64"));
    let f = only(&report);
    assert_eq!(f.check, Check::Machine);
    assert_eq!(f.inner.as_deref(), Some("libforeign.so"));
    assert_eq!(report.archives.len(), 1);
    assert_eq!(report.archives[0].entries, 5);

    // The same file inside a .deb.
    let root = deb_tree(&fx, "other-pkg", "amd64", &[("usr/bin/kt-service", std::fs::read(&renamed).unwrap(), 0o755)]);
    let report = verify(&[&dpkg_build(&fx, &root, "xz")], &target("x64"));
    assert_eq!(only(&report).inner.as_deref(), Some("./usr/bin/kt-service -> libforeign.so"));

    // A static-pie bootloader: ET_DYN without PT_INTERP, still an executable.
    let boot = fx.cc("gcc", "boot-static-pie", HELLO_C, "c", &["-O2", "-static-pie"]);
    let header = tool_output("readelf", &["-h", "-l", "-d", boot.to_str().unwrap()]);
    assert!(header.contains("DYN (") && !header.contains("INTERP") && header.contains("PIE"), "{header}");
    let (pkg, _) = build_package(&pyi_entries(&fx), 311, "libpython3.11.so.1.0");
    let pkg_path = fx.write("pkg-static.bin", &pkg);
    let out = fx.path("pyapp-static-pie");
    run_tool(
        "objcopy",
        &["--add-section", &format!("other={}", pkg_path.display()), boot.to_str().unwrap(), out.to_str().unwrap()],
    );
    let report = verify(&[&out], &target("x64"));
    assert_eq!(only(&report).inner.as_deref(), Some("libforeign.so"), "{}", report.render_table());
}
