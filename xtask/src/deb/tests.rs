//! End-to-end checks with the real tools (dpkg-deb, ar, md5sum, lintian). A missing tool
//! fails the test with the apt-get line that installs it; nothing is skipped.

use super::electron::electron_app_spec;
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::electron::{FPM_DEPENDS, FPM_RECOMMENDS};
use super::spec::Entry;
use super::*;

mod blocks;

const EPOCH: u64 = 1_700_000_000;
const LONG_REL: &str =
    "resources/app.asar.unpacked/node_modules/@serialport/bindings-cpp/prebuilds/linux-x64/node.napi.glibc.node";

// ---------------------------------------------------------------- tools

fn require(tool: &str, apt_package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is missing; install it: apt-get update && apt-get install -y {apt_package}");
}

/// Run a tool, fail with its output if it fails, return stdout.
fn run(tool: &str, apt_package: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let out = run_raw(tool, apt_package, args);
    assert!(
        out.status.success(),
        "{tool} {:?} failed ({}):\n{}\n{}",
        args.iter().map(|a| a.as_ref().to_owned()).collect::<Vec<_>>(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

fn run_raw(tool: &str, apt_package: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    let path = require(tool, apt_package);
    let mut cmd = Command::new(path);
    for a in args {
        cmd.arg(a.as_ref());
    }
    cmd.env("LC_ALL", "C").output().expect("tool starts")
}

// ---------------------------------------------------------------- fixtures

/// A valid RGBA PNG of `size` x `size` (one colour), hand-encoded: signature, IHDR,
/// one zlib IDAT, IEND.
fn png(size: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&size.to_be_bytes());
    ihdr.extend_from_slice(&size.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no filter, no interlace
    // Each row: filter byte 0 (none), then `size` RGBA pixels.
    let row: Vec<u8> = std::iter::once(0).chain([0xe8, 0x5d, 0x2a, 0xff].repeat(size as usize)).collect();
    let raw = row.repeat(size as usize);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&raw).unwrap();
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

fn put(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn copy(root: &Path, rel: &str, from: &str, mode: u32) {
    let content = fs::read(from).unwrap_or_else(|e| panic!("cannot read {from}: {e}"));
    put(root, rel, &content, mode);
}

/// An electron-builder `linux-unpacked` stand-in: real ELF executables and libraries, a
/// random app.asar, locales, a symlink, and a native module deeper than 100 characters.
fn stand_in_app(root: &Path) {
    let lib = "/usr/lib/x86_64-linux-gnu";
    copy(root, "kitchntabs", "/bin/true", 0o755);
    copy(root, "chrome-sandbox", "/bin/false", 0o755);
    // Electron ships its bundled libraries executable (lintian: shared-library-is-executable).
    copy(root, "libffmpeg.so", &format!("{lib}/libz.so.1"), 0o755);
    copy(root, "libEGL.so", &format!("{lib}/libffi.so.8"), 0o755);
    copy(root, "libvulkan.so.1", &format!("{lib}/libuuid.so.1"), 0o644);
    symlink("libvulkan.so.1", root.join("libvulkan.so")).unwrap();
    put(root, "resources/app.asar", &pseudo_random(300_000, 7), 0o644);
    copy(root, "resources/python-service/kt_service", "/usr/bin/env", 0o755);
    put(root, "resources/python-service/config.yaml", b"port: 8765\n", 0o600);
    copy(root, LONG_REL, &format!("{lib}/libbz2.so.1.0"), 0o755);
    // A link target of 100+ bytes needs a GNU 'K' LongLink record.
    fs::create_dir_all(root.join("resources/python-service/lib")).unwrap();
    symlink(
        format!("../../{}", LONG_REL.trim_start_matches("resources/")),
        root.join("resources/python-service/lib/serialport.node"),
    )
    .unwrap();
    put(root, "locales/en-US.pak", &pseudo_random(5_000, 1), 0o644);
    put(root, "locales/de.pak", &pseudo_random(4_097, 2), 0o644);
    put(root, "version", b"37.2.0", 0o644);
    // Source owners and mtimes must not leak into the package.
    fs::set_permissions(root, fs::Permissions::from_mode(0o700)).unwrap();
}

fn app(unpacked: &Path, arch: DebArch, kiosk: bool) -> ElectronApp {
    ElectronApp {
        product_name: "KitchnTabs".into(),
        package: "kitchntabs".into(),
        executable: "kitchntabs".into(),
        version: "1.0.19".into(),
        arch,
        maintainer: "KitchnTabs Team <dev@kitchntabs.example>".into(),
        homepage: Some("https://kitchntabs.example".into()),
        description_short: "kitchen display terminal for restaurants".into(),
        description_long: "KitchnTabs shows incoming orders on a kitchen screen and prints\n\
                           tickets on thermal printers.\n\nIt runs on Raspberry Pi (armhf, arm64) and amd64."
            .into(),
        desktop_comment: "Kitchen display terminal".into(),
        categories: "Office;".into(),
        unpacked_dir: unpacked.to_path_buf(),
        icons: vec![(16, png(16)), (48, png(48)), (256, png(256))],
        depends: FPM_DEPENDS.iter().map(|s| s.to_string()).collect(),
        recommends: FPM_RECOMMENDS.iter().map(|s| s.to_string()).collect(),
        copyright: CopyrightInfo {
            holder: "2025 KitchnTabs".into(),
            license: "proprietary".into(),
            license_text: "All rights reserved.\n\nRedistribution is not permitted.".into(),
        },
        glibc_floor: Some("2.34".into()),
        kiosk: kiosk.then(|| KioskService {
            user: "pi".into(),
            args: vec!["--no-sandbox".into()],
            display: ":0".into(),
        }),
        unattended: None,
        source_date_epoch: EPOCH,
    }
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        stand_in_app(&dir.path().join("linux-unpacked"));
        Fixture { dir }
    }
    fn unpacked(&self) -> PathBuf {
        self.dir.path().join("linux-unpacked")
    }
    fn spec(&self, arch: DebArch, kiosk: bool) -> DebSpec {
        let mut spec = electron_app_spec(&app(&self.unpacked(), arch, kiosk)).unwrap();
        spec.threads = 2;
        spec
    }
    fn out(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join("out");
        fs::create_dir_all(&d).unwrap();
        d.join(name)
    }
    fn build(&self, spec: &DebSpec, name: &str) -> (PathBuf, DebSummary) {
        let out = self.out(name);
        let summary = write_deb(spec, &out).unwrap();
        (out, summary)
    }
}

/// Every path the amd64 package must contain, as `dpkg-deb --contents` prints them.
fn expected_paths() -> BTreeSet<String> {
    let mut set: BTreeSet<String> = [
        "./",
        "./opt/",
        "./opt/KitchnTabs/",
        "./opt/KitchnTabs/chrome-sandbox",
        "./opt/KitchnTabs/kitchntabs",
        "./opt/KitchnTabs/libEGL.so",
        "./opt/KitchnTabs/libffmpeg.so",
        "./opt/KitchnTabs/libvulkan.so",
        "./opt/KitchnTabs/libvulkan.so.1",
        "./opt/KitchnTabs/locales/",
        "./opt/KitchnTabs/locales/de.pak",
        "./opt/KitchnTabs/locales/en-US.pak",
        "./opt/KitchnTabs/resources/",
        "./opt/KitchnTabs/resources/app.asar",
        "./opt/KitchnTabs/resources/app.asar.unpacked/",
        "./opt/KitchnTabs/resources/app.asar.unpacked/node_modules/",
        "./opt/KitchnTabs/resources/app.asar.unpacked/node_modules/@serialport/",
        "./opt/KitchnTabs/resources/app.asar.unpacked/node_modules/@serialport/bindings-cpp/",
        "./opt/KitchnTabs/resources/app.asar.unpacked/node_modules/@serialport/bindings-cpp/prebuilds/",
        "./opt/KitchnTabs/resources/app.asar.unpacked/node_modules/@serialport/bindings-cpp/prebuilds/linux-x64/",
        "./opt/KitchnTabs/resources/python-service/",
        "./opt/KitchnTabs/resources/python-service/config.yaml",
        "./opt/KitchnTabs/resources/python-service/kt_service",
        "./opt/KitchnTabs/resources/python-service/lib/",
        "./opt/KitchnTabs/resources/python-service/lib/serialport.node",
        "./opt/KitchnTabs/version",
        "./usr/",
        "./usr/share/",
        "./usr/share/applications/",
        "./usr/share/applications/kitchntabs.desktop",
        "./usr/share/doc/",
        "./usr/share/doc/kitchntabs/",
        "./usr/share/doc/kitchntabs/changelog.gz",
        "./usr/share/doc/kitchntabs/copyright",
        "./usr/share/icons/",
        "./usr/share/icons/hicolor/",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    set.insert(format!("./opt/KitchnTabs/{LONG_REL}"));
    for n in [16, 48, 256] {
        set.insert(format!("./usr/share/icons/hicolor/{n}x{n}/"));
        set.insert(format!("./usr/share/icons/hicolor/{n}x{n}/apps/"));
        set.insert(format!("./usr/share/icons/hicolor/{n}x{n}/apps/kitchntabs.png"));
    }
    set
}

/// `dpkg-deb --contents` lines: (mode string, owner, path, symlink target).
fn contents(deb: &Path) -> Vec<(String, String, String, Option<String>)> {
    run("dpkg-deb", "dpkg", &[&"--contents", &deb])
        .lines()
        .map(|line| {
            // drwxr-xr-x root/root         0 2023-11-14 22:13 ./opt/
            let rest: Vec<&str> = line.split_whitespace().collect();
            let path_and_link = rest[5..].join(" ");
            let (path, link) = match path_and_link.split_once(" -> ") {
                Some((p, l)) => (p.to_string(), Some(l.to_string())),
                None => (path_and_link, None),
            };
            (rest[0].to_string(), rest[1].to_string(), path, link)
        })
        .collect()
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------- format

#[test]
fn ar_members_in_dpkg_order_with_fixed_headers() {
    let fx = Fixture::new();
    let (deb, _) = fx.build(&fx.spec(DebArch::Amd64, false), "k.deb");
    assert_eq!(run("ar", "binutils", &[&"t", &deb]), "debian-binary\ncontrol.tar.xz\ndata.tar.xz\n");
    let tv = run("ar", "binutils", &[&"tv", &deb]);
    for line in tv.lines() {
        assert!(line.starts_with("rw-r--r-- 0/0 "), "{line}");
        assert!(line.contains("Nov 14 22:13 2023"), "{line}");
    }
    let bytes = fs::read(&deb).unwrap();
    assert_eq!(&bytes[..8], b"!<arch>\n");
    assert_eq!(&bytes[8..68], b"debian-binary   1700000000  0     0     100644  4         `\n");
    assert_eq!(&bytes[68..72], b"2.0\n");
    assert_eq!(run("ar", "binutils", &[&"p", &deb, &"debian-binary"]), "2.0\n");
}

#[test]
fn dpkg_deb_info_fields_are_exact() {
    let fx = Fixture::new();
    let (deb, summary) = fx.build(&fx.spec(DebArch::Amd64, false), "k.deb");
    let field = |name: &str| run("dpkg-deb", "dpkg", &[&"--field", &deb, &name]).trim_end().to_string();
    assert_eq!(field("Package"), "kitchntabs");
    assert_eq!(field("Version"), "1.0.19");
    assert_eq!(field("Architecture"), "amd64");
    assert_eq!(field("Maintainer"), "KitchnTabs Team <dev@kitchntabs.example>");
    assert_eq!(field("Installed-Size"), summary.installed_size_kib.to_string());
    assert_eq!(
        field("Depends"),
        "libc6 (>= 2.34), libgtk-3-0, libnotify4, libnss3, libxss1, libxtst6, xdg-utils, libatspi2.0-0, libuuid1, libsecret-1-0"
    );
    assert_eq!(field("Recommends"), "libappindicator3-1");
    assert_eq!(field("Section"), "misc");
    assert_eq!(field("Priority"), "optional");
    assert_eq!(field("Homepage"), "https://kitchntabs.example");
    assert_eq!(
        field("Description"),
        "kitchen display terminal for restaurants\n KitchnTabs shows incoming orders on a kitchen screen and prints\n tickets on thermal printers.\n .\n It runs on Raspberry Pi (armhf, arm64) and amd64."
    );
    let info = run("dpkg-deb", "dpkg", &[&"--info", &deb]);
    for member in ["control", "md5sums", "postinst", "postrm", "prerm"] {
        assert!(info.contains(&format!(" {member}")), "{member} missing from:\n{info}");
    }
    assert!(!info.contains("conffiles"), "no /etc files, so no conffiles:\n{info}");
    // dpkg-deb -I lists maintainer scripts as executable.
    assert!(info.lines().any(|l| l.contains("postinst") && l.contains("#!/bin/sh")), "{info}");
}

#[test]
fn contents_modes_and_owners() {
    let fx = Fixture::new();
    let (deb, summary) = fx.build(&fx.spec(DebArch::Amd64, false), "k.deb");
    let entries = contents(&deb);
    let paths: BTreeSet<String> = entries.iter().map(|e| e.2.clone()).collect();
    assert_eq!(paths, expected_paths());
    assert_eq!(entries.len() as u64, summary.entries);
    // Parents come before children, in tar order.
    let order: Vec<&String> = entries.iter().map(|e| &e.2).collect();
    for (i, p) in order.iter().enumerate() {
        let parent = match p.trim_end_matches('/').rsplit_once('/') {
            Some((parent, _)) if !parent.is_empty() && *p != "./" => format!("{parent}/"),
            _ => continue,
        };
        let pi = order.iter().position(|q| **q == parent).unwrap_or_else(|| panic!("no parent of {p}"));
        assert!(pi < i, "{parent} after {p}");
    }
    for (mode, owner, path, link) in &entries {
        assert_eq!(owner, "root/root", "{path}");
        let want = if path.ends_with('/') {
            "drwxr-xr-x"
        } else if link.is_some() {
            "lrwxrwxrwx"
        } else if ["kitchntabs", "chrome-sandbox", "libffmpeg.so", "libEGL.so", "kt_service", "node.napi.glibc.node"]
            .iter()
            .any(|exe| path.ends_with(&format!("/{exe}")))
        {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(mode, want, "{path}");
    }
    let link = entries.iter().find(|e| e.2.ends_with("/libvulkan.so")).unwrap();
    assert_eq!(link.3.as_deref(), Some("libvulkan.so.1"));
    // Every regular file is in md5sums; the summary counts them.
    let files = entries.iter().filter(|e| e.0.starts_with('-')).count() as u64;
    assert_eq!(files, summary.files);
}

#[test]
fn extract_recreates_tree_and_md5sums_verify() {
    let fx = Fixture::new();
    let (deb, summary) = fx.build(&fx.spec(DebArch::Amd64, false), "k.deb");
    let x = fx.dir.path().join("x");
    run("dpkg-deb", "dpkg", &[&"-x", &deb, &x]);
    let ctl = fx.dir.path().join("ctl");
    run("dpkg-deb", "dpkg", &[&"-e", &deb, &ctl]);
    let md5sums = fs::read_to_string(ctl.join("md5sums")).unwrap();
    assert_eq!(md5sums.lines().count() as u64, summary.files);
    assert!(md5sums.lines().all(|l| l.len() > 34 && &l[32..34] == "  " && !l[34..].starts_with('/')));
    let check = Command::new(require("md5sum", "coreutils"))
        .args(["-c", "--strict", "--quiet"])
        .arg(ctl.join("md5sums"))
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(check.status.success(), "md5sum -c: {}", String::from_utf8_lossy(&check.stdout));
    // Content and modes survive, the long path and the symlink included.
    let src = fx.unpacked();
    for rel in ["kitchntabs", "resources/app.asar", "locales/de.pak", LONG_REL] {
        assert_eq!(fs::read(src.join(rel)).unwrap(), fs::read(x.join("opt/KitchnTabs").join(rel)).unwrap(), "{rel}");
    }
    let exe = fs::metadata(x.join("opt/KitchnTabs/resources/python-service/kt_service")).unwrap();
    assert_eq!(exe.permissions().mode() & 0o7777, 0o755);
    let cfg = fs::metadata(x.join("opt/KitchnTabs/resources/python-service/config.yaml")).unwrap();
    assert_eq!(cfg.permissions().mode() & 0o7777, 0o644, "0600 in the source becomes 0644");
    let sandbox = fs::metadata(x.join("opt/KitchnTabs/chrome-sandbox")).unwrap();
    assert_eq!(sandbox.permissions().mode() & 0o7777, 0o755, "setuid is the postinst's call");
    assert_eq!(fs::read_link(x.join("opt/KitchnTabs/libvulkan.so")).unwrap(), PathBuf::from("libvulkan.so.1"));
    let long_link = x.join("opt/KitchnTabs/resources/python-service/lib/serialport.node");
    let target = fs::read_link(&long_link).unwrap();
    assert!(target.as_os_str().len() >= 100, "needs a 'K' LongLink record");
    assert_eq!(target, src.join("resources/python-service/lib/serialport.node").read_link().unwrap());
    assert_eq!(
        fs::read(&long_link).unwrap(),
        fs::read(src.join(LONG_REL)).unwrap(),
        "the long link resolves inside the package"
    );
    assert_eq!(
        fs::metadata(x.join("usr/share/doc/kitchntabs/changelog.gz")).unwrap().modified().unwrap(),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(EPOCH)
    );
    let desktop = fs::read_to_string(x.join("usr/share/applications/kitchntabs.desktop")).unwrap();
    assert_eq!(
        desktop,
        "[Desktop Entry]\nName=KitchnTabs\nExec=/opt/KitchnTabs/kitchntabs %U\nTerminal=false\n\
         Type=Application\nIcon=kitchntabs\nStartupWMClass=KitchnTabs\nComment=Kitchen display terminal\n\
         Categories=Office;\n"
    );
    // Installed-Size: files rounded up to KiB, 1 KiB per directory or symlink.
    let mut want = 0;
    for e in walkdir::WalkDir::new(&x) {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        want += if m.is_file() { m.len().div_ceil(1024) } else { 1 };
    }
    assert_eq!(summary.installed_size_kib, want);
}

#[test]
fn gz_inside_package_has_no_mtime_or_name() {
    let fx = Fixture::new();
    let (deb, _) = fx.build(&fx.spec(DebArch::Amd64, false), "k.deb");
    let x = fx.dir.path().join("x");
    run("dpkg-deb", "dpkg", &[&"-x", &deb, &x]);
    let gz = fs::read(x.join("usr/share/doc/kitchntabs/changelog.gz")).unwrap();
    assert_eq!(&gz[..3], b"\x1f\x8b\x08");
    assert_eq!(gz[3] & 0x08, 0, "FNAME flag set");
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "mtime not 0");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
    assert_eq!(
        text,
        "kitchntabs (1.0.19) stable; urgency=medium\n\n  * Release 1.0.19 of KitchnTabs.\n\n \
         -- KitchnTabs Team <dev@kitchntabs.example>  Tue, 14 Nov 2023 22:13:20 +0000\n"
    );
}

#[test]
fn armhf_differs_only_in_architecture() {
    let fx = Fixture::new();
    let (amd, _) = fx.build(&fx.spec(DebArch::Amd64, false), "amd64.deb");
    let (arm, _) = fx.build(&fx.spec(DebArch::Armhf, false), "armhf.deb");
    let control = |deb: &Path| run("dpkg-deb", "dpkg", &[&"--field", &deb]);
    assert_eq!(control(&amd).replace("Architecture: amd64", "Architecture: armhf"), control(&arm));
    assert_eq!(run("dpkg-deb", "dpkg", &[&"--field", &arm, &"Architecture"]), "armhf\n");
    let paths = |deb: &Path| contents(deb).into_iter().map(|e| e.2).collect::<Vec<_>>();
    assert_eq!(paths(&amd), paths(&arm));
}

#[test]
fn maintainer_scripts_parse_and_do_the_electron_steps() {
    let fx = Fixture::new();
    for kiosk in [false, true] {
        let spec = fx.spec(DebArch::Amd64, kiosk);
        for (name, script) in spec.scripts.present() {
            let path = fx.dir.path().join(format!("{name}-{kiosk}"));
            fs::write(&path, script).unwrap();
            run("dash", "dash", &[&"-n", &path]);
            assert!(script.contains("set -e"), "{name}");
        }
        let postinst = spec.scripts.postinst.as_deref().unwrap();
        assert!(postinst.contains(
            "update-alternatives --install '/usr/bin/kitchntabs' 'kitchntabs' '/opt/KitchnTabs/kitchntabs' 100 || ln -sf '/opt/KitchnTabs/kitchntabs' '/usr/bin/kitchntabs'"
        ));
        assert!(postinst.contains("unshare --user true"));
        assert!(postinst.contains("chmod 4755 '/opt/KitchnTabs/chrome-sandbox'"));
        assert!(postinst.contains("chmod 0755 '/opt/KitchnTabs/chrome-sandbox'"));
        assert!(postinst.contains("update-mime-database /usr/share/mime"));
        assert!(postinst.contains("update-desktop-database /usr/share/applications"));
        let prerm = spec.scripts.prerm.as_deref().unwrap();
        assert!(prerm.contains("update-alternatives --remove 'kitchntabs' '/opt/KitchnTabs/kitchntabs'"));
        let postrm = spec.scripts.postrm.as_deref().unwrap();
        assert!(postrm.contains("rm -f '/usr/bin/kitchntabs'"));
        assert_eq!(postinst.contains("kitchntabs-kiosk.service"), kiosk);
        if kiosk {
            assert!(postinst.contains("if [ -d /run/systemd/system ]; then\n        systemctl --system daemon-reload"));
            assert!(postinst.contains("deb-systemd-helper enable 'kitchntabs-kiosk.service'"));
            // Restarted on upgrade only (a running one): first install leaves it to the boot.
            assert!(postinst.contains(
                "if [ -n \"$2\" ]; then\n            deb-systemd-invoke try-restart 'kitchntabs-kiosk.service'"
            ));
        }
    }
}

#[test]
fn kiosk_unit_is_installed_when_asked() {
    let fx = Fixture::new();
    let (deb, _) = fx.build(&fx.spec(DebArch::Arm64, true), "kiosk.deb");
    let x = fx.dir.path().join("x");
    run("dpkg-deb", "dpkg", &[&"-x", &deb, &x]);
    let unit = fs::read_to_string(x.join("lib/systemd/system/kitchntabs-kiosk.service")).unwrap();
    assert_eq!(
        unit,
        "[Unit]\nDescription=KitchnTabs kiosk\nAfter=network.target\n\n[Service]\nType=simple\n\
         User=pi\nExecStart=/opt/KitchnTabs/kitchntabs --no-sandbox\nRestart=always\n\
         Environment=DISPLAY=:0\n\n[Install]\nWantedBy=multi-user.target\n"
    );
    let depends = run("dpkg-deb", "dpkg", &[&"--field", &deb, &"Depends"]);
    assert!(depends.contains("init-system-helpers (>= 1.54~)"), "{depends}");
}

#[test]
fn unattended_upgrades_origin_pattern_is_a_conffile() {
    let fx = Fixture::new();
    let mut app = app(&fx.unpacked(), DebArch::Amd64, false);
    app.unattended = Some(UnattendedOrigin { origin: "KitchnTabs".into(), suite: "stable".into() });
    let (deb, _) = fx.build(&electron_app_spec(&app).unwrap(), "uu.deb");
    let x = fx.dir.path().join("uu");
    run("dpkg-deb", "dpkg", &[&"-x", &deb, &x]);
    let conf = fs::read_to_string(x.join("etc/apt/apt.conf.d/52kitchntabs-unattended-upgrades")).unwrap();
    assert_eq!(
        conf,
        "// Installed by the package: new versions from its APT repository are installed\n\
         // unattended. Matched against the repository's Release file (Origin, Suite).\n\
         Unattended-Upgrade::Origins-Pattern {\n    \"origin=KitchnTabs,suite=stable\";\n};\n"
    );
    // apt itself parses it into the list unattended-upgrades reads.
    let parsed = run(
        "apt-config",
        "apt",
        &[&"-c", &x.join("etc/apt/apt.conf.d/52kitchntabs-unattended-upgrades"), &"dump", &"Unattended-Upgrade"],
    );
    assert!(parsed.contains("Unattended-Upgrade::Origins-Pattern:: \"origin=KitchnTabs,suite=stable\";"), "{parsed}");
    let ctl = fx.dir.path().join("uu-ctl");
    run("dpkg-deb", "dpkg", &[&"-e", &deb, &ctl]);
    assert_eq!(
        fs::read_to_string(ctl.join("conffiles")).unwrap(),
        "/etc/apt/apt.conf.d/52kitchntabs-unattended-upgrades\n"
    );
    let recommends = run("dpkg-deb", "dpkg", &[&"--field", &deb, &"Recommends"]);
    assert_eq!(recommends.trim(), "libappindicator3-1, unattended-upgrades");
    assert_lintian_clean(&deb);

    // A comma is escaped; what apt.conf or the glob syntax would read otherwise is refused.
    let comma = unattended_conf(&UnattendedOrigin { origin: "Kitchn, Inc.".into(), suite: "stable".into() }).unwrap();
    assert!(comma.contains("\"origin=Kitchn\\, Inc.,suite=stable\";"), "{comma}");
    for bad in ["Kitchn\"Tabs", "Kitchn*", "a;b", ""] {
        assert!(unattended_conf(&UnattendedOrigin { origin: bad.into(), suite: "stable".into() }).is_err(), "{bad}");
    }
}

#[test]
fn conffiles_list_files_under_etc() {
    let fx = Fixture::new();
    let mut spec = fx.spec(DebArch::Amd64, false);
    spec.entries.push(Entry::bytes("/etc/kitchntabs/config.yaml", "a: 1\n", 0o644));
    spec.entries.push(Entry::bytes("/etc/default/kitchntabs", "X=1\n", 0o644));
    let (deb, _) = fx.build(&spec, "etc.deb");
    let ctl = fx.dir.path().join("ctl");
    run("dpkg-deb", "dpkg", &[&"-e", &deb, &ctl]);
    assert_eq!(
        fs::read_to_string(ctl.join("conffiles")).unwrap(),
        "/etc/default/kitchntabs\n/etc/kitchntabs/config.yaml\n"
    );
    assert_eq!(fs::metadata(ctl.join("conffiles")).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(fs::metadata(ctl.join("postinst")).unwrap().permissions().mode() & 0o777, 0o755);
}

#[test]
fn setuid_bits_given_explicitly_are_kept() {
    let fx = Fixture::new();
    let mut spec = fx.spec(DebArch::Amd64, false);
    spec.entries.push(Entry::bytes("/opt/extra/helper", "#!/bin/sh\n", 0o4755));
    let (deb, _) = fx.build(&spec, "suid.deb");
    let entry = contents(&deb).into_iter().find(|e| e.2 == "./opt/extra/helper").unwrap();
    assert_eq!(entry.0, "-rwsr-xr-x");
}

// ---------------------------------------------------------------- lintian

/// Tags lintian 2.116 reports for any Electron app in /opt, with the reason we accept them.
/// Anything else (error or warning) fails the test.
const LINTIAN_ALLOWED: &[(&str, &str)] = &[
    (
        "dir-or-file-in-opt",
        "electron-builder installs the app under /opt/<ProductName>; kept for compatibility with installed devices",
    ),
    ("embedded-library", "Electron bundles its own libraries (ffmpeg, zlib inside libffmpeg.so, ...)"),
    ("shared-library-is-executable", "Electron ships libffmpeg.so, libEGL.so, ... with the execute bit"),
    (
        "initial-upload-closes-no-bugs",
        "non-native versions only: a private package is never uploaded to Debian, so no ITP bug",
    ),
];

fn lintian(deb: &Path) -> Vec<String> {
    let out = run_raw(
        "lintian",
        "lintian",
        &[&"--no-cfg", &"--display-level", &">=warning", &"--tag-display-limit", &"0", &deb],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // lintian(1): exit 0 = ran, 1 = lintian itself failed, 2 = a --fail-on tag was found
    // (errors by default). Tags are judged below, against the allow-list.
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "lintian failed to run:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().filter(|l| l.starts_with("E: ") || l.starts_with("W: ")).map(String::from).collect()
}

fn assert_lintian_clean(deb: &Path) {
    let hits = lintian(deb);
    let unexpected: Vec<&String> = hits
        .iter()
        .filter(|line| {
            // "E: kitchntabs: dir-or-file-in-opt [opt/KitchnTabs/]"
            let tag = line.split(": ").nth(2).unwrap_or("").split(' ').next().unwrap_or("");
            !LINTIAN_ALLOWED.iter().any(|(allowed, _)| *allowed == tag)
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "lintian found tags outside the allow-list:\n{}\n\nfull output:\n{}",
        unexpected.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        hits.join("\n")
    );
    println!("lintian {}:\n{}", deb.display(), hits.join("\n"));
}

#[test]
fn lintian_clean_amd64() {
    let fx = Fixture::new();
    let (deb, _) = fx.build(&fx.spec(DebArch::Amd64, false), "kitchntabs_1.0.19_amd64.deb");
    assert_lintian_clean(&deb);
}

/// The kiosk unit and a non-native version (changelog.Debian.gz). amd64, because the
/// stand-in tree holds x86-64 binaries: lintian rightly reports
/// `binary-from-other-architecture` for them in an armhf package.
#[test]
fn lintian_clean_kiosk_non_native() {
    let fx = Fixture::new();
    let mut app = app(&fx.unpacked(), DebArch::Amd64, true);
    app.version = "1.0.19-1".into();
    let spec = electron_app_spec(&app).unwrap();
    assert!(spec.entries.iter().any(|e| e.path == "/usr/share/doc/kitchntabs/changelog.Debian.gz"));
    let (deb, _) = fx.build(&spec, "kitchntabs_1.0.19-1_amd64.deb");
    assert_lintian_clean(&deb);
}

// ---------------------------------------------------------------- reproducibility

#[test]
fn two_builds_are_byte_identical() {
    let fx = Fixture::new();
    let spec = fx.spec(DebArch::Amd64, true);
    let (a, sa) = fx.build(&spec, "a.deb");
    let (b, sb) = fx.build(&spec, "b.deb");
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    assert_eq!(sa.sha256, sb.sha256);
    assert_eq!(sa.bytes, fs::metadata(&a).unwrap().len());
    let sha = run("sha256sum", "coreutils", &[&a]);
    assert!(sha.starts_with(&sa.sha256), "{sha} vs {}", sa.sha256);
}

#[test]
fn thread_count_does_not_change_bytes() {
    let fx = Fixture::new();
    for compression in [Compression::Xz { level: 6 }, Compression::Zstd { level: 19 }, Compression::Gzip { level: 9 }] {
        let mut spec = fx.spec(DebArch::Amd64, false);
        spec.compression = compression;
        spec.target_dpkg = DpkgVersion::BOOKWORM;
        spec.threads = 1;
        let (one, _) = fx.build(&spec, "t1.deb");
        spec.threads = 2;
        let (two, _) = fx.build(&spec, "t2.deb");
        spec.threads = 5;
        let (five, _) = fx.build(&spec, "t5.deb");
        let one = fs::read(one).unwrap();
        assert!(one == fs::read(two).unwrap(), "{compression:?}: 1 vs 2 threads differ");
        assert!(one == fs::read(five).unwrap(), "{compression:?}: 1 vs 5 threads differ");
    }
}

/// A data.tar of several xz blocks / zstd jobs is where the threads really work in
/// parallel; the bytes must still not depend on their number.
#[test]
fn multi_block_output_is_independent_of_threads() {
    let fx = Fixture::new();
    let big = fx.unpacked().join("resources/big.bin");
    let mut f = fs::File::create(&big).unwrap();
    for i in 0..40u64 {
        f.write_all(&pseudo_random(1 << 20, i + 1)[..]).unwrap();
    }
    drop(f);
    for compression in [Compression::Xz { level: 1 }, Compression::Zstd { level: 3 }] {
        let mut spec = fx.spec(DebArch::Amd64, false);
        spec.compression = compression;
        spec.target_dpkg = DpkgVersion::BOOKWORM;
        spec.threads = 1;
        let (one, _) = fx.build(&spec, "b1.deb");
        spec.threads = 2;
        let (two, _) = fx.build(&spec, "b2.deb");
        assert!(
            fs::read(&one).unwrap() == fs::read(&two).unwrap(),
            "{compression:?}: multi-block output differs by thread count"
        );
        run("dpkg-deb", "dpkg", &[&"--contents", &two]);
    }
    // The 40 MiB file is split into pieces of at most 16 MiB, each its own block, between
    // the blocks before and after it.
    let mut spec = fx.spec(DebArch::Amd64, false);
    spec.compression = Compression::Xz { level: 1 };
    let (deb, _) = fx.build(&spec, "blocks.deb");
    let data = fx.dir.path().join("data.tar.xz");
    fs::write(&data, run_raw("ar", "binutils", &[&"p", &deb, &"data.tar.xz"]).stdout).unwrap();
    let robot = run("xz", "xz-utils", &[&"--robot", &"--list", &data]);
    let blocks: u64 = robot
        .lines()
        .find(|l| l.starts_with("totals"))
        .and_then(|l| l.split('\t').nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read xz --list output:\n{robot}"));
    assert!(blocks >= 4, "expected >= 4 xz blocks, got {blocks}");
}

#[test]
fn source_mtimes_owners_and_walk_order_do_not_matter() {
    let fx = Fixture::new();
    let spec = fx.spec(DebArch::Amd64, false);
    let (before, _) = fx.build(&spec, "before.deb");
    // Touch, chown and re-mode the sources; reverse the entry order.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for e in walkdir::WalkDir::new(fx.unpacked()) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            fs::File::options().append(true).open(e.path()).unwrap().set_modified(later).unwrap();
            let _ = std::os::unix::fs::chown(e.path(), Some(1234), Some(5678));
            let mode = fs::metadata(e.path()).unwrap().permissions().mode();
            let new = if mode & 0o100 != 0 { 0o700 } else { 0o600 };
            fs::set_permissions(e.path(), fs::Permissions::from_mode(new)).unwrap();
        }
    }
    let mut spec = fx.spec(DebArch::Amd64, false);
    spec.entries.reverse();
    let (after, _) = fx.build(&spec, "after.deb");
    assert!(fs::read(before).unwrap() == fs::read(after).unwrap(), "source metadata leaked into the package");
}

// ---------------------------------------------------------------- compression

#[test]
fn xz_gzip_zstd_are_readable_by_dpkg_deb() {
    let fx = Fixture::new();
    let mut listings = Vec::new();
    for (compression, ext) in [
        (Compression::Xz { level: 6 }, "xz"),
        (Compression::Gzip { level: 9 }, "gz"),
        (Compression::Zstd { level: 19 }, "zst"),
    ] {
        let mut spec = fx.spec(DebArch::Amd64, false);
        spec.compression = compression;
        spec.target_dpkg = DpkgVersion::BOOKWORM;
        let (deb, _) = fx.build(&spec, &format!("k-{ext}.deb"));
        assert_eq!(run("ar", "binutils", &[&"t", &deb]), format!("debian-binary\ncontrol.tar.{ext}\ndata.tar.{ext}\n"));
        run("dpkg-deb", "dpkg", &[&"--info", &deb]);
        let x = fx.dir.path().join(format!("x-{ext}"));
        run("dpkg-deb", "dpkg", &[&"-x", &deb, &x]);
        listings.push(contents(&deb));
    }
    assert_eq!(listings[0], listings[1]);
    assert_eq!(listings[0], listings[2]);
}

#[test]
fn zstd_is_refused_for_bullseye() {
    let fx = Fixture::new();
    let mut spec = fx.spec(DebArch::Armhf, false);
    spec.compression = Compression::Zstd { level: 19 };
    spec.target_dpkg = DpkgVersion::BULLSEYE;
    let out = fx.out("zstd.deb");
    let err = write_deb(&spec, &out).unwrap_err().to_string();
    assert!(err.contains("DebSpec.compression") && err.contains("target_dpkg"), "{err}");
    assert!(err.contains("Compression::Xz"), "{err}");
    assert!(!out.exists());
}

#[test]
fn bad_levels_and_epoch_are_refused() {
    let fx = Fixture::new();
    let mut spec = fx.spec(DebArch::Amd64, false);
    spec.compression = Compression::Xz { level: 12 };
    assert!(write_deb(&spec, &fx.out("l.deb")).unwrap_err().to_string().contains("xz level 12"));
    let mut spec = fx.spec(DebArch::Amd64, false);
    spec.source_date_epoch = 0;
    assert!(write_deb(&spec, &fx.out("e.deb")).unwrap_err().to_string().contains("source_date_epoch"));
}

// ---------------------------------------------------------------- failure

fn assert_no_leftovers(dir: &Path, out: &Path) {
    assert!(!out.exists(), "{} exists after a failure", out.display());
    assert_eq!(list_dir(dir), Vec::<String>::new(), "temp files left in {}", dir.display());
}

#[test]
fn failure_midway_leaves_no_output_and_no_temp_files() {
    let fx = Fixture::new();
    let out_dir = fx.dir.path().join("out");
    let out = fx.out("k.deb");
    // A stale package from an earlier run must not survive a failed build either.
    fs::write(&out, b"old").unwrap();

    // 1. A file late in tar order disappears after the spec was made (open fails midway,
    //    after most of data.tar has gone through the compressor).
    let spec = fx.spec(DebArch::Amd64, false);
    let victim = fx.unpacked().join("version");
    let saved = fs::read(&victim).unwrap();
    fs::remove_file(&victim).unwrap();
    let err = format!("{:#}", write_deb(&spec, &out).unwrap_err());
    assert!(err.contains("version") && err.contains("cannot open"), "{err}");
    assert_no_leftovers(&out_dir, &out);
    fs::write(&victim, &saved).unwrap();

    // 2. Unreadable: a directory where a file was (root reads mode-000 files, so chmod
    //    alone cannot make a file unreadable for the test runner).
    fs::remove_file(&victim).unwrap();
    fs::create_dir(&victim).unwrap();
    let err = format!("{:#}", write_deb(&spec, &out).unwrap_err());
    assert!(err.contains("not a regular file"), "{err}");
    assert_no_leftovers(&out_dir, &out);
    fs::remove_dir(&victim).unwrap();

    // 3. chmod 000 where that does make it unreadable (not root).
    fs::write(&victim, &saved).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::File::open(&victim).is_err() {
        assert!(write_deb(&spec, &out).is_err());
        assert_no_leftovers(&out_dir, &out);
    }
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();

    // 4. A file that changed size after its header was planned (grows while packaged is
    //    the same path): simulated by giving the spec a size-changing source.
    let mut spec2 = fx.spec(DebArch::Amd64, false);
    spec2.entries.push(Entry::file("/opt/KitchnTabs/zz-proc", "/proc/self/status", 0o644));
    let err = format!("{:#}", write_deb(&spec2, &out).unwrap_err());
    assert!(err.contains("zz-proc"), "{err}");
    assert_no_leftovers(&out_dir, &out);

    // And the same spec succeeds once the tree is whole again.
    write_deb(&spec, &out).unwrap();
    assert_eq!(list_dir(&out_dir), ["k.deb"]);
}

#[test]
fn temp_file_is_removed_on_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k.deb");
    let result = std::panic::catch_unwind(|| {
        let (tmp, mut file) = output::TempFile::create(&out, "tmp").unwrap();
        file.write_all(b"half a package").unwrap();
        assert!(tmp.path().exists());
        panic!("simulated failure while writing");
    });
    assert!(result.is_err());
    assert_eq!(list_dir(dir.path()), Vec::<String>::new());
}

#[test]
fn bad_icon_is_refused_with_its_size() {
    let fx = Fixture::new();
    let mut a = app(&fx.unpacked(), DebArch::Amd64, false);
    a.icons = vec![(64, png(48))];
    let err = electron_app_spec(&a).unwrap_err().to_string();
    assert!(err.contains("64x64") && err.contains("48x48"), "{err}");
}

#[test]
fn app_tarball_is_reproducible_root_owned_and_keeps_symlinks() {
    let d = tempfile::tempdir().unwrap();
    let app = d.path().join("KitchnTabs.app");
    let macos = app.join("Contents/MacOS");
    fs::create_dir_all(&macos).unwrap();
    fs::write(macos.join("KitchnTabs"), b"\xcf\xfa\xed\xfe binary").unwrap();
    fs::set_permissions(macos.join("KitchnTabs"), fs::Permissions::from_mode(0o775)).unwrap();
    fs::write(app.join("Contents/Info.plist"), b"<plist/>").unwrap();
    symlink("MacOS/KitchnTabs", app.join("Contents/Current")).unwrap();
    let a = d.path().join("a.tar.gz");
    write_tar_gz(&app, &a, EPOCH).unwrap();
    // Other on-disk times and modes of the same content: the same bytes.
    fs::set_permissions(app.join("Contents/Info.plist"), fs::Permissions::from_mode(0o664)).unwrap();
    fs::write(app.join("Contents/Info.plist"), b"<plist/>").unwrap();
    let b = d.path().join("b.tar.gz");
    write_tar_gz(&app, &b, EPOCH).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    let out = Command::new("tar").args(["-tvzf"]).arg(&a).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{list}");
    assert!(list.lines().all(|l| l.contains(" root/root ") && l.contains(" 2023-11-14 ")), "{list}");
    assert!(
        list.contains("-rwxr-xr-x root/root") && list.contains("./KitchnTabs.app/Contents/MacOS/KitchnTabs"),
        "{list}"
    );
    assert!(list.contains("./KitchnTabs.app/Contents/Current -> MacOS/KitchnTabs"), "{list}");
    assert!(!list.lines().any(|l| l.ends_with(" ./")), "{list}");
    assert!(!d.path().join(".a.tar.gz.tmp").exists() && !d.path().join("a.tar.gz.tmp").exists());
}

/// A package that fails the verify pass never appears at its path, and leaves no temp file:
/// an arm64 library (the cross toolchain's libc) in an amd64 app.
#[test]
fn a_package_that_fails_verify_is_not_written() {
    let fx = Fixture::new();
    let foreign = Path::new("/usr/aarch64-linux-gnu/lib/libc.so.6");
    assert!(foreign.exists(), "{} is missing: apt-get install libc6-dev-arm64-cross", foreign.display());
    let planted = fx.unpacked().join("libforeign.so");
    fs::copy(foreign, &planted).unwrap();
    let out = fx.out("failed.deb");
    let mut spec = fx.spec(DebArch::Amd64, false);
    // As the deb step writes it: the binaries checked against the target.
    spec.verify = crate::deb::VerifyBinaries::Yes { glibc: None };
    let err = format!("{:#}", write_deb(&spec, &out).unwrap_err());
    assert!(err.contains("failed the verify pass") && err.contains("libforeign.so"), "{err}");
    assert!(!out.exists(), "{} was written", out.display());
    let left: Vec<_> = fs::read_dir(out.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "leftovers: {left:?}");
    // The same tree without it is a package.
    fs::remove_file(&planted).unwrap();
    let cache = fx.dir.path().join("blocks");
    let spec = DebSpec {
        verify: crate::deb::VerifyBinaries::Yes { glibc: None },
        xz_block_cache: Some(crate::deb::BlockCacheConfig { dir: cache.clone(), max_bytes: None }),
        ..fx.spec(DebArch::Amd64, false)
    };
    write_deb(&spec, &out).unwrap();
    assert!(out.exists());
    // Planted again with the cache warm: refused as it is, the cache kept (the package
    // decoded as written, so no cached block is to blame and no repack could help).
    fs::copy(foreign, &planted).unwrap();
    let cached = |dir: &Path| fs::read_dir(dir).unwrap().count();
    let entries = cached(&cache);
    assert!(entries > 0, "nothing cached in {}", cache.display());
    let spec =
        DebSpec { xz_block_cache: spec.xz_block_cache.clone(), verify: spec.verify, ..fx.spec(DebArch::Amd64, false) };
    let err = format!("{:#}", write_deb(&spec, &out).unwrap_err());
    assert!(err.contains("libforeign.so") && !err.contains("again"), "{err}");
    assert!(!out.exists(), "the refused package replaced nothing, and left nothing");
    // The planted file's block is added; none of the others is removed.
    assert!(cached(&cache) >= entries, "the block cache was purged for a tree at fault");
}
