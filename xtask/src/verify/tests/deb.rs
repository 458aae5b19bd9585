//! .deb packages, streamed: dpkg-deb built (xz, gzip, zstd, none), hand-made
//! with unsafe member names, and corrupted copies.

use std::path::{Path, PathBuf};

use super::common::*;
use crate::verify::{Check, InputErrorKind, Severity};

/// An armhf package with one x86_64 binary in usr/bin.
fn wrong_arch_tree(fx: &Fx) -> PathBuf {
    deb_tree(
        fx,
        "kitchntabs",
        "armhf",
        &[
            ("usr/bin/kt-helper", std::fs::read(fx.x64_dyn()).unwrap(), 0o755),
            ("opt/KitchnTabs/kitchntabs", std::fs::read(fx.armhf_dyn()).unwrap(), 0o755),
            ("opt/KitchnTabs/libEGL.so", std::fs::read(fx.armhf_so()).unwrap(), 0o644),
            ("opt/KitchnTabs/resources/app.asar", b"not a binary".to_vec(), 0o644),
            ("usr/share/doc/kt-test/copyright", b"MIT\n".to_vec(), 0o644),
        ],
    )
}

fn assert_wrong_arch_report(report: &crate::verify::Report, deb: &Path) {
    let f = only(report);
    assert_finding(f, Check::Machine, Severity::Error, "ELF32 EM_ARM (40)", "ELF64 EM_X86_64 (62)");
    assert_eq!(f.file, deb);
    assert_eq!(f.inner.as_deref(), Some("./usr/bin/kt-helper"));
    assert_eq!(report.files_checked, 5);
    assert_eq!(report.elfs_checked, 3);
}

#[test]
fn wrong_arch_member_xz() {
    let fx = Fx::new();
    let deb = dpkg_build(&fx, &wrong_arch_tree(&fx), "xz");
    assert_wrong_arch_report(&verify(&[&deb], &target("armv7l").with_glibc_floor(2, 36)), &deb);
}

#[test]
fn wrong_arch_member_gzip() {
    let fx = Fx::new();
    let deb = dpkg_build(&fx, &wrong_arch_tree(&fx), "gzip");
    assert_wrong_arch_report(&verify(&[&deb], &target("armv7l").with_glibc_floor(2, 36)), &deb);
}

#[test]
fn wrong_arch_member_zstd() {
    let fx = Fx::new();
    let deb = dpkg_build(&fx, &wrong_arch_tree(&fx), "zstd");
    let head = std::fs::read(&deb).unwrap();
    assert!(head.windows(12).any(|w| w == b"data.tar.zst"), "dpkg-deb wrote a zstd member");
    assert_wrong_arch_report(&verify(&[&deb], &target("armv7l").with_glibc_floor(2, 36)), &deb);
}

#[test]
fn wrong_arch_member_uncompressed() {
    let fx = Fx::new();
    let deb = dpkg_build(&fx, &wrong_arch_tree(&fx), "none");
    assert_wrong_arch_report(&verify(&[&deb], &target("armv7l").with_glibc_floor(2, 36)), &deb);
}

#[test]
fn deb_inside_a_directory_is_read() {
    let fx = Fx::new();
    let deb = dpkg_build(&fx, &wrong_arch_tree(&fx), "xz");
    let dist = fx.path("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let copy = dist.join("kitchntabs_1.0.19_armhf.deb");
    std::fs::copy(&deb, &copy).unwrap();
    assert_wrong_arch_report(&verify(&[&dist], &target("armv7l")), &copy);
}

#[test]
fn control_architecture_must_match() {
    let fx = Fx::new();
    let root = deb_tree(&fx, "amd64pkg", "amd64", &[("usr/bin/ok", std::fs::read(fx.armhf_dyn()).unwrap(), 0o755)]);
    let deb = dpkg_build(&fx, &root, "xz");
    let report = verify(&[&deb], &target("armv7l"));
    let f = only(&report);
    assert_finding(f, Check::DebArchitecture, Severity::Error, "Architecture: armhf (or all)", "amd64");
    assert_eq!(f.inner.as_deref(), Some("control.tar.xz -> ./control"));
    // "all" is fine for any target.
    let root = deb_tree(&fx, "allpkg", "all", &[("usr/share/x", b"x".to_vec(), 0o644)]);
    assert_clean(&verify(&[&dpkg_build(&fx, &root, "gzip")], &target("arm64")));
}

#[test]
fn pyinstaller_app_inside_deb() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let root = deb_tree(&fx, "pyapp-pkg", "amd64", &[("usr/bin/kt-service", std::fs::read(&app.path).unwrap(), 0o755)]);
    let deb = dpkg_build(&fx, &root, "xz");
    let report = verify(&[&deb], &target("x64"));
    let f = only(&report);
    assert_eq!(f.check, Check::Machine);
    assert_eq!(f.inner.as_deref(), Some("./usr/bin/kt-service -> libforeign.so"));
    assert_eq!(report.archives.len(), 1);
    assert_eq!(report.archives[0].inner.as_deref(), Some("./usr/bin/kt-service"));
    assert_eq!(report.archives[0].python_version, 311);
}

