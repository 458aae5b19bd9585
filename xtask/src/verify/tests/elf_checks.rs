//! Per-object rules on real cross-compiled binaries.

use super::common::*;
use crate::verify::{Check, Severity};

const HF_FIX: &str = "rebuild with the arm-linux-gnueabihf toolchain (hard-float calling convention)";
const HF_EXPECTED: &str = "hard-float: e_flags 0x400, or Tag_ABI_VFP_args 1 or 3";
const SF_EXPECTED: &str = "soft-float: e_flags 0x200, or Tag_ABI_VFP_args 0 or 3";

#[test]
fn armhf_dynamic_and_static_pass_on_armv7l() {
    let fx = Fx::new();
    let t = target("armv7l").with_glibc_floor(2, 36);
    let report = verify(&[&fx.armhf_dyn(), &fx.armhf_static(), &fx.armhf_so()], &t);
    assert_clean(&report);
    assert_eq!(report.elfs_checked, 3);
    assert_eq!(report.files_checked, 3);
}

#[test]
fn armhf_facts_match_reference() {
    let fx = Fx::new();
    let bytes = std::fs::read(fx.armhf_dyn()).unwrap();
    let info = crate::verify::elf::inspect(&bytes).unwrap();
    assert_eq!(info.flags, 0x0500_0400);
    assert_eq!(info.machine, 40);
    assert_eq!(info.vfp_args, crate::verify::elf::VfpArgs::Value(1));
    assert_eq!(info.interpreter.as_deref(), Some("/lib/ld-linux-armhf.so.3"));
    let st = std::fs::read(fx.armhf_static()).unwrap();
    let st = crate::verify::elf::inspect(&st).unwrap();
    assert_eq!(st.interpreter, None, "static binaries have no PT_INTERP");
    assert!(st.version_needs.is_empty());
}

#[test]
fn armel_on_armhf_fails_float_and_interpreter() {
    let fx = Fx::new();
    let report = verify(&[&fx.armel_dyn()], &target("armv7l"));
    assert_eq!(report.findings.len(), 2, "{}", report.render_table());
    let float = report.with_check(Check::FloatAbi)[0];
    assert_finding(float, Check::FloatAbi, Severity::Error, HF_EXPECTED, "soft-float (e_flags 0x05000200)");
    assert_eq!(float.fix, HF_FIX);
    let interp = report.with_check(Check::Interpreter)[0];
    assert_finding(interp, Check::Interpreter, Severity::Error, "/lib/ld-linux-armhf.so.3", "/lib/ld-linux.so.3");
}

#[test]
fn armhf_on_armel_fails_float_and_interpreter() {
    let fx = Fx::new();
    let report = verify(&[&fx.armhf_dyn()], &target("armel"));
    assert_eq!(report.findings.len(), 2, "{}", report.render_table());
    assert_finding(
        report.with_check(Check::FloatAbi)[0],
        Check::FloatAbi,
        Severity::Error,
        SF_EXPECTED,
        "hard-float (e_flags 0x05000400)",
    );
    assert_finding(
        report.with_check(Check::Interpreter)[0],
        Check::Interpreter,
        Severity::Error,
        "/lib/ld-linux.so.3",
        "/lib/ld-linux-armhf.so.3",
    );
}

#[test]
fn softfp_library_fails_on_armhf() {
    let fx = Fx::new();
    let report = verify(&[&fx.armhf_softfp_so()], &target("armv7l"));
    assert_finding(only(&report), Check::FloatAbi, Severity::Error, HF_EXPECTED, "soft-float (e_flags 0x05000200)");
}

