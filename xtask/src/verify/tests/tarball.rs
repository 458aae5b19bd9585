//! Plain tarballs given as inputs: dist's own darwin archive, GNU tar's .tar / .tgz /
//! .tar.xz, and hand-made ones with members and links that leave the tree.

use std::os::unix::fs::symlink;
use std::path::Path;

use super::common::*;
use crate::verify::Check;

#[test]
fn dist_darwin_archive_is_read() {
    let fx = Fx::new();
    let app = fx.path("KitchnTabs.app");
    let exe = fx.write("KitchnTabs.app/Contents/MacOS/KitchnTabs", &macho_thin(CPU_X86_64));
    fx.set_exec(&exe, true);
    let framework = "KitchnTabs.app/Contents/Frameworks/Electron Framework.framework";
    fx.write(&format!("{framework}/Versions/A/Electron Framework"), &macho_fat(&[CPU_X86_64, CPU_ARM64]));
    fx.write("KitchnTabs.app/Contents/Info.plist", b"<plist/>");
    // A framework's layout: folder links and a link through them.
    symlink("A", fx.path(&format!("{framework}/Versions/Current"))).unwrap();
    symlink("Versions/Current/Electron Framework", fx.path(&format!("{framework}/Electron Framework"))).unwrap();
    let out = fx.path("KitchnTabs-1.0.19-darwin-arm64.tar.gz");
    crate::deb::write_tar_gz(&app, &out, 1_700_000_000).unwrap();
    let listing = tool_output("tar", &["-tzvf", out.to_str().unwrap()]);
    assert!(listing.contains("./KitchnTabs.app/Contents/MacOS/KitchnTabs"), "{listing}");
    assert!(listing.contains("Electron Framework -> Versions/Current/Electron Framework"), "{listing}");

    let report = verify(&[&out], &target("darwin-arm64"));
    let f = only(&report);
    assert_eq!((f.check, &f.file), (Check::MachoCpu, &out));
    assert_eq!(f.inner.as_deref(), Some("./KitchnTabs.app/Contents/MacOS/KitchnTabs"));
    assert_eq!(report.files_checked, 3);
    assert_eq!(report.elfs_checked, 2);

    // Rebuilt for arm64, the archive passes.
    fx.write("KitchnTabs.app/Contents/MacOS/KitchnTabs", &macho_thin(CPU_ARM64));
    crate::deb::write_tar_gz(&app, &out, 1_700_000_000).unwrap();
    assert_clean(&verify(&[&out], &target("darwin-arm64")));
}

#[test]
fn gnu_tar_archives_are_read() {
    let fx = Fx::new();
    let helper = fx.write("pkg/usr/bin/kt-helper", &std::fs::read(fx.x64_dyn()).unwrap());
    fx.set_exec(&helper, true);
    fx.write("pkg/usr/lib/libok.so", &std::fs::read(fx.arm64_so()).unwrap());
    std::fs::hard_link(fx.path("pkg/usr/lib/libok.so"), fx.path("pkg/usr/lib/libok.so.1")).unwrap();
    let dir = fx.dir.path().to_str().unwrap().to_string();
    for (name, flag) in [("app.tar", "-cf"), ("app.tgz", "-czf"), ("app.tar.gz", "-czf"), ("app.tar.xz", "-cJf")] {
        let out = fx.path(name);
        run_tool("tar", &[flag, out.to_str().unwrap(), "-C", &dir, "pkg"]);
        let listing = tool_output("tar", &["-tvf", out.to_str().unwrap()]);
        assert!(listing.contains("pkg/usr/lib/libok.so.1 link to pkg/usr/lib/libok.so"), "{listing}");
        let report = verify(&[&out], &target("arm64"));
        let f = only(&report);
        assert_eq!(f.check, Check::Machine, "{name}");
        assert_eq!(f.inner.as_deref(), Some("pkg/usr/bin/kt-helper"), "{name}");
        assert_eq!(report.files_checked, 2, "{name}: the hard link is the same file");
    }
}

