//! ELF inspection and the per-object rules: class, endianness, machine, ARM
//! EABI and float ABI, interpreter, glibc version needs.
//!
//! Reading is done in two layers. Our own bounds checks come first so that a
//! cut file is reported as `Truncated` with the offset that runs past the end
//! (object's errors are plain strings without offsets); object's low-level
//! `FileHeader` API then reads the structures.

pub mod macho;

use std::ops::Range;

use object::Endianness;
use object::elf as e;
use object::read::elf::{Dyn, FileHeader, ProgramHeader, SectionHeader};

use super::report::{Check, Issue, Severity};
use super::target::{BinFormat, ElfClass, FloatAbi, Target, machine_name};

pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
/// DT_FLAGS_1 bit of position-independent executables (static-pie ones have no PT_INTERP).
const DF_1_PIE: u64 = 0x0800_0000;
const EF_ARM_EABIMASK: u32 = 0xff00_0000;
const EF_ARM_ABI_FLOAT_SOFT: u32 = 0x200;
const EF_ARM_ABI_FLOAT_HARD: u32 = 0x400;
/// Tag_ABI_VFP_args in the "aeabi" build attributes.
const TAG_ABI_VFP_ARGS: u64 = 28;
/// Tag_ABI_FP_number_model: absent or 0 when the object uses no floating point.
const TAG_ABI_FP_NUMBER_MODEL: u64 = 23;

