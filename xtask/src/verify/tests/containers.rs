//! Archives inside a release: asar archives packed by @electron/asar, zip archives written by
//! Python's zipfile, gzip streams written by gzip, tarballs by GNU tar and .debs by dpkg-deb,
//! each holding a real aarch64 or x86_64 shared object; and cut, corrupt and bomb-like copies.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::*;
use crate::verify::{Check, InputErrorKind};

const NODE_PATH: &str = "node_modules/x/build/Release/x.node";

/// `npx @electron/asar pack src out` with `args`; a missing npx or package fails loudly.
fn asar_pack(src: &Path, out: &Path, args: &[&str]) {
    let mut all = vec!["--yes", "@electron/asar", "pack"];
    all.extend_from_slice(args);
    all.extend([src.to_str().unwrap(), out.to_str().unwrap()]);
    let result = Command::new("npx").args(&all).output().unwrap_or_else(|err| {
        panic!("npx cannot run ({err}): install Node.js and npm (apt-get install -y nodejs npm)")
    });
    assert!(
        result.status.success(),
        "npx {all:?} failed (needs the npm registry for @electron/asar): {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// An Electron app folder: resources/app.asar packed from an app with one native module.
fn electron_app(fx: &Fx, node: &Path, unpack: bool) -> PathBuf {
    let src = fx.path("app-src");
    let module = src.join(NODE_PATH);
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::copy(node, &module).unwrap();
    std::fs::write(src.join("package.json"), b"{\"name\":\"kt\",\"main\":\"index.js\"}").unwrap();
    std::fs::write(src.join("index.js"), b"require('x/build/Release/x.node');\n").unwrap();
    let app = fx.path("linux-unpacked");
    std::fs::create_dir_all(app.join("resources")).unwrap();
    let args: &[&str] = if unpack { &["--unpack", "*.node"] } else { &[] };
    asar_pack(&src, &app.join("resources/app.asar"), args);
    app
}

/// Write a zip with Python's zipfile: (name in the zip, file on disk, deflated?).
fn py_zip(out: &Path, entries: &[(&str, &Path, bool)]) {
    let script = "import sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1], 'w') as z:\n\
                  \x20   for spec in sys.argv[2:]:\n\
                  \x20       name, how, src = spec.split('|', 2)\n\
                  \x20       z.write(src, name, compress_type=zipfile.ZIP_DEFLATED if how == 'd' else zipfile.ZIP_STORED)\n";
    let specs: Vec<String> = entries
        .iter()
        .map(|(name, src, deflate)| format!("{name}|{}|{}", if *deflate { "d" } else { "s" }, src.display()))
        .collect();
    let mut args = vec!["-c", script, out.to_str().unwrap()];
    args.extend(specs.iter().map(String::as_str));
    run_tool("python3", &args);
}

fn gzip_tool(file: &Path) -> PathBuf {
    run_tool("gzip", &["-k", "-n", "-f", file.to_str().unwrap()]);
    PathBuf::from(format!("{}.gz", file.display()))
}

#[test]
fn arm64_node_in_asar_fails_naming_the_chain() {
    let fx = Fx::new();
    let node = fx.so("aarch64-linux-gnu-gcc", "arm64.node");
    let app = electron_app(&fx, &node, false);
    let report = verify(&[&app], &target("x64"));
    let f = only(&report);
    assert_eq!(f.check, Check::Machine, "{}", report.render_table());
    assert_eq!(f.file, app.join("resources/app.asar"));
    assert_eq!(f.inner.as_deref(), Some(NODE_PATH));
    assert_eq!(report.elfs_checked, 1);

    // The same module built for x86_64 passes.
    let fx = Fx::new();
    let app = electron_app(&fx, &fx.x64_node(), false);
    let report = verify(&[&app], &target("x64"));
    assert_clean(&report);
    assert_eq!(report.elfs_checked, 1, "the .node inside the asar was checked");
}

/// electron-builder's usual layout: the .node in app.asar.unpacked/, marked unpacked in the
/// header; it is checked once, as a plain file of the folder.
#[test]
fn unpacked_asar_entries_are_checked_as_files_once() {
    let fx = Fx::new();
    let node = fx.so("aarch64-linux-gnu-gcc", "arm64.node");
    let app = electron_app(&fx, &node, true);
    assert!(app.join("resources/app.asar.unpacked").join(NODE_PATH).is_file(), "asar --unpack wrote the file");
    let report = verify(&[&app], &target("x64"));
    let f = only(&report);
    assert_eq!((f.check, f.inner.as_deref()), (Check::Machine, None));
    assert_eq!(f.file, app.join("resources/app.asar.unpacked").join(NODE_PATH));
}

#[test]
fn asar_inside_a_deb_names_member_and_entry() {
    let fx = Fx::new();
    let node = fx.so("aarch64-linux-gnu-gcc", "arm64.node");
    let app = electron_app(&fx, &node, false);
    let asar = std::fs::read(app.join("resources/app.asar")).unwrap();
    let root = deb_tree(&fx, "ktdeb", "amd64", &[("opt/KitchnTabs/resources/app.asar", asar, 0o644)]);
    let deb = dpkg_build(&fx, &root, "xz");
    let report = verify(&[&deb], &target("x64"));
    let f = only(&report);
    assert_eq!(f.check, Check::Machine);
    assert_eq!(f.file, deb);
    assert_eq!(f.inner.as_deref(), Some(format!("./opt/KitchnTabs/resources/app.asar -> {NODE_PATH}").as_str()));
}

#[test]
fn arm64_so_in_zip_fails_x64_passes() {
    let fx = Fx::new();
    let (arm, x64) = (fx.arm64_so(), fx.x64_so());
    let dir = fx.path("dist");
    std::fs::create_dir_all(&dir).unwrap();
    let zip = dir.join("natives.zip");
    let readme = fx.write("README", b"natives for every platform\n");
    py_zip(&zip, &[("lib/arm64/libfoo.so", &arm, true), ("lib/x64/libfoo.so", &x64, false), ("README", &readme, true)]);
    let report = verify(&[&dir], &target("x64"));
    let f = only(&report);
    assert_eq!(f.check, Check::Machine, "{}", report.render_table());
    assert_eq!((f.file.as_path(), f.inner.as_deref()), (zip.as_path(), Some("lib/arm64/libfoo.so")));
    assert_eq!(report.elfs_checked, 2, "the stored and the deflated entry were both checked");

    py_zip(&zip, &[("lib/x64/libfoo.so", &x64, true)]);
    assert_clean(&verify(&[&dir], &target("x64")));
}

#[test]
fn arm64_so_gz_fails_x64_passes() {
    let fx = Fx::new();
    let gz = gzip_tool(&fx.arm64_so());
    let report = verify(&[&gz], &target("x64"));
    let f = only(&report);
    assert_eq!((f.check, f.inner.as_deref()), (Check::Machine, Some("libarm64.so")));
    assert_eq!(f.file, gz);

    let gz = gzip_tool(&fx.x64_so());
    let report = verify(&[&gz], &target("x64"));
    assert_clean(&report);
    assert_eq!(report.elfs_checked, 1);
}

/// vendor.tar.gz holding pkg/lib/libarm64.so, written by GNU tar.
fn vendor_tarball(fx: &Fx) -> PathBuf {
    fx.write("vendor/pkg/lib/libarm64.so", &std::fs::read(fx.arm64_so()).unwrap());
    fx.write("vendor/pkg/README", b"vendored\n");
    let out = fx.path("vendor.tar.gz");
    run_tool("tar", &["-czf", out.to_str().unwrap(), "-C", fx.path("vendor").to_str().unwrap(), "pkg"]);
    out
}

#[test]
fn tar_gz_inside_tar_gz_and_inside_a_folder() {
    let fx = Fx::new();
    let inner = vendor_tarball(&fx);
    let outer_dir = fx.path("outer");
    std::fs::create_dir_all(&outer_dir).unwrap();
    std::fs::copy(&inner, outer_dir.join("vendor.tar.gz")).unwrap();
    let outer = fx.path("release.tar.gz");
    run_tool("tar", &["-czf", outer.to_str().unwrap(), "-C", outer_dir.to_str().unwrap(), "vendor.tar.gz"]);

    let report = verify(&[&outer], &target("x64"));
    let f = only(&report);
    assert_eq!(f.check, Check::Machine, "{}", report.render_table());
    assert_eq!((f.file.as_path(), f.inner.as_deref()), (outer.as_path(), Some("vendor.tar.gz -> pkg/lib/libarm64.so")));

    let report = verify(&[&outer_dir], &target("x64"));
    let f = only(&report);
    assert_eq!(f.file, outer_dir.join("vendor.tar.gz"));
    assert_eq!(f.inner.as_deref(), Some("pkg/lib/libarm64.so"));
}

#[test]
fn tar_gz_and_zip_inside_a_deb_data_member() {
    let fx = Fx::new();
    let tgz = std::fs::read(vendor_tarball(&fx)).unwrap();
    let zip = fx.path("natives.zip");
    py_zip(&zip, &[("arm64/libfoo.so", &fx.arm64_so(), true)]);
    let root = deb_tree(
        &fx,
        "ktdeb",
        "amd64",
        &[("opt/kt/vendor.tar.gz", tgz, 0o644), ("opt/kt/natives.zip", std::fs::read(&zip).unwrap(), 0o644)],
    );
    let deb = dpkg_build(&fx, &root, "gzip");
    let report = verify(&[&deb], &target("x64"));
    let got: Vec<(&str, Check)> = report.findings.iter().map(|f| (f.inner.as_deref().unwrap(), f.check)).collect();
    assert_eq!(
        got,
        vec![
            ("./opt/kt/natives.zip -> arm64/libfoo.so", Check::Machine),
            ("./opt/kt/vendor.tar.gz -> pkg/lib/libarm64.so", Check::Machine),
        ],
        "{}",
        report.render_table()
    );
}

/// asar's layout by hand (for damage no packer writes): size pickle, header pickle, data.
fn asar_by_hand(json: &str, data: &[u8]) -> Vec<u8> {
    let padded = json.len().div_ceil(4) * 4;
    let mut out = Vec::new();
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&((8 + padded) as u32).to_le_bytes());
    out.extend_from_slice(&((4 + padded) as u32).to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out.resize(16 + padded, 0);
    out.extend_from_slice(data);
    out
}

#[test]
fn cut_or_corrupt_asar_is_an_input_error_naming_the_file() {
    let fx = Fx::new();
    let app = electron_app(&fx, &fx.x64_node(), false);
    let asar = app.join("resources/app.asar");
    let bytes = std::fs::read(&asar).unwrap();
    let header_size = read_u32_le(&bytes, 4) as usize;

    // Cut inside the header: header_size runs past the end.
    std::fs::write(&asar, &bytes[..40]).unwrap();
    let err = input_error(&app, &target("x64"));
    assert_eq!((err.kind, &err.file, err.offset), (InputErrorKind::Asar, &asar, Some(4)), "{err}");
    assert!(err.detail.contains("header_size"), "{err}");

    // Cut inside the data: the last file's bytes are missing.
    std::fs::write(&asar, &bytes[..8 + header_size + 10]).unwrap();
    let err = input_error(&app, &target("x64"));
    assert_eq!((err.kind, &err.file), (InputErrorKind::Asar, &asar), "{err}");
    assert!(err.detail.contains("runs past the end of the data"), "{err}");

    // Header JSON that does not parse.
    std::fs::write(&asar, asar_by_hand("{\"files\": {\"a\": ", b"")).unwrap();
    let err = input_error(&app, &target("x64"));
    assert_eq!((err.kind, err.offset), (InputErrorKind::Asar, Some(16)), "{err}");
    assert!(err.detail.contains("header JSON"), "{err}");

    // A hand-written header that is sound reads like a packed one.
    let node = std::fs::read(fx.so("aarch64-linux-gnu-gcc", "arm64.node")).unwrap();
    let json = format!("{{\"files\":{{\"a.node\":{{\"size\":{},\"offset\":\"0\"}}}}}}", node.len());
    std::fs::write(&asar, asar_by_hand(&json, &node)).unwrap();
    let report = verify(&[&app], &target("x64"));
    assert_eq!(only(&report).inner.as_deref(), Some("a.node"));

    // A file named .asar that does not start like one is data, as before.
    std::fs::write(&asar, b"not a binary").unwrap();
    assert_clean(&verify(&[&app], &target("x64")));
}

#[test]
fn cut_or_corrupt_zip_is_an_input_error_naming_the_file() {
    let fx = Fx::new();
    let zip = fx.path("natives.zip");
    py_zip(&zip, &[("lib/libfoo.so", &fx.arm64_so(), true)]);
    let bytes = std::fs::read(&zip).unwrap();

    // Without its end of central directory record.
    let cut = fx.write("cut.zip", &bytes[..bytes.len() - 30]);
    let err = input_error(&cut, &target("x64"));
    assert_eq!((err.kind, &err.file), (InputErrorKind::Zip, &cut), "{err}");
    assert!(err.detail.contains("central directory"), "{err}");

    // Deflate data damaged in the middle of the entry.
    let mut bad = bytes.clone();
    let data_at = 30 + "lib/libfoo.so".len();
    for b in &mut bad[data_at + 20..data_at + 60] {
        *b ^= 0x5a;
    }
    let bad = fx.write("bad.zip", &bad);
    let err = input_error(&bad, &target("x64"));
    assert!(matches!(err.kind, InputErrorKind::Zip | InputErrorKind::Limit), "{err}");
    assert_eq!(err.file, bad);
    assert!(err.detail.contains("lib/libfoo.so"), "{err}");
}

#[test]
fn bomb_like_ratios_are_refused() {
    let fx = Fx::new();
    // 100 MiB that deflate to ~100 KiB, starting like an ELF so it must be read whole.
    let zip = fx.path("bomb.zip");
    let script = "import sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
                  \x20   z.writestr('libbomb.so', b'\\x7fELF' + bytes(100 << 20))\n";
    run_tool("python3", &["-c", script, zip.to_str().unwrap()]);
    let err = input_error(&zip, &target("x64"));
    assert_eq!((err.kind, &err.file), (InputErrorKind::Limit, &zip), "{err}");
    assert!(err.detail.contains("libbomb.so") && err.detail.contains("decompression bomb"), "{err}");

    let raw = fx.path("libbomb.so");
    let mut elf = b"\x7fELF".to_vec();
    elf.resize(100 << 20, 0);
    std::fs::write(&raw, &elf).unwrap();
    let gz = gzip_tool(&raw);
    let err = input_error(&gz, &target("x64"));
    assert_eq!((err.kind, &err.file), (InputErrorKind::Limit, &gz), "{err}");
    assert!(err.detail.contains("decompression bomb"), "{err}");
}

#[test]
fn nesting_past_the_limit_is_an_input_error() {
    let fx = Fx::new();
    let mut bytes = std::fs::read(fx.arm64_so()).unwrap();
    for _ in 0..10 {
        bytes = gzip(&bytes);
    }
    let path = fx.write(&format!("libdeep.so{}", ".gz".repeat(10)), &bytes);
    let err = input_error(&path, &target("x64"));
    assert_eq!(err.kind, InputErrorKind::Limit, "{err}");
    assert!(err.detail.contains("nested 9 deep"), "{err}");
    assert!(err.member.as_deref().unwrap().starts_with("libdeep.so.gz"), "{err}");
}
