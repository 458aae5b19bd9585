//! Fixtures built by the tests themselves: real compilers, real objcopy, real
//! dpkg-deb. A missing tool fails the test with the apt-get line to fix it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::verify::{Check, Finding, InputError, Report, Severity, Target};

pub const APT: &str = "apt-get install -y gcc gcc-arm-linux-gnueabihf gcc-arm-linux-gnueabi \
                       gcc-aarch64-linux-gnu binutils-arm-linux-gnueabihf binutils dpkg-dev lintian";

/// A C program that passes doubles around, so hard-float builds carry
/// Tag_ABI_VFP_args = 1.
pub const HELLO_C: &str = r#"
#include <stdio.h>
double scale(double x) { return x * 2.5; }
int main(int argc, char **argv) { (void)argv; printf("%f\n", scale(argc)); return 0; }
"#;

/// Shared-library source without libc headers (works with -nostdlib too).
pub const LIB_C: &str = "double lib_scale(double x) { return x * 3.0; }\nint lib_inc(int x) { return x + 1; }\n";

/// Needs arc4random, which glibc exports as GLIBC_2.36 (Debian 12's glibc).
pub const NEW_GLIBC_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(void) { printf("%u\n", arc4random()); return 0; }
"#;

pub fn run_tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} cannot run ({err}); install the toolchain: {APT}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n(tools come from: {APT})",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn target(name: &str) -> Target {
    Target::from_arch_name(name).unwrap_or_else(|| panic!("unknown arch {name}"))
}

/// A scratch directory plus builders for the fixtures a test needs.
pub struct Fx {
    pub dir: tempfile::TempDir,
}