/// What was read from one ELF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub class: ElfClass,
    pub big_endian: bool,
    pub e_type: u16,
    pub machine: u16,
    pub flags: u32,
    /// PT_INTERP contents, without the NUL.
    pub interpreter: Option<String>,
    /// ARM only: Tag_ABI_VFP_args from `.ARM.attributes`.
    pub vfp_args: VfpArgs,
    /// ARM only: Tag_ABI_FP_number_model from `.ARM.attributes`, when present.
    pub fp_number_model: Option<u64>,
    /// Every (vn_file, vna_name) pair of `.gnu.version_r`.
    pub version_needs: Vec<VersionNeed>,
    /// File range of the `pydata` section (PyInstaller's archive on Linux).
    pub pydata: Option<Range<usize>>,
    /// DF_1_PIE is set in DT_FLAGS_1.
    pub pie: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfpArgs {
    /// No `.ARM.attributes` section (or not ARM).
    NoAttributes,
    /// Section present, tag absent: the AEABI default (0, base/soft variant) applies.
    Absent,
    Value(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionNeed {
    pub file: String,
    pub version: String,
}

impl ElfInfo {
    /// ET_EXEC, any object asking for a program interpreter (PIE executables are ET_DYN),
    /// or a static PIE (ET_DYN marked DF_1_PIE, no interpreter).
    pub fn is_executable(&self) -> bool {
        self.e_type == ET_EXEC || self.interpreter.is_some() || (self.e_type == ET_DYN && self.pie)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfErrorKind {
    /// A table or segment extends past the end of the data.
    Truncated,
    /// A field holds a value no valid ELF has.
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfError {
    pub kind: ElfErrorKind,
    /// Offset of the field or table the error is about.
    pub offset: u64,
    pub detail: String,
}

impl ElfError {
    fn truncated(offset: u64, detail: String) -> Self {
        ElfError { kind: ElfErrorKind::Truncated, offset, detail }
    }
    fn malformed(offset: u64, detail: String) -> Self {
        ElfError { kind: ElfErrorKind::Malformed, offset, detail }
    }

    pub fn into_issue(self) -> Issue {
        let (check, fix) = match self.kind {
            ElfErrorKind::Truncated => {
                (Check::Truncated, "the file was cut (interrupted copy, download or build step): rebuild or re-copy it")
            }
            ElfErrorKind::Malformed => {
                (Check::Malformed, "the file is corrupt: rebuild it and check the packaging step that wrote it")
            }
        };
        Issue {
            check,
            severity: Severity::Error,
            expected: "complete, well-formed ELF".to_string(),
            found: self.detail,
            fix: fix.to_string(),
            offset: Some(self.offset),
        }
    }
}

/// Read everything the rules need from an ELF object. `data` must start with `\x7fELF`
/// (a shorter prefix of it is reported as truncated).
pub fn inspect(data: &[u8]) -> Result<ElfInfo, ElfError> {
    if data.len() < 16 {
        return Err(ElfError::truncated(
            data.len() as u64,
            format!("ELF identification needs 16 bytes, data ends at byte {}", data.len()),
        ));
    }
    let class = match data[4] {
        1 => ElfClass::Class32,
        2 => ElfClass::Class64,
        other => {
            return Err(ElfError::malformed(4, format!("EI_CLASS is {other} (1 = 32-bit, 2 = 64-bit)")));
        }
    };
    let big_endian = match data[5] {
        1 => false,
        2 => true,
        other => {
            return Err(ElfError::malformed(5, format!("EI_DATA is {other} (1 = little-endian, 2 = big-endian)")));
        }
    };
    if data[6] != 1 {
        return Err(ElfError::malformed(6, format!("EI_VERSION is {} (must be 1)", data[6])));
    }
    match class {
        ElfClass::Class32 => inspect_as::<e::FileHeader32<Endianness>>(data, class, big_endian),
        ElfClass::Class64 => inspect_as::<e::FileHeader64<Endianness>>(data, class, big_endian),
    }
}

fn inspect_as<H: FileHeader<Endian = Endianness>>(
    data: &[u8],
    class: ElfClass,
    big_endian: bool,
) -> Result<ElfInfo, ElfError> {
    let len = data.len() as u64;
    let hsize = std::mem::size_of::<H>() as u64;
    if len < hsize {
        return Err(ElfError::truncated(
            len,
            format!("ELF{} header needs {hsize} bytes, data ends at byte {len}", class.bits()),
        ));
    }
    let header = H::parse(data).map_err(|err| ElfError::malformed(0, err.to_string()))?;
    let endian = header.endian().map_err(|err| ElfError::malformed(5, err.to_string()))?;
    // Offsets of e_phoff, e_phnum, e_phentsize, e_shentsize within the header, for messages.
    let (phoff_at, phnum_at, phentsize_at, shentsize_at) = match class {
        ElfClass::Class32 => (28u64, 44u64, 42u64, 46u64),
        ElfClass::Class64 => (32u64, 56u64, 54u64, 58u64),
    };
    let shoff: u64 = header.e_shoff(endian).into();
    let shnum = u64::from(header.e_shnum(endian));
    let shentsize = u64::from(header.e_shentsize(endian));

    // Program header table.
    let phoff: u64 = header.e_phoff(endian).into();
    let phnum = u64::from(header.e_phnum(endian));
    if phoff != 0 && phnum != 0 {
        let entsize = u64::from(header.e_phentsize(endian));
        let want = std::mem::size_of::<H::ProgramHeader>() as u64;
        if entsize != want {
            return Err(ElfError::malformed(
                phentsize_at,
                format!("e_phentsize is {entsize}, ELF{} needs {want}", class.bits()),
            ));
        }
        if let Err(err) = table_in_bounds("program header table", phoff, phnum, entsize, len) {
            // The section header table is the last thing linkers write: when it is all
            // there, the file was not cut, and the header's own fields are what is wrong.
            let sht_whole = shoff != 0
                && shoff >= hsize
                && shoff.checked_add(shnum.max(1).saturating_mul(shentsize)).is_some_and(|end| end <= len);
            if err.kind == ElfErrorKind::Truncated && sht_whole {
                return Err(if phoff >= len {
                    ElfError::malformed(
                        phoff_at,
                        format!(
                            "e_phoff is {phoff}, past the end of the file ({len} bytes), while the section \
                             header table at {shoff} is whole: the ELF header is corrupt"
                        ),
                    )
                } else {
                    ElfError::malformed(
                        phnum_at,
                        format!(
                            "e_phnum is {phnum}: {phnum} program headers from byte {phoff} run past the end of \
                             the file ({len} bytes), while the section header table at {shoff} is whole: the ELF \
                             header is corrupt"
                        ),
                    )
                });
            }
            return Err(err);
        }
    }
    let phdrs = header.program_headers(endian, data).map_err(|err| ElfError::malformed(phoff, err.to_string()))?;
    for (i, ph) in phdrs.iter().enumerate() {
        if ph.p_type(endian) != e::PT_LOAD && ph.p_type(endian) != e::PT_INTERP {
            continue;
        }
        let off: u64 = ph.p_offset(endian).into();
        let size: u64 = ph.p_filesz(endian).into();
        range_in_bounds(&format!("segment {i}"), off, size, len)?;
    }

    // Section header table (at the end of the file: the first thing a cut loses).
    if shoff != 0 {
        let entsize = shentsize;
        let want = std::mem::size_of::<H::SectionHeader>() as u64;
        if entsize != want {
            return Err(ElfError::malformed(
                shentsize_at,
                format!("e_shentsize is {entsize}, ELF{} needs {want}", class.bits()),
            ));
        }
        // shnum == 0 means "count in section 0": check at least that entry.
        table_in_bounds("section header table", shoff, shnum.max(1), entsize, len)?;
    }
    let sections = header.sections(endian, data).map_err(|err| ElfError::malformed(shoff, err.to_string()))?;
    for (i, sh) in sections.iter().enumerate() {
        if sh.sh_type(endian) == e::SHT_NOBITS || sh.sh_type(endian) == e::SHT_NULL {
            continue;
        }
        let off: u64 = sh.sh_offset(endian).into();
        let size: u64 = sh.sh_size(endian).into();
        range_in_bounds(&format!("section {i}"), off, size, len)?;
    }

    let machine = header.e_machine(endian).0;
    let mut info = ElfInfo {
        class,
        big_endian,
        e_type: header.e_type(endian).0,
        machine,
        flags: header.e_flags(endian).0,
        interpreter: None,
        vfp_args: VfpArgs::NoAttributes,
        fp_number_model: None,
        version_needs: Vec::new(),
        pydata: None,
        pie: false,
    };

    for ph in phdrs {
        let at: u64 = ph.p_offset(endian).into();
        if let Some(interp) =
            ph.interpreter(endian, data).map_err(|err| ElfError::malformed(at, format!("PT_INTERP: {err}")))?
        {
            info.interpreter = Some(String::from_utf8_lossy(interp).into_owned());
        }
        // Only decides where a PyInstaller archive is looked for: an unreadable dynamic
        // table is left to the loader's own checks.
        if let Ok(Some(dynamic)) = ph.dynamic(endian, data) {
            info.pie |=
                dynamic.iter().any(|d| d.d_tag(endian) == e::DT_FLAGS_1 && d.d_val(endian).into() & DF_1_PIE != 0);
        }
    }

    for sh in sections.iter() {
        let at: u64 = sh.sh_offset(endian).into();
        let size: u64 = sh.sh_size(endian).into();
        if sh.sh_type(endian) == e::SHT_ARM_ATTRIBUTES && machine == e::EM_ARM.0 {
            (info.vfp_args, info.fp_number_model) = read_float_attributes::<H>(sh, endian, data)
                .map_err(|err| ElfError::malformed(at, format!(".ARM.attributes: {err}")))?;
        }
        if sections.section_name(endian, sh) == Ok(b"pydata") {
            // Bounds were checked above; the conversion cannot fail on 64-bit hosts.
            let start = usize::try_from(at).unwrap_or(usize::MAX);
            let end = usize::try_from(at + size).unwrap_or(usize::MAX);
            if start <= end && end <= data.len() {
                info.pydata = Some(start..end);
            }
        }
    }

    if let Some((mut needs, link)) = sections
        .gnu_verneed(endian, data)
        .map_err(|err| ElfError::malformed(shoff, format!(".gnu.version_r: {err}")))?
    {
        let vr = sections.iter().find(|sh| sh.sh_type(endian) == e::SHT_GNU_VERNEED);
        let vr_at: u64 = vr.map(|sh| sh.sh_offset(endian).into()).unwrap_or(0);
        let vr_size: u64 = vr.map(|sh| sh.sh_size(endian).into()).unwrap_or(0);
        let bad = |err: object::read::Error| ElfError::malformed(vr_at, format!(".gnu.version_r: {err}"));
        let strings = sections.strings(endian, data, link).map_err(bad)?;
        // Each record is at least 16 bytes: more iterations than that means the
        // vn_cnt / vna_next fields loop over the same bytes.
        let mut budget = vr_size / 16 + 1;
        while let Some((need, mut auxes)) = needs.next().map_err(bad)? {
            let file = String::from_utf8_lossy(need.file(endian, strings).map_err(bad)?).into_owned();
            while let Some(aux) = auxes.next().map_err(bad)? {
                budget = budget.checked_sub(1).ok_or_else(|| {
                    ElfError::malformed(vr_at, ".gnu.version_r: more entries than the section holds".into())
                })?;
                let version = String::from_utf8_lossy(aux.name(endian, strings).map_err(bad)?).into_owned();
                info.version_needs.push(VersionNeed { file: file.clone(), version });
            }
        }
    }
    Ok(info)
}

fn table_in_bounds(what: &str, off: u64, count: u64, entsize: u64, len: u64) -> Result<(), ElfError> {
    let size = count
        .checked_mul(entsize)
        .ok_or_else(|| ElfError::malformed(off, format!("{what}: {count} entries of {entsize} bytes overflow")))?;
    range_in_bounds(what, off, size, len)
}

fn range_in_bounds(what: &str, off: u64, size: u64, len: u64) -> Result<(), ElfError> {
    match off.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        Some(end) => {
            Err(ElfError::truncated(off.min(len), format!("{what} spans bytes {off}..{end}, data ends at byte {len}")))
        }
        None => Err(ElfError::malformed(off, format!("{what}: offset {off} + size {size} overflows"))),
    }
}

/// Tag_ABI_VFP_args and Tag_ABI_FP_number_model from the "aeabi" Tag_File attributes.
fn read_float_attributes<H: FileHeader<Endian = Endianness>>(
    sh: &H::SectionHeader,
    endian: Endianness,
    data: &[u8],
) -> object::read::Result<(VfpArgs, Option<u64>)> {
    let mut vfp_args = VfpArgs::Absent;
    let mut fp_number_model = None;
    let section = sh.attributes(endian, data)?;
    let mut subsections = section.subsections()?;
    while let Some(sub) = subsections.next()? {
        if sub.vendor() != b"aeabi" {
            continue;
        }
        let mut subsubs = sub.subsubsections();
        while let Some(subsub) = subsubs.next()? {
            if subsub.tag() != e::Tag_File {
                continue;
            }
            let mut attrs = subsub.attributes();
            while let Some(tag) = attrs.read_tag()? {
                // The value's type follows from the tag (ARM IHI 0045, "Attribute
                // syntax"): 4, 5 and 67 are strings, 32 is an integer then a string,
                // other tags up to 32 are integers, and above 32 odd tags are
                // strings, even tags integers.
                match tag {
                    4 | 5 | 67 => {
                        attrs.read_string()?;
                    }
                    32 => {
                        attrs.read_integer()?;
                        attrs.read_string()?;
                    }
                    TAG_ABI_VFP_ARGS => vfp_args = VfpArgs::Value(attrs.read_integer()?),
                    TAG_ABI_FP_NUMBER_MODEL => fp_number_model = Some(attrs.read_integer()?),
                    t if t > 32 && t % 2 == 1 => {
                        attrs.read_string()?;
                    }
                    _ => {
                        attrs.read_integer()?;
                    }
                }
            }
        }
    }
    Ok((vfp_args, fp_number_model))
}

/// Apply the target's rules to one object.
pub fn check(info: &ElfInfo, target: &Target) -> Vec<Issue> {
    let mut issues = Vec::new();
    let BinFormat::Elf { class, machine, float } = target.format else {
        issues.push(Issue::error(
            Check::Format,
            target.describe(),
            format!("ELF{} {}", info.class.bits(), machine_name(info.machine)),
            format!("a {} release must contain Mach-O binaries only: rebuild this file for macOS", target.name),
        ));
        return issues;
    };

    // Wrong machine makes every later rule meaningless: report it alone.
    if info.machine != machine {
        issues.push(Issue::error(
            Check::Machine,
            format!("ELF{} {}", class.bits(), machine_name(machine)),
            format!("ELF{} {}", info.class.bits(), machine_name(info.machine)),
            format!(
                "this file was built for another architecture: rebuild it for {} \
                 (cross toolchain, or a build container/cache of that platform)",
                target.name
            ),
        ));
        return issues;
    }
    if info.class != class {
        issues.push(Issue::error(
            Check::Class,
            format!("ELFCLASS{}", class.bits()),
            format!("ELFCLASS{}", info.class.bits()),
            format!("rebuild for {} with a {}-bit toolchain", target.name, class.bits()),
        ));
        return issues;
    }
    if info.big_endian {
        issues.push(Issue::error(
            Check::Endianness,
            "little-endian (ELFDATA2LSB)".to_string(),
            "big-endian (ELFDATA2MSB)".to_string(),
            format!("rebuild for little-endian {}", target.name),
        ));
        return issues;
    }

    if machine == e::EM_ARM.0 {
        check_arm(info, target, float, &mut issues);
    }

    if let (Some(want), Some(have)) = (&target.interpreter, &info.interpreter)
        && want != have
    {
        issues.push(Issue::error(
            Check::Interpreter,
            want.clone(),
            have.clone(),
            format!(
                "link with the {} toolchain so PT_INTERP is {want} (a different loader \
                 path means another ABI or libc)",
                target.name
            ),
        ));
    }

    check_glibc(info, target, &mut issues);
    issues
}

fn check_arm(info: &ElfInfo, target: &Target, float: Option<FloatAbi>, issues: &mut Vec<Issue>) {
    let eabi = (info.flags & EF_ARM_EABIMASK) >> 24;
    if eabi != 5 {
        // EABI 0 is the legacy OABI, which Debian kernels no longer run; 1-4 predate
        // the float-ABI flags, so they are only warned about.
        let severity = if eabi == 0 { Severity::Error } else { Severity::Warning };
        issues.push(Issue {
            check: Check::ArmEabi,
            severity,
            expected: "EABI version 5 (e_flags 0x05000000)".to_string(),
            found: format!("EABI version {eabi} (e_flags {:#010x})", info.flags),
            fix: format!("rebuild with an EABI5 toolchain for {}", target.name),
            offset: None,
        });
    }
    let Some(want) = float else { return };
    let (want_name, bad_bit, toolchain) = match want {
        FloatAbi::Hard => ("hard-float", EF_ARM_ABI_FLOAT_SOFT, "arm-linux-gnueabihf"),
        FloatAbi::Soft => ("soft-float", EF_ARM_ABI_FLOAT_HARD, "arm-linux-gnueabi"),
    };
    let fix = format!("rebuild with the {toolchain} toolchain ({want_name} calling convention)");
    let expected = match want {
        FloatAbi::Hard => "hard-float: e_flags 0x400, or Tag_ABI_VFP_args 1 or 3",
        FloatAbi::Soft => "soft-float: e_flags 0x200, or Tag_ABI_VFP_args 0 or 3",
    }
    .to_string();
    let flags = info.flags;
    if flags & bad_bit != 0 {
        let what = if bad_bit == EF_ARM_ABI_FLOAT_SOFT { "soft-float" } else { "hard-float" };
        issues.push(Issue::error(Check::FloatAbi, expected, format!("{what} (e_flags {flags:#010x})"), fix));
        return;
    }
    if flags & (EF_ARM_ABI_FLOAT_SOFT | EF_ARM_ABI_FLOAT_HARD) != 0 {
        return; // the good bit is set
    }
    // Neither bit: the loader accepts the object, so decide from the attributes. An object
    // that uses no floating point (Tag_ABI_FP_number_model absent or 0, as in glibc's
    // crti.o) passes no float arguments: the linker takes it into either convention.
    if matches!(info.vfp_args, VfpArgs::Absent | VfpArgs::Value(0)) && info.fp_number_model.unwrap_or(0) == 0 {
        return;
    }
    let (ok, found) = match (info.vfp_args, want) {
        (VfpArgs::Value(3), _) => (true, String::new()),
        (VfpArgs::Value(1), FloatAbi::Hard) | (VfpArgs::Value(0), FloatAbi::Soft) => (true, String::new()),
        (VfpArgs::Value(v), _) => {
            (false, format!("neither float bit in e_flags {flags:#010x}; Tag_ABI_VFP_args = {v}"))
        }
        (VfpArgs::Absent, FloatAbi::Soft) => (true, String::new()),
        (VfpArgs::Absent, FloatAbi::Hard) => (
            false,
            format!(
                "neither float bit in e_flags {flags:#010x}; Tag_ABI_VFP_args absent (AEABI default 0: soft-float arguments)"
            ),
        ),
        (VfpArgs::NoAttributes, _) => {
            issues.push(Issue {
                check: Check::FloatAbi,
                severity: Severity::Warning,
                expected,
                found: format!("neither float bit in e_flags {flags:#010x} and no .ARM.attributes: float ABI unknown"),
                fix: "keep .ARM.attributes when stripping (strip keeps it by default), or rebuild".to_string(),
                offset: None,
            });
            return;
        }
    };
    if !ok {
        issues.push(Issue::error(Check::FloatAbi, expected, found, fix));
    }
}

/// The version a `GLIBC_*` tag stands for, if it is one this tool can compare.
pub fn glibc_tag_version(tag: &str) -> GlibcTag {
    let Some(rest) = tag.strip_prefix("GLIBC_") else {
        return GlibcTag::NotGlibc;
    };
    if rest == "ABI_DT_RELR" {
        // DT_RELR support arrived in glibc 2.36.
        return GlibcTag::Version(2, 36);
    }
    if rest == "PRIVATE" {
        return GlibcTag::Private;
    }
    let mut parts = rest.split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    let tail_ok = parts.all(|p| p.parse::<u32>().is_ok());
    match (major, minor) {
        (Some(major), Some(minor)) if tail_ok => GlibcTag::Version(major, minor),
        _ => GlibcTag::Unknown,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlibcTag {
    NotGlibc,
    Version(u32, u32),
    Private,
    Unknown,
}

fn check_glibc(info: &ElfInfo, target: &Target, issues: &mut Vec<Issue>) {
    let mut highest: Option<((u32, u32), &VersionNeed)> = None;
    let mut over: Vec<&VersionNeed> = Vec::new();
    for need in &info.version_needs {
        match glibc_tag_version(&need.version) {
            GlibcTag::NotGlibc => {}
            GlibcTag::Version(major, minor) => {
                let v = (major, minor);
                if highest.is_none_or(|(h, _)| v > h) {
                    highest = Some((v, need));
                }
                if target.glibc_floor.is_some_and(|floor| v > floor) {
                    over.push(need);
                }
            }
            tag @ (GlibcTag::Private | GlibcTag::Unknown) => {
                let what = if tag == GlibcTag::Private {
                    "glibc-internal interface: only a binary built with the very same glibc can use it"
                } else {
                    "version tag this tool does not know: not compared"
                };
                issues.push(Issue {
                    check: Check::GlibcTag,
                    severity: Severity::Warning,
                    expected: "public GLIBC_x.y versions".to_string(),
                    found: format!("{} from {} ({what})", need.version, need.file),
                    fix: "check that the target's glibc provides it; avoid linking glibc-private symbols".to_string(),
                    offset: None,
                });
            }
        }
    }
    let (Some((floor_major, floor_minor)), Some(((major, minor), top))) = (target.glibc_floor, highest) else {
        return;
    };
    if over.is_empty() {
        return;
    }
    // Group the versions over the floor by library, in first-seen order.
    let mut by_file: Vec<(&str, Vec<&str>)> = Vec::new();
    for need in &over {
        match by_file.iter_mut().find(|(f, _)| *f == need.file) {
            Some((_, versions)) => {
                if !versions.contains(&need.version.as_str()) {
                    versions.push(&need.version)
                }
            }
            None => by_file.push((&need.file, vec![&need.version])),
        }
    }
    let detail: Vec<String> = by_file
        .iter_mut()
        .map(|(f, vs)| {
            vs.sort_by_key(|v| match glibc_tag_version(v) {
                GlibcTag::Version(major, minor) => (major, minor),
                _ => (0, 0),
            });
            format!("{f}: {}", vs.join(", "))
        })
        .collect();
    issues.push(Issue::error(
        Check::Glibc,
        format!("GLIBC <= {floor_major}.{floor_minor}"),
        format!("GLIBC {major}.{minor} ({} from {}); over the floor: {}", top.version, top.file, detail.join("; ")),
        format!(
            "build on a base whose glibc is at most {floor_major}.{floor_minor} \
             (e.g. Debian bullseye for 2.31), or raise the target's floor"
        ),
    ));
}
