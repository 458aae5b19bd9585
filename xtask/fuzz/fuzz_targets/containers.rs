//! The archive readers verify opens inside a release: asar, zip, gzip and nested tarballs,
//! one name per format so each reader sees every input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let target = xtask::verify::Target::from_arch_name("x64").unwrap();
    for name in ["app.asar", "natives.zip", "libfoo.so.gz", "vendor.tar.gz", "vendor.tar"] {
        let _ = xtask::verify::verify_archive_bytes(data, name, &target);
    }
});