#[test]
fn neither_float_bit_falls_back_to_tag_abi_vfp_args() {
    let fx = Fx::new();
    // Hard-float binary with the flag bits cleared: Tag_ABI_VFP_args = 1 decides.
    let hf = fx.patched(&fx.armhf_dyn(), "hf-noflags", |b| set_e_flags32(b, 0x0500_0000));
    assert_clean(&verify(&[&hf], &target("armv7l")));
    let report = verify(&[&hf], &target("armel"));
    assert_finding(
        report.with_check(Check::FloatAbi)[0],
        Check::FloatAbi,
        Severity::Error,
        SF_EXPECTED,
        "neither float bit in e_flags 0x05000000; Tag_ABI_VFP_args = 1",
    );

    // softfp library with the bits cleared: the tag is absent, AEABI default 0 = soft.
    let soft = fx.patched(&fx.armhf_softfp_so(), "softfp-noflags.so", |b| set_e_flags32(b, 0x0500_0000));
    let report = verify(&[&soft], &target("armv7l"));
    assert_finding(
        only(&report),
        Check::FloatAbi,
        Severity::Error,
        HF_EXPECTED,
        "neither float bit in e_flags 0x05000000; Tag_ABI_VFP_args absent (AEABI default 0: soft-float arguments)",
    );
    assert_clean(&verify(&[&soft], &target("armel")));

    // Tag_ABI_VFP_args = 3: compatible with both conventions.
    let vfp3 = fx.patched(&fx.armhf_vfp3_so(), "vfp3-noflags.so", |b| set_e_flags32(b, 0x0500_0000));
    let bytes = std::fs::read(&vfp3).unwrap();
    assert_eq!(crate::verify::elf::inspect(&bytes).unwrap().vfp_args, crate::verify::elf::VfpArgs::Value(3));
    assert_clean(&verify(&[&vfp3], &target("armv7l")));
    assert_clean(&verify(&[&vfp3], &target("armel")));
}

#[test]
fn no_float_bits_and_no_attributes_is_a_warning() {
    let fx = Fx::new();
    let stripped = fx.path("hf-noattrs");
    run_tool(
        "arm-linux-gnueabihf-objcopy",
        &["--remove-section", ".ARM.attributes", fx.armhf_dyn().to_str().unwrap(), stripped.to_str().unwrap()],
    );
    let patched = fx.patched(&stripped, "hf-noattrs-noflags", |b| set_e_flags32(b, 0x0500_0000));
    let report = verify(&[&patched], &target("armv7l"));
    assert_finding(
        only(&report),
        Check::FloatAbi,
        Severity::Warning,
        HF_EXPECTED,
        "neither float bit in e_flags 0x05000000 and no .ARM.attributes: float ABI unknown",
    );
    assert!(!report.has_errors());
}

#[test]
fn eabi_version_is_checked() {
    let fx = Fx::new();
    let v4 = fx.patched(&fx.armhf_dyn(), "eabi4", |b| set_e_flags32(b, 0x0400_0400));
    let report = verify(&[&v4], &target("armv7l"));
    assert_finding(
        only(&report),
        Check::ArmEabi,
        Severity::Warning,
        "EABI version 5 (e_flags 0x05000000)",
        "EABI version 4 (e_flags 0x04000400)",
    );
    let oabi = fx.patched(&fx.armhf_dyn(), "oabi", |b| set_e_flags32(b, 0x0000_0400));
    let report = verify(&[&oabi], &target("armv7l"));
    assert_finding(
        only(&report),
        Check::ArmEabi,
        Severity::Error,
        "EABI version 5 (e_flags 0x05000000)",
        "EABI version 0 (e_flags 0x00000400)",
    );
}

#[test]
fn arm64_binary_on_armv7l_is_a_machine_error_only() {
    let fx = Fx::new();
    let report = verify(&[&fx.arm64_dyn()], &target("armv7l").with_glibc_floor(2, 31));
    let f = only(&report);
    assert_finding(f, Check::Machine, Severity::Error, "ELF32 EM_ARM (40)", "ELF64 EM_AARCH64 (183)");
    assert!(f.fix.contains("armv7l"), "{}", f.fix);
}

#[test]
fn arm64_and_x64_pass_on_their_targets() {
    let fx = Fx::new();
    let t = target("arm64").with_glibc_floor(2, 36);
    assert_clean(&verify(&[&fx.arm64_dyn(), &fx.arm64_static(), &fx.arm64_so()], &t));
    let t = target("x64").with_glibc_floor(2, 36);
    assert_clean(&verify(&[&fx.x64_dyn(), &fx.x64_static(), &fx.x64_so(), &fx.x64_node()], &t));
}

