//! Every fact about a target architecture, in one enum.
//!
//! The rest of the xtask never matches on architecture strings: it asks an `Arch` for its Docker
//! platform, Debian name, electron-builder flag, ELF facts, cross compiler, QEMU handler.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Armv7l,
    Arm64,
    X64,
    DarwinArm64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Darwin,
}

/// What an executable built for this arch looks like, for `verify` and `afterpack`.
/// `targets --json` shows it flat, tagged by `format`: `{"format": "elf", "class": 32, "machine": 40,
/// "interpreter": "/lib/ld-linux-armhf.so.3", "hard_float": true}` or `{"format": "mach-o",
/// "cputype": 16777228}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum BinaryFormat {
    Elf {
        /// 32 or 64.
        class: u8,
        /// `e_machine`: EM_ARM 40, EM_AARCH64 183, EM_X86_64 62.
        machine: u16,
        /// PT_INTERP of a dynamic executable.
        interpreter: &'static str,
        /// ARM only: the target wants hard-float (armhf) objects.
        hard_float: bool,
    },
    #[serde(rename = "mach-o")]
    MachO {
        /// CPU_TYPE_ARM64 = 0x0100000c.
        cputype: u32,
    },
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::Armv7l, Arch::Arm64, Arch::X64, Arch::DarwinArm64];

    /// The name used on the command line, in dist.yaml and in output paths.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Armv7l => "armv7l",
            Arch::Arm64 => "arm64",
            Arch::X64 => "x64",
            Arch::DarwinArm64 => "darwin-arm64",
        }
    }

    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Arch::Armv7l => &["armhf", "arm", "arm/v7", "linux/arm/v7"],
            Arch::Arm64 => &["aarch64", "linux/arm64"],
            Arch::X64 => &["amd64", "x86_64", "linux/amd64"],
            Arch::DarwinArm64 => &["mac", "macos-arm64"],
        }
    }

    pub fn os(self) -> Os {
        match self {
            Arch::DarwinArm64 => Os::Darwin,
            _ => Os::Linux,
        }
    }

    /// `--platform` for Docker/BuildKit. darwin has none: it only builds natively.
    pub fn docker_platform(self) -> Option<&'static str> {
        match self {
            Arch::Armv7l => Some("linux/arm/v7"),
            Arch::Arm64 => Some("linux/arm64"),
            Arch::X64 => Some("linux/amd64"),
            Arch::DarwinArm64 => None,
        }
    }

    /// Only built on a host of its own (macOS): no container platform can build it.
    pub fn native_only(self) -> bool {
        self.docker_platform().is_none()
    }

    /// Every Docker platform a target has, for a buildx builder that serves them all.
    pub fn all_docker_platforms() -> Vec<&'static str> {
        Arch::ALL.into_iter().filter_map(Arch::docker_platform).collect()
    }

    /// Electron's names for the platform and arch of its release zips (`linux`, `armv7l`).
    pub fn electron_release(self) -> (&'static str, &'static str) {
        match self {
            Arch::Armv7l => ("linux", "armv7l"),
            Arch::Arm64 => ("linux", "arm64"),
            Arch::X64 => ("linux", "x64"),
            Arch::DarwinArm64 => ("darwin", "arm64"),
        }
    }

    /// The GNU triplet of Debian's cross (or native) compiler for it: `arm-linux-gnueabihf`.
    pub fn gnu_triplet(self) -> Option<&'static str> {
        match self {
            Arch::Armv7l => Some("arm-linux-gnueabihf"),
            Arch::Arm64 => Some("aarch64-linux-gnu"),
            Arch::X64 => Some("x86_64-linux-gnu"),
            Arch::DarwinArm64 => None,
        }
    }

    /// The `Architecture:` of a .deb (never "armv7l": lintian calls that unknown).
    pub fn debian_arch(self) -> Option<&'static str> {
        match self {
            Arch::Armv7l => Some("armhf"),
            Arch::Arm64 => Some("arm64"),
            Arch::X64 => Some("amd64"),
            Arch::DarwinArm64 => None,
        }
    }

    /// electron-builder's command-line flags selecting this platform and arch.
    pub fn electron_builder_flags(self) -> &'static [&'static str] {
        match self {
            Arch::Armv7l => &["--linux", "--armv7l"],
            Arch::Arm64 => &["--linux", "--arm64"],
            Arch::X64 => &["--linux", "--x64"],
            Arch::DarwinArm64 => &["--mac", "--arm64"],
        }
    }

    /// electron-builder's `Arch` enum value, as its afterPack hook receives it.
    /// darwin-arm64 shares 3 with arm64: the platform tells them apart.
    pub fn electron_arch_enum(self) -> u8 {
        match self {
            Arch::X64 => 1,
            Arch::Armv7l => 2,
            Arch::Arm64 | Arch::DarwinArm64 => 3,
        }
    }

    /// Inverse of [`Arch::electron_arch_enum`], for the afterPack shim, which passes
    /// electron-builder's number and platform name (`linux`, `darwin`).
    pub fn from_electron(platform: &str, arch_enum: u8) -> Option<Arch> {
        let os = match platform {
            "linux" => Os::Linux,
            "darwin" | "mac" => Os::Darwin,
            _ => return None,
        };
        Arch::ALL.into_iter().find(|a| a.os() == os && a.electron_arch_enum() == arch_enum)
    }

    /// The last Electron major that ships a build for this arch, when Electron dropped it:
    /// Electron 44 and later publish no linux-armv7l binary.
    pub fn electron_last_major(self) -> Option<u32> {
        match self {
            Arch::Armv7l => Some(43),
            Arch::Arm64 | Arch::X64 | Arch::DarwinArm64 => None,
        }
    }

    /// The folder electron-builder's `dir` target writes under `release/`.
    pub fn unpacked_dir(self) -> &'static str {
        match self {
            Arch::Armv7l => "linux-armv7l-unpacked",
            Arch::Arm64 => "linux-arm64-unpacked",
            Arch::X64 => "linux-unpacked",
            Arch::DarwinArm64 => "mac-arm64",
        }
    }

    pub fn binary_format(self) -> BinaryFormat {
        match self {
            Arch::Armv7l => {
                BinaryFormat::Elf { class: 32, machine: 40, interpreter: "/lib/ld-linux-armhf.so.3", hard_float: true }
            }
            Arch::Arm64 => BinaryFormat::Elf {
                class: 64,
                machine: 183,
                interpreter: "/lib/ld-linux-aarch64.so.1",
                hard_float: false,
            },
            Arch::X64 => BinaryFormat::Elf {
                class: 64,
                machine: 62,
                interpreter: "/lib64/ld-linux-x86-64.so.2",
                hard_float: false,
            },
            Arch::DarwinArm64 => BinaryFormat::MachO { cputype: 0x0100_000c },
        }
    }

    /// The binfmt_misc entry QEMU registers for this arch's executables.
    pub fn qemu_binfmt(self) -> Option<&'static str> {
        match self {
            Arch::Armv7l => Some("qemu-arm"),
            Arch::Arm64 => Some("qemu-aarch64"),
            Arch::X64 => Some("qemu-x86_64"),
            Arch::DarwinArm64 => None,
        }
    }

    /// `uname -m` inside a container of this platform: how doctor and the e2e tests know a
    /// container really runs as the target.
    pub fn uname_machine(self) -> &'static str {
        match self {
            Arch::Armv7l => "armv7l",
            Arch::Arm64 => "aarch64",
            Arch::X64 => "x86_64",
            Arch::DarwinArm64 => "arm64",
        }
    }

    /// The arch of the userland this xtask was compiled for. That is deliberately not
    /// `uname -m`: a 32-bit Raspberry Pi OS on a 64-bit kernel says aarch64 there while its
    /// userland (and so every binary we must build) is armhf.
    pub fn host() -> Option<Arch> {
        Self::from_rust_target(std::env::consts::OS, std::env::consts::ARCH)
    }

    fn from_rust_target(os: &str, arch: &str) -> Option<Arch> {
        match (os, arch) {
            ("linux", "arm") => Some(Arch::Armv7l),
            ("linux", "aarch64") => Some(Arch::Arm64),
            ("linux", "x86_64") => Some(Arch::X64),
            ("macos", "aarch64") => Some(Arch::DarwinArm64),
            _ => None,
        }
    }

    /// One line per arch with its aliases, for error messages and `--help`.
    pub fn choices() -> String {
        Arch::ALL.iter().map(|a| format!("{} ({})", a.name(), a.aliases().join(", "))).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct UnknownArch(pub String);

impl fmt::Display for UnknownArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown arch `{}`, expected one of {}", self.0, Arch::choices())
    }
}

