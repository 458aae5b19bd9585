//! Any bytes as a binary named on the command line: ELF, Mach-O, PyInstaller
//! in a pydata section or appended, and the "must be a binary" rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let mut target = verify_fuzz::verify::Target::from_arch_name("armv7l").unwrap();
    target.glibc_floor = Some((2, 31));
    let _ = verify_fuzz::verify::verify_bytes(data, Path::new("fuzz"), &target);
    if let Ok(info) = verify_fuzz::verify::elf::inspect(data) {
        let _ = verify_fuzz::verify::elf::check(&info, &target);
    }
});