#[test]
fn x64_binaries_on_arm64_are_machine_errors() {
    let fx = Fx::new();
    let report = verify(&[&fx.x64_static(), &fx.x64_node()], &target("arm64"));
    assert_eq!(report.findings.len(), 2, "{}", report.render_table());
    for f in &report.findings {
        assert_finding(f, Check::Machine, Severity::Error, "ELF64 EM_AARCH64 (183)", "ELF64 EM_X86_64 (62)");
    }
    assert!(report.findings.iter().any(|f| f.file.ends_with("addon.node")));
}

#[test]
fn armhf_library_on_arm64_is_a_machine_error() {
    let fx = Fx::new();
    let report = verify(&[&fx.armhf_so()], &target("arm64"));
    assert_finding(only(&report), Check::Machine, Severity::Error, "ELF64 EM_AARCH64 (183)", "ELF32 EM_ARM (40)");
}

#[test]
fn glibc_above_floor_names_library_and_versions() {
    let fx = Fx::new();
    let bin = fx.x64_new_glibc();
    let report = verify(&[&bin], &target("x64").with_glibc_floor(2, 31));
    let f = only(&report);
    assert_finding(
        f,
        Check::Glibc,
        Severity::Error,
        "GLIBC <= 2.31",
        "GLIBC 2.36 (GLIBC_2.36 from libc.so.6); over the floor: libc.so.6: GLIBC_2.34, GLIBC_2.36",
    );
    assert!(f.fix.contains("2.31"));
    // The same binary is fine on bookworm.
    assert_clean(&verify(&[&bin], &target("x64").with_glibc_floor(2, 36)));
    // No floor: not compared.
    assert_clean(&verify(&[&bin], &target("x64")));
}

#[test]
fn glibc_abi_dt_relr_counts_as_2_36() {
    let fx = Fx::new();
    let bin = fx.x64_relr();
    let report = verify(&[&bin], &target("x64").with_glibc_floor(2, 35));
    assert_finding(
        only(&report),
        Check::Glibc,
        Severity::Error,
        "GLIBC <= 2.35",
        "GLIBC 2.36 (GLIBC_ABI_DT_RELR from libc.so.6); over the floor: libc.so.6: GLIBC_ABI_DT_RELR",
    );
    assert_clean(&verify(&[&bin], &target("x64").with_glibc_floor(2, 36)));
}

#[test]
fn glibc_private_and_unknown_tags_are_warnings_not_compared() {
    let fx = Fx::new();
    let bin = fx.x64_fake_glibc();
    let report = verify(&[&bin], &target("x64").with_glibc_floor(2, 36));
    let tags = report.with_check(Check::GlibcTag);
    assert_eq!(tags.len(), 2, "{}", report.render_table());
    let found: Vec<&str> = tags.iter().map(|f| f.found.as_str()).collect();
    assert!(found.contains(
        &"GLIBC_PRIVATE from libfake.so.1 (glibc-internal interface: only a binary built with the very same glibc can use it)"
    ));
    assert!(found.contains(&"GLIBC_WEIRD from libfake.so.1 (version tag this tool does not know: not compared)"));
    assert!(tags.iter().all(|f| f.severity == Severity::Warning && f.expected == "public GLIBC_x.y versions"));
    // GLIBC_9.99 is a well-formed version: compared, and over any real floor.
    assert_finding(
        report.with_check(Check::Glibc)[0],
        Check::Glibc,
        Severity::Error,
        "GLIBC <= 2.36",
        "GLIBC 9.99 (GLIBC_9.99 from libfake.so.1); over the floor: libfake.so.1: GLIBC_9.99",
    );
    assert_eq!(report.findings.len(), 3);
    // Without a floor the tags are still reported.
    let report = verify(&[&bin], &target("x64"));
    assert_eq!(report.with_check(Check::GlibcTag).len(), 2);
    assert!(!report.has_errors());
}

