//! Mach-O counterpart of the ELF rules, for darwin targets: the CPU type of a
//! thin binary, or the presence of the target's slice in a fat (universal) one.
//! Kept beside the ELF code because both answer "does this object match the target".

use object::Endianness;
use object::macho as m;
use object::read::macho::{FatArch, MachHeader, MachOFatFile32, MachOFatFile64};

use super::super::report::{Check, Issue};
use super::super::target::{BinFormat, Target, cpu_type_name};
use super::{ElfError, ElfErrorKind};

/// First four bytes of thin (either byte order) and fat Mach-O files.
pub fn is_macho_magic(data: &[u8]) -> bool {
    let Some(magic) = data.get(..4) else {
        return false;
    };
    let be = u32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]);
    matches!(be, m::MH_MAGIC | m::MH_CIGAM | m::MH_MAGIC_64 | m::MH_CIGAM_64 | m::FAT_MAGIC | m::FAT_MAGIC_64)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachInfo {
    pub fat: bool,
    /// One CPU type for a thin file, one per slice for a fat one.
    pub cputypes: Vec<u32>,
}

/// `Ok(None)`: the magic matched but this is not Mach-O (a Java class file shares
/// 0xCAFEBABE; like file(1), more than 30 "arches" means Java).
pub fn inspect(data: &[u8]) -> Result<Option<MachInfo>, ElfError> {
    if !is_macho_magic(data) {
        return Ok(None);
    }
    let be = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let len = data.len() as u64;
    if be == m::FAT_MAGIC || be == m::FAT_MAGIC_64 {
        let nfat = data
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| truncated(len, "fat header needs 8 bytes".into()))?;
        if nfat == 0 || nfat > 30 {
            return Ok(None);
        }
        let slices: Vec<(u32, u64, u64)> = if be == m::FAT_MAGIC {
            let fat = MachOFatFile32::parse(data).map_err(|err| truncated(8, format!("fat arch table: {err}")))?;
            fat.arches().iter().map(|a| (a.cputype().0, a.offset().into(), a.size().into())).collect()
        } else {
            let fat = MachOFatFile64::parse(data).map_err(|err| truncated(8, format!("fat arch table: {err}")))?;
            fat.arches().iter().map(|a| (a.cputype().0, a.offset(), a.size())).collect()
        };
        for &(cpu, off, size) in &slices {
            if off.checked_add(size).is_none_or(|end| end > len) {
                return Err(truncated(
                    off.min(len),
                    format!(
                        "{} slice spans bytes {off}..{}, data ends at byte {len}",
                        cpu_type_name(cpu),
                        off.saturating_add(size)
                    ),
                ));
            }
        }
        return Ok(Some(MachInfo { fat: true, cputypes: slices.iter().map(|s| s.0).collect() }));
    }
    let cputype = if be == m::MH_MAGIC_64 || be == m::MH_CIGAM_64 {
        let h = m::MachHeader64::<Endianness>::parse(data, 0)
            .map_err(|err| truncated(len, format!("Mach-O header: {err}")))?;
        h.cputype(h.endian().map_err(|err| malformed(0, err.to_string()))?).0
    } else {
        let h = m::MachHeader32::<Endianness>::parse(data, 0)
            .map_err(|err| truncated(len, format!("Mach-O header: {err}")))?;
        h.cputype(h.endian().map_err(|err| malformed(0, err.to_string()))?).0
    };
    Ok(Some(MachInfo { fat: false, cputypes: vec![cputype] }))
}

fn truncated(offset: u64, detail: String) -> ElfError {
    ElfError { kind: ElfErrorKind::Truncated, offset, detail }
}

fn malformed(offset: u64, detail: String) -> ElfError {
    ElfError { kind: ElfErrorKind::Malformed, offset, detail }
}

pub fn check(info: &MachInfo, target: &Target) -> Vec<Issue> {
    let BinFormat::MachO { cputype } = target.format else {
        return vec![Issue::error(
            Check::Format,
            target.describe(),
            describe(info),
            format!("a {} release must contain ELF binaries only: rebuild this file for Linux", target.name),
        )];
    };
    if info.cputypes.contains(&cputype) {
        return Vec::new();
    }
    vec![Issue::error(
        Check::MachoCpu,
        format!("Mach-O {}{}", if info.fat { "slice " } else { "" }, cpu_type_name(cputype)),
        describe(info),
        format!("rebuild for {} (or lipo the {} slice in)", target.name, cpu_type_name(cputype)),
    )]
}

fn describe(info: &MachInfo) -> String {
    let names: Vec<String> = info.cputypes.iter().map(|&c| cpu_type_name(c)).collect();
    if info.fat {
        format!("Mach-O universal with slices {}", names.join(", "))
    } else {
        format!("Mach-O {}", names.join(", "))
    }
}
