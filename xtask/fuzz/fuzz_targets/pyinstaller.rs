//! The CArchive reader on its own: cookie scan, TOC, every entry inflated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtask::verify::pyinstaller::{Location, locate};

fuzz_target!(|data: &[u8]| {
    for location in [Location::Scan, Location::PydataSection(0..data.len())] {
        if let Ok(Some(archive)) = locate(data, location) {
            for entry in &archive.entries {
                let _ = archive.entry_data(data, entry);
            }
        }
    }
});
