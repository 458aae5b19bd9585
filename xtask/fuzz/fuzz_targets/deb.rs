//! A .deb stream: ar members, control and data tar through each decompressor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let target = xtask::verify::Target::from_arch_name("armv7l").unwrap();
    let _ = xtask::verify::deb::verify_deb_reader(Cursor::new(data), Path::new("fuzz.deb"), &target);
});