/// A tar entry with a raw name (and link target), so names the tar crate refuses can be made.
fn raw_entry(builder: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    {
        let raw = header.as_old_mut();
        raw.name.fill(0);
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        raw.linkname.fill(0);
        raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_size(data.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(kind);
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

#[test]
fn members_and_links_that_leave_the_archive_are_refused() {
    use tar::EntryType::{Link, Regular, Symlink};
    let fx = Fx::new();
    let arm64 = std::fs::read(fx.arm64_dyn()).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, "./app/kitchntabs", Regular, "", &arm64);
    raw_entry(&mut b, "./../evil", Regular, "", b"#!/bin/sh\n");
    raw_entry(&mut b, "/etc/cron.d/abs", Regular, "", b"* * * * * root true\n");
    raw_entry(&mut b, "./app/helper", Symlink, "/usr/bin/x86_64-helper", b"");
    raw_entry(&mut b, "./app/up", Symlink, "../../outside", b"");
    raw_entry(&mut b, "./app/gone.so", Symlink, "missing.so.1", b"");
    raw_entry(&mut b, "./app/again", Symlink, "kitchntabs", b"");
    raw_entry(&mut b, "./app/hard", Link, "./app/nothing-here", b"");
    let tgz = fx.write("evil.tar.gz", &gzip(&b.into_inner().unwrap()));
    let listing = tool_output("tar", &["-tvzf", tgz.to_str().unwrap()]);
    assert!(listing.contains("./app/up -> ../../outside"), "{listing}");

    let report = verify(&[&tgz], &target("arm64"));
    let got: Vec<(&str, &str)> =
        report.findings.iter().map(|f| (f.inner.as_deref().unwrap(), f.check.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("./../evil", "unsafe_member_path"),
            ("./app/gone.so", "link"),
            ("./app/hard", "link"),
            ("./app/helper", "link"),
            ("./app/up", "link"),
            ("/etc/cron.d/abs", "unsafe_member_path"),
        ],
        "{}",
        report.render_table()
    );
    let found = |inner: &str| &report.findings.iter().find(|f| f.inner.as_deref() == Some(inner)).unwrap().found;
    assert!(found("./app/helper").contains("absolute target /usr/bin/x86_64-helper points out of the tree"));
    assert_eq!(report.files_checked, 1);
}

#[test]
fn unreadable_tarball_is_an_input_error() {
    let fx = Fx::new();
    let bad = fx.write("cut.tar.xz", b"\xfd7zXZ\x00\x00\x04garbage");
    let err = input_error(&bad, &target("arm64"));
    assert_eq!(err.kind, crate::verify::InputErrorKind::Decompress, "{err}");
    assert_eq!(err.file, bad);
    assert!(Path::new(&err.file).exists());
}

/// A multi-block .xz (what the threaded decoder splits across threads) reads like any other;
/// bytes after its one stream are a decompression error, as dpkg's decoder says.
#[test]
fn multi_block_xz_is_read_and_bytes_after_the_stream_are_refused() {
    let fx = Fx::new();
    let helper = fx.write("pkg/usr/bin/kt-helper", &std::fs::read(fx.x64_dyn()).unwrap());
    fx.set_exec(&helper, true);
    let filler: Vec<u8> = (0..600_000u32).flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 7).to_le_bytes()).collect();
    fx.write("pkg/usr/share/kt/filler", &filler);
    let dir = fx.dir.path().to_str().unwrap().to_string();
    let tar = fx.path("app.tar");
    run_tool("tar", &["-cf", tar.to_str().unwrap(), "-C", &dir, "pkg"]);
    run_tool("xz", &["-k", "-T2", "--block-size=256KiB", tar.to_str().unwrap()]);
    let xz = fx.path("app.tar.xz");
    let list = tool_output("xz", &["--robot", "--list", xz.to_str().unwrap()]);
    let blocks: u64 =
        list.lines().find_map(|l| l.strip_prefix("file\t1\t")).unwrap().split('\t').next().unwrap().parse().unwrap();
    assert!(blocks > 2, "{list}");
    let report = verify(&[&xz], &target("arm64"));
    let f = only(&report);
    assert_eq!((f.check, f.inner.as_deref()), (Check::Machine, Some("pkg/usr/bin/kt-helper")));
    assert_eq!(report.files_checked, 2);

    let mut bytes = std::fs::read(&xz).unwrap();
    bytes.extend_from_slice(b"trailing bytes");
    let bad = fx.write("trailing.tar.xz", &bytes);
    let err = input_error(&bad, &target("arm64"));
    assert_eq!(err.kind, crate::verify::InputErrorKind::Decompress, "{err}");
}