/// debian-binary, a good control.tar.gz, and the given data member.
fn handmade_deb(fx: &Fx, name: &str, data_name: &str, data: Vec<u8>) -> PathBuf {
    let path = fx.path(name);
    write_ar(
        &path,
        &[("debian-binary", b"2.0\n".to_vec()), ("control.tar.gz", control_tar_gz("armhf")), (data_name, data)],
    );
    path
}

#[test]
fn dotdot_member_is_refused() {
    let fx = Fx::new();
    let armhf = std::fs::read(fx.armhf_dyn()).unwrap();
    let tar = raw_tar(&[
        ("./usr/bin/good", &armhf, 0o755),
        ("./../evil", b"#!/bin/sh\nrm -rf /\n", 0o755),
        ("/etc/cron.d/abs", b"* * * * * root true\n", 0o644),
    ]);
    let deb = handmade_deb(&fx, "evil.deb", "data.tar.gz", gzip(&tar));
    let report = verify(&[&deb], &target("armv7l"));
    let unsafe_paths = report.with_check(Check::UnsafeMemberPath);
    assert_eq!(report.findings.len(), 2, "{}", report.render_table());
    assert_eq!(unsafe_paths[0].inner.as_deref(), Some("./../evil"));
    assert_finding(
        unsafe_paths[0],
        Check::UnsafeMemberPath,
        Severity::Error,
        "a relative path inside the package (./usr/..., no `..`)",
        "\"./../evil\": `..` component",
    );
    assert_eq!(unsafe_paths[1].inner.as_deref(), Some("/etc/cron.d/abs"));
    assert_eq!(unsafe_paths[1].found, "\"/etc/cron.d/abs\": absolute path");
    assert_eq!(report.files_checked, 1, "refused members are not read further");
}

#[test]
fn handmade_uncompressed_and_lzma_members() {
    let fx = Fx::new();
    let x64 = std::fs::read(fx.x64_dyn()).unwrap();
    let tar = raw_tar(&[("./usr/bin/x", &x64, 0o755)]);
    let plain = handmade_deb(&fx, "plain.deb", "data.tar", tar.clone());
    assert_eq!(only(&verify(&[&plain], &target("armv7l"))).inner.as_deref(), Some("./usr/bin/x"));
    let mut lzma = Vec::new();
    {
        use std::io::Read;
        let opts = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
        let stream = liblzma::stream::Stream::new_lzma_encoder(&opts).unwrap();
        liblzma::read::XzEncoder::new_stream(&tar[..], stream).read_to_end(&mut lzma).unwrap();
    }
    let old = handmade_deb(&fx, "lzma.deb", "data.tar.lzma", lzma);
    assert_eq!(only(&verify(&[&old], &target("armv7l"))).check, Check::Machine);
}

// ------------------------------------------------------------ input errors

fn input_error(path: &Path) -> crate::verify::InputError {
    super::common::input_error(path, &target("armv7l"))
}

#[test]
fn unsupported_compression_is_named() {
    let fx = Fx::new();
    let deb = handmade_deb(&fx, "bz.deb", "data.tar.bz2", b"BZh91AY&SY".to_vec());
    let err = input_error(&deb);
    assert_eq!(err.kind, InputErrorKind::UnsupportedCompression);
    assert_eq!(err.member.as_deref(), Some("data.tar.bz2"));
    assert_eq!(err.file, deb);
}

#[test]
fn bad_debian_binary() {
    let fx = Fx::new();
    let path = fx.path("v3.deb");
    write_ar(&path, &[("debian-binary", b"3.0\n".to_vec())]);
    let err = input_error(&path);
    assert_eq!(err.kind, InputErrorKind::DebianBinary);
    assert_eq!(err.member.as_deref(), Some("debian-binary"));
    assert_eq!(err.offset, Some(68));
}

#[test]
fn missing_data_member() {
    let fx = Fx::new();
    let path = fx.path("nodata.deb");
    write_ar(&path, &[("debian-binary", b"2.0\n".to_vec()), ("control.tar.gz", control_tar_gz("armhf"))]);
    let err = input_error(&path);
    assert_eq!(err.kind, InputErrorKind::MissingMember);
    assert!(err.detail.contains("no data.tar.* member"), "{err}");
}