#[test]
fn glibc_tag_parsing() {
    use crate::verify::elf::{GlibcTag, glibc_tag_version};
    assert_eq!(glibc_tag_version("GLIBC_2.2.5"), GlibcTag::Version(2, 2));
    assert_eq!(glibc_tag_version("GLIBC_2.34"), GlibcTag::Version(2, 34));
    assert_eq!(glibc_tag_version("GLIBC_ABI_DT_RELR"), GlibcTag::Version(2, 36));
    assert_eq!(glibc_tag_version("GLIBC_PRIVATE"), GlibcTag::Private);
    assert_eq!(glibc_tag_version("GLIBC_2.x"), GlibcTag::Unknown);
    assert_eq!(glibc_tag_version("GLIBC_"), GlibcTag::Unknown);
    assert_eq!(glibc_tag_version("GLIBCXX_3.4.30"), GlibcTag::NotGlibc);
    assert_eq!(glibc_tag_version("GCC_3.0"), GlibcTag::NotGlibc);
}

#[test]
fn explicit_non_binaries_are_errors() {
    let fx = Fx::new();
    let t = target("armv7l");
    let empty = fx.write("empty-bin", b"");
    assert_finding(
        only(&verify(&[&empty], &t)),
        Check::Empty,
        Severity::Error,
        "ELF32 EM_ARM (40) hard-float",
        "empty file (0 bytes)",
    );
    let lfs = fx.write(
        "lfs-bin",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n",
    );
    assert_finding(
        only(&verify(&[&lfs], &t)),
        Check::LfsPointer,
        Severity::Error,
        "ELF32 EM_ARM (40) hard-float",
        "Git LFS pointer (sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393, 12345 bytes)",
    );
    let script = fx.write("script", b"#!/bin/sh\necho hi\n");
    assert_finding(
        only(&verify(&[&script], &t)),
        Check::Format,
        Severity::Error,
        "ELF32 EM_ARM (40) hard-float",
        "script (#!/bin/sh)",
    );
    let text = fx.write("notes.txt", b"just some text\n");
    assert_finding(only(&verify(&[&text], &t)), Check::Format, Severity::Error, "ELF32 EM_ARM (40) hard-float", "text");
    let pe = fx.write("app.exe", b"MZ\x90\x00\x03\x00\x00\x00");
    assert_finding(
        only(&verify(&[&pe], &t)),
        Check::Format,
        Severity::Error,
        "ELF32 EM_ARM (40) hard-float",
        "PE/COFF (Windows) executable",
    );
}

#[test]
fn missing_path_is_an_input_error() {
    let err = input_error(std::path::Path::new("/nonexistent/verify-test"), &target("x64"));
    assert_eq!(err.kind, crate::verify::InputErrorKind::Io);
    assert_eq!(err.file, std::path::PathBuf::from("/nonexistent/verify-test"));
    assert!(err.to_string().starts_with("cannot read /nonexistent/verify-test: "), "{err}");
}

#[test]
fn macho_cpu_types_for_darwin_target() {
    let fx = Fx::new();
    let t = target("darwin-arm64");
    let arm = fx.write("arm64-thin", &macho_thin(CPU_ARM64));
    let x86 = fx.write("x86-thin", &macho_thin(CPU_X86_64));
    let universal = fx.write("universal", &macho_fat(&[CPU_X86_64, CPU_ARM64]));
    let x86_fat = fx.write("x86-fat", &macho_fat(&[CPU_X86_64]));
    assert_clean(&verify(&[&arm, &universal], &t));
    assert_finding(only(&verify(&[&x86], &t)), Check::MachoCpu, Severity::Error, "Mach-O arm64", "Mach-O x86_64");
    assert_finding(
        only(&verify(&[&x86_fat], &t)),
        Check::MachoCpu,
        Severity::Error,
        "Mach-O slice arm64",
        "Mach-O universal with slices x86_64",
    );
    // An ELF given for a mac release is the wrong format.
    let elf = fx.x64_dyn();
    assert_finding(only(&verify(&[&elf], &t)), Check::Format, Severity::Error, "Mach-O arm64", "ELF64 EM_X86_64 (62)");
    // And a Mach-O given for Linux.
    assert_finding(
        only(&verify(&[&arm], &target("arm64"))),
        Check::Format,
        Severity::Error,
        "ELF64 EM_AARCH64 (183)",
        "Mach-O arm64",
    );
}

