//! Any bytes as a binary named on the command line: ELF, Mach-O, PyInstaller
//! in a pydata section or appended, and the "must be a binary" rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let mut target = xtask::verify::Target::from_arch_name("armv7l").unwrap();
    target.glibc_floor = Some((2, 31));
    let _ = xtask::verify::verify_bytes(data, Path::new("fuzz"), &target);
    if let Ok(info) = xtask::verify::elf::inspect(data) {
        let _ = xtask::verify::elf::check(&info, &target);
    }
});