impl std::error::Error for UnknownArch {}

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Arch, UnknownArch> {
        let wanted = s.trim().to_ascii_lowercase();
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == wanted || a.aliases().contains(&wanted.as_str()))
            .ok_or_else(|| UnknownArch(s.to_string()))
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_parse_to_their_arch() {
        let cases = [
            ("armv7l", Arch::Armv7l),
            ("armhf", Arch::Armv7l),
            ("arm", Arch::Armv7l),
            ("arm/v7", Arch::Armv7l),
            ("ARMHF", Arch::Armv7l),
            ("arm64", Arch::Arm64),
            ("aarch64", Arch::Arm64),
            ("x64", Arch::X64),
            ("amd64", Arch::X64),
            ("x86_64", Arch::X64),
            ("darwin-arm64", Arch::DarwinArm64),
            ("mac", Arch::DarwinArm64),
        ];
        for (text, arch) in cases {
            assert_eq!(text.parse::<Arch>(), Ok(arch), "{text}");
        }
    }

    #[test]
    fn every_name_and_alias_is_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for a in Arch::ALL {
            for n in std::iter::once(a.name()).chain(a.aliases().iter().copied()) {
                assert!(seen.insert(n), "{n} names two arches");
            }
        }
    }

    #[test]
    fn unknown_arch_lists_the_choices() {
        let err = "armv8".parse::<Arch>().unwrap_err().to_string();
        assert!(err.starts_with("unknown arch `armv8`"), "{err}");
        assert!(err.contains("armv7l (armhf, arm, arm/v7"), "{err}");
        assert!(err.contains("x64 (amd64, x86_64"), "{err}");
    }

    #[test]
    fn reference_table_facts() {
        assert_eq!(Arch::Armv7l.docker_platform(), Some("linux/arm/v7"));
        assert_eq!(Arch::Armv7l.debian_arch(), Some("armhf"));
        assert_eq!(Arch::X64.unpacked_dir(), "linux-unpacked");
        assert_eq!(Arch::Arm64.unpacked_dir(), "linux-arm64-unpacked");
        assert_eq!(Arch::Armv7l.electron_arch_enum(), 2);
        assert_eq!(Arch::Arm64.electron_arch_enum(), 3);
        assert_eq!(Arch::X64.electron_arch_enum(), 1);
        assert_eq!(Arch::Armv7l.electron_builder_flags(), ["--linux", "--armv7l"]);
        assert_eq!(Arch::from_electron("linux", 2), Some(Arch::Armv7l));
        assert_eq!(Arch::from_electron("linux", 3), Some(Arch::Arm64));
        assert_eq!(Arch::from_electron("linux", 1), Some(Arch::X64));
        assert_eq!(Arch::from_electron("darwin", 3), Some(Arch::DarwinArm64));
        assert_eq!(Arch::from_electron("linux", 0), None, "ia32 is not a target");
        assert_eq!(Arch::from_electron("win32", 1), None);
        match Arch::Armv7l.binary_format() {
            BinaryFormat::Elf { class, machine, interpreter, hard_float } => {
                assert_eq!((class, machine, interpreter, hard_float), (32, 40, "/lib/ld-linux-armhf.so.3", true));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn binary_formats_serialize_flat_with_their_format() {
        let elf = serde_json::to_value(Arch::Arm64.binary_format()).unwrap();
        assert_eq!(
            elf,
            serde_json::json!({"format": "elf", "class": 64, "machine": 183, "interpreter": "/lib/ld-linux-aarch64.so.1", "hard_float": false})
        );
        let macho = serde_json::to_value(Arch::DarwinArm64.binary_format()).unwrap();
        assert_eq!(macho, serde_json::json!({"format": "mach-o", "cputype": 0x0100_000c}));
    }

    #[test]
    fn host_comes_from_the_userland_target() {
        assert_eq!(Arch::from_rust_target("linux", "arm"), Some(Arch::Armv7l));
        assert_eq!(Arch::from_rust_target("linux", "x86_64"), Some(Arch::X64));
        assert_eq!(Arch::from_rust_target("macos", "aarch64"), Some(Arch::DarwinArm64));
        assert_eq!(Arch::from_rust_target("macos", "x86_64"), None);
        assert_eq!(Arch::from_rust_target("windows", "x86_64"), None);
    }
}