/// A bare ELF header (no program or section headers), enough for the
/// ident/class/machine rules.
fn bare_header(class64: bool, big_endian: bool, machine: u16) -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F', if class64 { 2 } else { 1 }, if big_endian { 2 } else { 1 }, 1];
    h.resize(16, 0);
    let put16 =
        |h: &mut Vec<u8>, v: u16| h.extend_from_slice(&if big_endian { v.to_be_bytes() } else { v.to_le_bytes() });
    put16(&mut h, 3); // e_type ET_DYN
    put16(&mut h, machine);
    h.resize(if class64 { 64 } else { 52 }, 0);
    let (ehsize_at, flags_at) = if class64 { (52, 48) } else { (40, 36) };
    h[flags_at + 3] = if big_endian { 0 } else { 5 }; // EABI5 on little-endian
    h[flags_at + 1] = if big_endian { 0 } else { 4 }; // hard-float bit
    let ehsize = if class64 { 64u16 } else { 52 };
    let b = if big_endian { ehsize.to_be_bytes() } else { ehsize.to_le_bytes() };
    h[ehsize_at..ehsize_at + 2].copy_from_slice(&b);
    h
}

#[test]
fn class_and_endianness_on_minimal_headers() {
    let fx = Fx::new();
    let t = target("armv7l");
    let ok = fx.write("arm-bare", &bare_header(false, false, 40));
    assert_clean(&verify(&[&ok], &t));
    let armeb = fx.write("armeb-bare", &bare_header(false, true, 40));
    assert_finding(
        only(&verify(&[&armeb], &t)),
        Check::Endianness,
        Severity::Error,
        "little-endian (ELFDATA2LSB)",
        "big-endian (ELFDATA2MSB)",
    );
    let arm64class = fx.write("arm-elf64", &bare_header(true, false, 40));
    assert_finding(only(&verify(&[&arm64class], &t)), Check::Class, Severity::Error, "ELFCLASS32", "ELFCLASS64");
}

#[test]
fn arm_object_without_floating_point_passes_both_float_abis() {
    // The shape of glibc's crti.o / crtn.o in libc6-dev:armhf: EABI5, no float bit in
    // e_flags, .ARM.attributes without Tag_ABI_FP_number_model or Tag_ABI_VFP_args.
    let fx = Fx::new();
    let asm = ".syntax unified\n.arch armv7-a\n.fpu vfpv3-d16\n.section .init,\"ax\",%progbits\n.global _init\n_init:\n push {r3, lr}\n";
    let obj = fx.cc("arm-linux-gnueabihf-gcc", "crti.o", asm, "s", &["-c"]);
    let attrs = tool_output("readelf", &["-A", obj.to_str().unwrap()]);
    assert!(attrs.contains("Tag_FP_arch") && !attrs.contains("Tag_ABI_FP_number_model"), "{attrs}");
    assert!(!attrs.contains("Tag_ABI_VFP_args"), "{attrs}");
    assert!(tool_output("readelf", &["-h", obj.to_str().unwrap()]).contains("0x5000000, Version5 EABI"));
    assert_clean(&verify(&[&obj], &target("armv7l")));
    assert_clean(&verify(&[&obj], &target("armel")));
    // Floating point used, the argument convention unsaid: the AEABI default (soft) applies.
    let fp = fx.cc("arm-linux-gnueabihf-gcc", "fp.o", &format!("{asm}.eabi_attribute 23, 3\n"), "s", &["-c"]);
    assert!(tool_output("readelf", &["-A", fp.to_str().unwrap()]).contains("Tag_ABI_FP_number_model: IEEE 754"));
    assert_eq!(only(&verify(&[&fp], &target("armv7l"))).check, Check::FloatAbi);
}