impl Fx {
    pub fn new() -> Fx {
        Fx { dir: tempfile::Builder::new().prefix("verify-test-").tempdir().expect("temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Compile `source` (C, or assembly when `name` ends in .s) with `cc`.
    pub fn cc(&self, cc: &str, out: &str, source: &str, ext: &str, args: &[&str]) -> PathBuf {
        let src = self.write(&format!("{out}.src.{ext}"), source.as_bytes());
        let dst = self.path(out);
        let mut all: Vec<&str> = args.to_vec();
        let (src_s, dst_s) = (src.to_str().unwrap().to_string(), dst.to_str().unwrap().to_string());
        all.extend(["-o", &dst_s, &src_s]);
        run_tool(cc, &all);
        dst
    }

    pub fn armhf_dyn(&self) -> PathBuf {
        self.cc("arm-linux-gnueabihf-gcc", "armhf-dyn", HELLO_C, "c", &["-O2"])
    }
    pub fn armhf_static(&self) -> PathBuf {
        self.cc("arm-linux-gnueabihf-gcc", "armhf-static", HELLO_C, "c", &["-O2", "-static"])
    }
    pub fn armel_dyn(&self) -> PathBuf {
        self.cc("arm-linux-gnueabi-gcc", "armel-dyn", HELLO_C, "c", &["-O2"])
    }
    pub fn arm64_dyn(&self) -> PathBuf {
        self.cc("aarch64-linux-gnu-gcc", "arm64-dyn", HELLO_C, "c", &["-O2"])
    }
    pub fn arm64_static(&self) -> PathBuf {
        self.cc("aarch64-linux-gnu-gcc", "arm64-static", HELLO_C, "c", &["-O2", "-static"])
    }
    pub fn x64_dyn(&self) -> PathBuf {
        self.cc("gcc", "x64-dyn", HELLO_C, "c", &["-O2"])
    }
    pub fn x64_static(&self) -> PathBuf {
        self.cc("gcc", "x64-static", HELLO_C, "c", &["-O2", "-static"])
    }
    pub fn x64_new_glibc(&self) -> PathBuf {
        self.cc("gcc", "x64-newglibc", NEW_GLIBC_C, "c", &["-O2"])
    }
    /// DT_RELR packing makes the linker require GLIBC_ABI_DT_RELR.
    pub fn x64_relr(&self) -> PathBuf {
        self.cc("gcc", "x64-relr", HELLO_C, "c", &["-O2", "-Wl,-z,pack-relative-relocs"])
    }
    pub fn so(&self, cc: &str, name: &str) -> PathBuf {
        self.cc(cc, name, LIB_C, "c", &["-O2", "-shared", "-fPIC"])
    }
    pub fn armhf_so(&self) -> PathBuf {
        self.so("arm-linux-gnueabihf-gcc", "libarmhf.so")
    }
    pub fn arm64_so(&self) -> PathBuf {
        self.so("aarch64-linux-gnu-gcc", "libarm64.so")
    }
    pub fn x64_so(&self) -> PathBuf {
        self.so("gcc", "libx64.so")
    }
    /// A Node native module is just a shared library with another name.
    pub fn x64_node(&self) -> PathBuf {
        self.so("gcc", "addon.node")
    }
    /// softfp on the hard-float toolchain: the linker marks it EF_ARM_ABI_FLOAT_SOFT.
    pub fn armhf_softfp_so(&self) -> PathBuf {
        self.cc(
            "arm-linux-gnueabihf-gcc",
            "libsoftfp.so",
            LIB_C,
            "c",
            &["-O2", "-shared", "-fPIC", "-nostdlib", "-mfloat-abi=softfp"],
        )
    }
    /// Tag_ABI_VFP_args = 3 ("compatible with both").
    pub fn armhf_vfp3_so(&self) -> PathBuf {
        let asm = ".syntax unified\n.eabi_attribute 28, 3\n.text\n.global g\n.type g, %function\ng:\n  bx lr\n";
        self.cc("arm-linux-gnueabihf-gcc", "libvfp3.so", asm, "s", &["-shared", "-nostdlib"])
    }
    /// A program linked against a library whose version nodes are named like glibc's:
    /// GLIBC_PRIVATE, GLIBC_9.99 and GLIBC_WEIRD (vn_file libfake.so.1).
    pub fn x64_fake_glibc(&self) -> PathBuf {
        let map = self.write(
            "fake.map",
            b"GLIBC_PRIVATE { global: fake_private; local: *; };\nGLIBC_9.99 { global: fake_new; };\nGLIBC_WEIRD { global: fake_weird; };\n",
        );
        let lib = self.cc(
            "gcc",
            "libfake.so.1",
            "int fake_private(void){return 1;}\nint fake_new(void){return 2;}\nint fake_weird(void){return 3;}\n",
            "c",
            &["-shared", "-fPIC", &format!("-Wl,--version-script={}", map.display()), "-Wl,-soname,libfake.so.1"],
        );
        // The library must come after the source on the link line.
        let src = self.write(
            "x64-fakeglibc.c",
            b"int fake_private(void);int fake_new(void);int fake_weird(void);\nint main(void){return fake_private()+fake_new()+fake_weird();}\n",
        );
        let out = self.path("x64-fakeglibc");
        run_tool("gcc", &["-o", out.to_str().unwrap(), src.to_str().unwrap(), lib.to_str().unwrap()]);
        out
    }

    /// Copy `src` to `name` with `edit` applied to its bytes.
    pub fn patched(&self, src: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut bytes = std::fs::read(src).unwrap();
        edit(&mut bytes);
        self.write(name, &bytes)
    }

    pub fn set_exec(&self, path: &Path, exec: bool) {
        use std::os::unix::fs::PermissionsExt;
        let mode = if exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Default for Fx {
    fn default() -> Self {
        Fx::new()
    }
}

/// Set the 32-bit ELF e_flags (little-endian, offset 36).
pub fn set_e_flags32(bytes: &mut [u8], flags: u32) {
    bytes[36..40].copy_from_slice(&flags.to_le_bytes());
}

pub fn read_u32_le(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

pub fn read_u64_le(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Verify inputs that must all be readable.
pub fn verify(paths: &[&Path], target: &Target) -> Report {
    let (report, errors) = verify_all(paths, target, false);
    assert!(errors.is_empty(), "unexpected input errors: {errors:#?}");
    report
}

/// Verify every input: the report, and the inputs (or files in them) that could not be read.
pub fn verify_all(paths: &[&Path], target: &Target, allow_empty: bool) -> (Report, Vec<InputError>) {
    let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
    let report = crate::verify::verify_paths(&paths, target, crate::verify::Options { allow_empty });
    let errors = report.input_errors.clone();
    (report, errors)
}

/// The one input error reading `path` gives.
pub fn input_error(path: &Path, target: &Target) -> InputError {
    let (report, mut errors) = verify_all(&[path], target, false);
    assert_eq!(errors.len(), 1, "expected one input error, got {errors:#?} and:\n{}", report.render_table());
    errors.remove(0)
}

/// The checks of the report's findings, as their JSON names.
pub fn checks(report: &Report) -> Vec<&'static str> {
    report.findings.iter().map(|f| f.check.as_str()).collect()
}

/// Run a tool and return its stdout; a failure names the tool and its stderr.
pub fn tool_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} cannot run ({err}); install the toolchain: {APT}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The single finding of the report, whatever it is; fails listing all otherwise.
pub fn only(report: &Report) -> &Finding {
    assert_eq!(report.findings.len(), 1, "expected exactly one finding, got:\n{}", report.render_table());
    &report.findings[0]
}

pub fn assert_clean(report: &Report) {
    assert!(report.findings.is_empty(), "expected no findings, got:\n{}", report.render_table());
}

/// Assert one finding's check, severity, expected and found (found: exact).
pub fn assert_finding(f: &Finding, check: Check, severity: Severity, expected: &str, found: &str) {
    assert_eq!(f.check, check, "check of {f:#?}");
    assert_eq!(f.severity, severity, "severity of {f:#?}");
    assert_eq!(f.expected, expected, "expected of {f:#?}");
    assert_eq!(f.found, found, "found of {f:#?}");
}

// ------------------------------------------------------------ PyInstaller

pub struct PkgEntry {
    pub name: &'static str,
    pub typecode: u8,
    pub data: Vec<u8>,
    pub compress: bool,
}

/// Where things landed in a synthetic package (offsets from the package start).
#[derive(Debug, Clone)]
pub struct PkgLayout {
    pub data_offsets: Vec<usize>,
    pub stored_lengths: Vec<usize>,
    pub toc_offset: usize,
    pub records: Vec<usize>,
    pub cookie: usize,
    pub len: usize,
}

pub const COOKIE_MAGIC: [u8; 8] = [0x4D, 0x45, 0x49, 0x0C, 0x0B, 0x0A, 0x0B, 0x0E];

/// A CArchive laid out as PyInstaller 6 writes it: entry data, TOC (records
/// padded to 16 bytes), 88-byte big-endian cookie.
pub fn build_package(entries: &[PkgEntry], python_version: u32, libname: &str) -> (Vec<u8>, PkgLayout) {
    let mut pkg = Vec::new();
    let mut layout =
        PkgLayout { data_offsets: vec![], stored_lengths: vec![], toc_offset: 0, records: vec![], cookie: 0, len: 0 };
    let mut stored = Vec::new();
    for e in entries {
        let bytes = if e.compress {
            let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&e.data).unwrap();
            enc.finish().unwrap()
        } else {
            e.data.clone()
        };
        layout.data_offsets.push(pkg.len());
        layout.stored_lengths.push(bytes.len());
        stored.push(bytes.len());
        pkg.extend_from_slice(&bytes);
    }
    layout.toc_offset = pkg.len();
    for (i, e) in entries.iter().enumerate() {
        let name_len = e.name.len() + 1;
        let entry_len = (18 + name_len).div_ceil(16) * 16;
        layout.records.push(pkg.len());
        pkg.extend_from_slice(&(entry_len as u32).to_be_bytes());
        pkg.extend_from_slice(&(layout.data_offsets[i] as u32).to_be_bytes());
        pkg.extend_from_slice(&(stored[i] as u32).to_be_bytes());
        pkg.extend_from_slice(&(e.data.len() as u32).to_be_bytes());
        pkg.push(u8::from(e.compress));
        pkg.push(e.typecode);
        pkg.extend_from_slice(e.name.as_bytes());
        pkg.resize(pkg.len() + entry_len - 18 - e.name.len(), 0);
    }
    let toc_len = pkg.len() - layout.toc_offset;
    layout.cookie = pkg.len();
    let pkg_len = pkg.len() + 88;
    pkg.extend_from_slice(&COOKIE_MAGIC);
    pkg.extend_from_slice(&(pkg_len as u32).to_be_bytes());
    pkg.extend_from_slice(&(layout.toc_offset as u32).to_be_bytes());
    pkg.extend_from_slice(&(toc_len as u32).to_be_bytes());
    pkg.extend_from_slice(&python_version.to_be_bytes());
    let mut name = libname.as_bytes().to_vec();
    name.resize(64, 0);
    pkg.extend_from_slice(&name);
    layout.len = pkg.len();
    (pkg, layout)
}

/// A synthetic one-file app: an x86_64 "bootloader" with the package in a
/// `pydata` section, holding one aarch64 library (the foreign one), one x86_64
/// library, a data file, a runtime option and a PYZ.
pub struct PyiApp {
    pub path: PathBuf,
    pub layout: PkgLayout,
    /// File offset of the package (= the pydata section's offset).
    pub pkg_start: usize,
}

pub fn pyi_entries(fx: &Fx) -> Vec<PkgEntry> {
    vec![
        PkgEntry { name: "pyi-runtime-option", typecode: b'o', data: vec![], compress: false },
        PkgEntry { name: "libforeign.so", typecode: b'b', data: std::fs::read(fx.arm64_so()).unwrap(), compress: true },
        PkgEntry {
            name: "lib-dynload/_native.cpython-311-x86_64-linux-gnu.so",
            typecode: b'b',
            data: std::fs::read(fx.x64_so()).unwrap(),
            compress: true,
        },
        PkgEntry {
            name: "certifi/cacert.pem",
            typecode: b'x',
            data: b"-----BEGIN CERTIFICATE-----\n".repeat(40),
            compress: true,
        },
        PkgEntry { name: "PYZ.pyz", typecode: b'z', data: b"PYZ\0".repeat(64), compress: false },
    ]
}

pub fn pyi_app(fx: &Fx) -> PyiApp {
    let entries = pyi_entries(fx);
    let (pkg, layout) = build_package(&entries, 311, "libpython3.11.so.1.0");
    let pkg_path = fx.write("pkg.bin", &pkg);
    let boot = fx.cc("gcc", "bootloader", HELLO_C, "c", &["-O2"]);
    let out = fx.path("pyapp");
    run_tool(
        "objcopy",
        &["--add-section", &format!("pydata={}", pkg_path.display()), boot.to_str().unwrap(), out.to_str().unwrap()],
    );
    let bytes = std::fs::read(&out).unwrap();
    let pydata = crate::verify::elf::inspect(&bytes).unwrap().pydata.expect("pydata section");
    assert_eq!(pydata.len(), pkg.len(), "objcopy stores the package as is");
    PyiApp { path: out, layout, pkg_start: pydata.start }
}

/// The same package appended to the executable (Windows/macOS style, no section).
pub fn pyi_appended(fx: &Fx) -> (PathBuf, PkgLayout, usize) {
    let entries = pyi_entries(fx);
    let (pkg, layout) = build_package(&entries, 311, "libpython3.11.so.1.0");
    let boot = std::fs::read(fx.cc("gcc", "bootloader-app", HELLO_C, "c", &["-O2"])).unwrap();
    let start = boot.len();
    let mut all = boot;
    all.extend_from_slice(&pkg);
    (fx.write("pyapp-appended", &all), layout, start)
}

// ------------------------------------------------------------ .deb

/// A package tree for dpkg-deb: DEBIAN/control plus `files` (path, bytes, mode).
pub fn deb_tree(fx: &Fx, name: &str, arch: &str, files: &[(&str, Vec<u8>, u32)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = fx.path(name);
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: kt-test\nVersion: 1.0.19\nArchitecture: {arch}\nMaintainer: Test <test@example.com>\n\
             Description: verify fixture\n fixture package for the verify tests\n"
        ),
    )
    .unwrap();
    for (path, bytes, mode) in files {
        let dst = root.join(path);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::write(&dst, bytes).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    root
}

/// dpkg-deb --build --root-owner-group with compressor `z` (xz, gzip, zstd, none).
pub fn dpkg_build(fx: &Fx, root: &Path, z: &str) -> PathBuf {
    let out = fx.path(&format!("{}-{z}.deb", root.file_name().unwrap().to_string_lossy()));
    run_tool(
        "dpkg-deb",
        &["--root-owner-group", &format!("-Z{z}"), "--build", root.to_str().unwrap(), out.to_str().unwrap()],
    );
    out
}

/// Write an ar archive with the `ar` crate: members in order.
pub fn write_ar(path: &Path, members: &[(&str, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut builder = ar::Builder::new(file);
    for (name, data) in members {
        let mut header = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
        header.set_mode(0o100644);
        header.set_mtime(1_700_000_000);
        builder.append(&header, data.as_slice()).unwrap();
    }
}

/// A tar with regular files whose names are written raw into the header, so
/// names the tar crate would refuse (`./../evil`, `/etc/x`) can be made.
pub fn raw_tar(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        {
            let raw = header.as_old_mut();
            raw.name.fill(0);
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn control_tar_gz(arch: &str) -> Vec<u8> {
    let control =
        format!("Package: evil\nVersion: 1\nArchitecture: {arch}\nMaintainer: T <t@example.com>\nDescription: x\n y\n");
    gzip(&raw_tar(&[("./control", control.as_bytes(), 0o644)]))
}

// ------------------------------------------------------------ Mach-O

pub const CPU_ARM64: u32 = 0x0100_000c;
pub const CPU_X86_64: u32 = 0x0100_0007;

/// A minimal thin 64-bit Mach-O header (MH_EXECUTE, no load commands).
pub fn macho_thin(cputype: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for word in [0xfeed_facfu32, cputype, 0, 2, 0, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

/// A fat (universal) file with one thin slice per CPU type.
pub fn macho_fat(cputypes: &[u32]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xcafe_babeu32.to_be_bytes());
    v.extend_from_slice(&(cputypes.len() as u32).to_be_bytes());
    let first = 8 + 20 * cputypes.len();
    let offset = |i: usize| (first.div_ceil(64) * 64 + i * 64) as u32;
    for (i, &cpu) in cputypes.iter().enumerate() {
        for word in [cpu, 0, offset(i), 32, 6] {
            v.extend_from_slice(&word.to_be_bytes());
        }
    }
    for (i, &cpu) in cputypes.iter().enumerate() {
        v.resize(offset(i) as usize, 0);
        v.extend_from_slice(&macho_thin(cpu));
    }
    v
}