#[test]
fn truncated_debs() {
    let fx = Fx::new();
    let deb = dpkg_build(&fx, &wrong_arch_tree(&fx), "xz");
    let bytes = std::fs::read(&deb).unwrap();
    let data_hdr = find(&bytes, b"data.tar.xz");
    let control_hdr = find(&bytes, b"control.tar.xz");
    // (cut, expected kind, expected member)
    let cases: Vec<(usize, InputErrorKind, Option<&str>)> = vec![
        (4, InputErrorKind::ArHeader, None),
        (30, InputErrorKind::Truncated, None),
        (control_hdr + 100, InputErrorKind::Truncated, Some("control.tar.xz")),
        (data_hdr + 30, InputErrorKind::Truncated, None),
        (data_hdr + 60 + 200, InputErrorKind::Truncated, Some("data.tar.xz")),
        (bytes.len() - 1, InputErrorKind::Truncated, Some("data.tar.xz")),
    ];
    for (cut, kind, member) in cases {
        let path = fx.write(&format!("cut-{cut}.deb"), &bytes[..cut]);
        let err = input_error(&path);
        assert_eq!(err.kind, kind, "cut at {cut}: {err}");
        assert_eq!(err.member.as_deref(), member, "cut at {cut}: {err}");
        assert_eq!(err.file, path);
        if kind == InputErrorKind::Truncated {
            assert!(err.offset.is_some_and(|o| o <= cut as u64), "cut at {cut}: {err}");
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn corrupted_debs() {
    let fx = Fx::new();
    let deb = dpkg_build(&fx, &wrong_arch_tree(&fx), "xz");
    let bytes = std::fs::read(&deb).unwrap();
    let data_hdr = find(&bytes, b"data.tar.xz");
    let flip = |name: &str, at: usize, value: u8| {
        let mut b = bytes.clone();
        b[at] = value;
        fx.write(name, &b)
    };
    // ar magic
    let err = input_error(&flip("magic.deb", 1, b'X'));
    assert_eq!((err.kind, err.offset), (InputErrorKind::ArHeader, Some(0)));
    // size field of the data member header
    let err = input_error(&flip("size.deb", data_hdr + 48, b'z'));
    assert_eq!((err.kind, err.offset), (InputErrorKind::ArHeader, Some(data_hdr as u64 + 48)));
    // header terminator
    let err = input_error(&flip("term.deb", data_hdr + 58, b'x'));
    assert_eq!((err.kind, err.offset), (InputErrorKind::ArHeader, Some(data_hdr as u64 + 58)));
    // a byte in the middle of the xz stream
    let mid = data_hdr + 60 + (bytes.len() - data_hdr - 60) / 2;
    let err = input_error(&flip("xz.deb", mid, bytes[mid] ^ 0xff));
    assert_eq!(err.kind, InputErrorKind::Decompress, "{err}");
    // The member, and the tar entry being read when the stream broke.
    assert!(err.member.as_deref().unwrap().starts_with("data.tar.xz"), "{err}");
    assert!(err.offset.is_some_and(|o| o > data_hdr as u64), "{err}");
    // first member renamed
    let err = input_error(&flip("first.deb", 8, b'X'));
    assert_eq!((err.kind, err.offset), (InputErrorKind::MissingMember, Some(8)));
}

#[test]
fn corrupted_tar_header_checksum() {
    let fx = Fx::new();
    let x64 = std::fs::read(fx.x64_dyn()).unwrap();
    let mut tar = raw_tar(&[("./usr/bin/a", b"#!/bin/sh\n", 0o755), ("./usr/bin/x", &x64, 0o755)]);
    // Second header starts after the first (512 header + 512 data). Break its checksum.
    tar[1024 + 148] = b'9';
    tar[1024 + 149] = b'9';
    let deb = handmade_deb(&fx, "cksum.deb", "data.tar", tar);
    let err = input_error(&deb);
    assert_eq!(err.kind, InputErrorKind::Tar, "{err}");
    assert_eq!(err.member.as_deref(), Some("data.tar"));
    assert_eq!(err.offset, Some(1024), "offset in the decompressed stream");
}

#[test]
fn dpkg_deb_lists_the_fixture() {
    // The dpkg-deb fixture is a real package: dpkg-deb itself can list it.
    let fx = Fx::new();
    let deb = dpkg_build(&fx, &wrong_arch_tree(&fx), "xz");
    run_tool("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
}

#[test]
fn deb_links_are_resolved_from_the_install_root() {
    use std::os::unix::fs::symlink;
    let fx = Fx::new();
    let lib = "usr/lib/arm-linux-gnueabihf";
    let root = deb_tree(
        &fx,
        "linkpkg",
        "armhf",
        &[
            (format!("{lib}/libfoo.so.1").as_str(), std::fs::read(fx.armhf_so()).unwrap(), 0o644),
            ("usr/share/kt-test/notes.txt", b"notes\n".to_vec(), 0o644),
        ],
    );
    // Out of the package: from usr/share/kt-test, four `..` climb above `/`.
    symlink("../../../../etc/shadow", root.join("usr/share/kt-test/shadow")).unwrap();
    // What Debian's own packages do: a relative link inside, an absolute one across
    // top-level folders, and a -dev link to a file another package ships.
    symlink("libfoo.so.1", root.join(lib).join("libfoo.so")).unwrap();
    std::fs::create_dir_all(root.join("lib")).unwrap();
    symlink(format!("/{lib}/libfoo.so.1"), root.join("lib/libfoo.so.1")).unwrap();
    symlink("libbar.so.1", root.join(lib).join("libbar.so")).unwrap();
    let deb = dpkg_build(&fx, &root, "xz");
    let listing = tool_output("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
    assert!(listing.contains("./usr/share/kt-test/shadow -> ../../../../etc/shadow"), "{listing}");

    let report = verify(&[&deb], &target("armv7l"));
    let f = only(&report);
    assert_eq!(f.check.as_str(), "link");
    assert_eq!(f.inner.as_deref(), Some("./usr/share/kt-test/shadow"));
    assert_eq!(f.found, "./usr/share/kt-test/shadow -> ../../../../etc/shadow: `..` climbs above the root of the tree");
    assert_eq!(report.files_checked, 2, "links are not files");
}

#[test]
fn debian_text_files_named_like_libraries_pass() {
    let fx = Fx::new();
    // The shapes of bookworm's libstdc++6, libc-bin and libc6-dev files.
    let gdb_py = b"# -*- python -*-\n# Copyright (C) 2009-2022 Free Software Foundation, Inc.\n\nimport sys\nimport gdb\nimport os\nimport os.path\n\npythondir = '/usr/share/gcc/python'\n".to_vec();
    let ld_conf = b"include /etc/ld.so.conf.d/*.conf\n\n".to_vec();
    let libc_so = b"/* GNU ld script\n   Use the shared library, but some functions are only in\n   the static library, so try that secondarily.  */\nOUTPUT_FORMAT(elf64-x86-64)\nGROUP ( /lib/x86_64-linux-gnu/libc.so.6 /usr/lib/x86_64-linux-gnu/libc_nonshared.a  AS_NEEDED ( /lib64/ld-linux-x86-64.so.2 ) )\n".to_vec();
    let gdb_path = "usr/share/gdb/auto-load/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30-gdb.py";
    let files = [
        (gdb_path, gdb_py, 0o644),
        ("etc/ld.so.conf", ld_conf, 0o644),
        ("usr/lib/x86_64-linux-gnu/libc.so", libc_so, 0o644),
        ("usr/lib/x86_64-linux-gnu/libreal.so.1", std::fs::read(fx.x64_so()).unwrap(), 0o644),
    ];
    let root = deb_tree(&fx, "textlibs", "amd64", &files);
    for path in [gdb_path, "etc/ld.so.conf", "usr/lib/x86_64-linux-gnu/libc.so"] {
        let what = tool_output("file", &["-b", root.join(path).to_str().unwrap()]);
        assert!(what.contains("ASCII text"), "{path}: {what}");
    }
    let deb = dpkg_build(&fx, &root, "xz");
    let report = verify(&[&deb], &target("x64"));
    assert_clean(&report);
    assert_eq!(report.files_checked, 4);

    // What stays a finding under a library name: a cut ELF, Mach-O, PE, other binary data.
    let so = std::fs::read(fx.x64_so()).unwrap();
    let bad = [
        ("usr/lib/libcut.so.1", so[..so.len() / 2].to_vec(), 0o644),
        ("usr/lib/libmac.so", macho_thin(CPU_X86_64), 0o644),
        ("usr/lib/libwin.so", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec(), 0o644),
        ("usr/lib/libdata.so.2", vec![0x99; 64], 0o644),
        // A download that fetched an error page: text, but no linker script.
        ("usr/lib/libpage.so.3", b"<html><body>404 Not Found</body></html>\n".to_vec(), 0o644),
    ];
    let deb = dpkg_build(&fx, &deb_tree(&fx, "badlibs", "amd64", &bad), "xz");
    let report = verify(&[&deb], &target("x64"));
    let got: Vec<(&str, &str)> =
        report.findings.iter().map(|f| (f.inner.as_deref().unwrap(), f.check.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("./usr/lib/libcut.so.1", "truncated"),
            ("./usr/lib/libdata.so.2", "format"),
            ("./usr/lib/libmac.so", "format"),
            ("./usr/lib/libpage.so.3", "format"),
            ("./usr/lib/libwin.so", "format"),
        ],
        "{}",
        report.render_table()
    );
}
