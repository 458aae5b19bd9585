//! What a release is checked against.
//!
//! `Target` is plain data: the CLI fills it from its own `Arch` enum (or uses
//! [`Target::from_arch_name`], which knows the arches by their names).

use serde::Serialize;

/// ELF machine numbers the tool names in its messages (`e_machine`).
pub const EM_386: u16 = 3;
pub const EM_ARM: u16 = 40;
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
pub const EM_RISCV: u16 = 243;

/// Mach-O CPU types (`cputype` of the header or of a fat slice).
pub const CPU_TYPE_X86_64: u32 = 0x0100_0007;
pub const CPU_TYPE_ARM64: u32 = 0x0100_000c;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// "armv7l", "arm64", "x64", "darwin-arm64": used in messages only.
    pub name: String,
    pub format: BinFormat,
    /// PT_INTERP every dynamic executable must request; `None` = not checked.
    pub interpreter: Option<String>,
    /// Highest glibc the target has, as (major, minor); `None` = not checked.
    pub glibc_floor: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BinFormat {
    /// Linux targets are all little-endian, so the endianness is implied.
    Elf {
        class: ElfClass,
        machine: u16,
        /// ARM only: which float calling convention the userland uses.
        float: Option<FloatAbi>,
    },
    MachO {
        cputype: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ElfClass {
    Class32,
    Class64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FloatAbi {
    /// armhf: float arguments in VFP registers (e_flags 0x400, Tag_ABI_VFP_args = 1).
    Hard,
    /// armel: float arguments in core registers (e_flags 0x200).
    Soft,
}

impl Target {
    /// What `arch` runs, from the one table of arch facts (`crate::arch::Arch`), with the
    /// target OS's glibc as the floor.
    pub fn for_arch(arch: crate::arch::Arch, glibc: Option<crate::config::GlibcVersion>) -> Target {
        use crate::arch::BinaryFormat;
        let (format, interpreter) = match arch.binary_format() {
            BinaryFormat::Elf { class, machine, interpreter, hard_float } => (
                BinFormat::Elf {
                    class: if class == 32 { ElfClass::Class32 } else { ElfClass::Class64 },
                    machine,
                    float: (machine == EM_ARM).then_some(if hard_float { FloatAbi::Hard } else { FloatAbi::Soft }),
                },
                Some(interpreter.to_string()),
            ),
            BinaryFormat::MachO { cputype } => (BinFormat::MachO { cputype }, None),
        };
        Target { name: arch.name().into(), format, interpreter, glibc_floor: glibc.map(|g| (g.major, g.minor)) }
    }

    /// The arches, by CLI name or alias (armhf, aarch64, amd64, mac...), plus
    /// armel. Tests only: production targets come from [`Target::for_arch`]; a test checks
    /// the two tables agree.
    #[cfg(any(test, fuzzing))]
    /// Takes the *userland* arch: a 32-bit Raspberry Pi OS on a 64-bit kernel is armv7l.
    pub fn from_arch_name(name: &str) -> Option<Target> {
        let (canonical, format, interpreter) = match name {
            "armv7l" | "armhf" | "arm" | "arm/v7" | "linux/arm/v7" => (
                "armv7l",
                BinFormat::Elf { class: ElfClass::Class32, machine: EM_ARM, float: Some(FloatAbi::Hard) },
                Some("/lib/ld-linux-armhf.so.3"),
            ),
            "armel" => (
                "armel",
                BinFormat::Elf { class: ElfClass::Class32, machine: EM_ARM, float: Some(FloatAbi::Soft) },
                Some("/lib/ld-linux.so.3"),
            ),
            "arm64" | "aarch64" | "linux/arm64" => (
                "arm64",
                BinFormat::Elf { class: ElfClass::Class64, machine: EM_AARCH64, float: None },
                Some("/lib/ld-linux-aarch64.so.1"),
            ),
            "x64" | "amd64" | "x86_64" | "linux/amd64" => (
                "x64",
                BinFormat::Elf { class: ElfClass::Class64, machine: EM_X86_64, float: None },
                Some("/lib64/ld-linux-x86-64.so.2"),
            ),
            "darwin-arm64" | "mac" => ("darwin-arm64", BinFormat::MachO { cputype: CPU_TYPE_ARM64 }, None),
            _ => return None,
        };
        Some(Target {
            name: canonical.to_string(),
            format,
            interpreter: interpreter.map(str::to_string),
            glibc_floor: None,
        })
    }

    #[cfg(test)]
    pub fn with_glibc_floor(mut self, major: u32, minor: u32) -> Target {
        self.glibc_floor = Some((major, minor));
        self
    }

    /// The Debian architecture a .deb for this target must declare, derived from
    /// the binary format rather than the display name (armv7l is not a Debian arch).
    pub fn debian_arch(&self) -> Option<&'static str> {
        match self.format {
            BinFormat::Elf { machine: EM_ARM, float, .. } => Some(match float {
                Some(FloatAbi::Soft) => "armel",
                _ => "armhf",
            }),
            BinFormat::Elf { machine: EM_AARCH64, .. } => Some("arm64"),
            BinFormat::Elf { machine: EM_X86_64, .. } => Some("amd64"),
            BinFormat::Elf { machine: EM_386, .. } => Some("i386"),
            BinFormat::Elf { machine: EM_RISCV, class: ElfClass::Class64, .. } => Some("riscv64"),
            _ => None,
        }
    }

    /// A one-line description of what the target expects, for "expected" columns.
    pub fn describe(&self) -> String {
        match self.format {
            BinFormat::Elf { class, machine, float } => {
                let mut s = format!("ELF{} {}", class.bits(), machine_name(machine));
                match float {
                    Some(FloatAbi::Hard) => s.push_str(" hard-float"),
                    Some(FloatAbi::Soft) => s.push_str(" soft-float"),
                    None => {}
                }
                s
            }
            BinFormat::MachO { cputype } => format!("Mach-O {}", cpu_type_name(cputype)),
        }
    }
}

impl ElfClass {
    pub fn bits(self) -> u32 {
        match self {
            ElfClass::Class32 => 32,
            ElfClass::Class64 => 64,
        }
    }
}

/// `EM_*` name for the machines a release could plausibly contain.
pub fn machine_name(machine: u16) -> String {
    let name = match machine {
        EM_386 => "EM_386",
        8 => "EM_MIPS",
        20 => "EM_PPC",
        21 => "EM_PPC64",
        22 => "EM_S390",
        EM_ARM => "EM_ARM",
        EM_X86_64 => "EM_X86_64",
        EM_AARCH64 => "EM_AARCH64",
        EM_RISCV => "EM_RISCV",
        258 => "EM_LOONGARCH",
        _ => return format!("e_machine {machine}"),
    };
    format!("{name} ({machine})")
}

pub fn cpu_type_name(cputype: u32) -> String {
    match cputype {
        CPU_TYPE_ARM64 => "arm64".to_string(),
        CPU_TYPE_X86_64 => "x86_64".to_string(),
        0x0000_0007 => "i386".to_string(),
        0x0000_000c => "arm".to_string(),
        0x0200_000c => "arm64_32".to_string(),
        other => format!("cputype {other:#x}"),
    }
}
