//! The outer `ar` archive, written by hand: a global magic and one 60-byte header per
//! member, all ASCII, space-padded:
//!
//! ```text
//! offset size field
//!      0   16 name        "debian-binary   " (no trailing '/', as dpkg-deb writes it)
//!     16   12 mtime       decimal seconds
//!     28    6 uid         "0"
//!     34    6 gid         "0"
//!     40    8 mode        octal, "100644"
//!     48   10 size        decimal bytes
//!     58    2 terminator  "`\n"
//! ```
//! A member with an odd size is followed by one '\n' so the next header is 2-aligned.
//! (The `ar` crate's Builder writes the mode as given and needs a `Read` per member; these
//! twenty lines are simpler to check against dpkg-deb byte for byte.)

use std::io::Write;

use anyhow::{Result, bail};

pub(super) const MAGIC: &[u8; 8] = b"!<arch>\n";

pub(super) fn member_header(out: &mut impl Write, name: &str, size: u64, mtime: u64) -> Result<()> {
    // dpkg reads names up to 15 bytes plus an optional '/'; keep the 16th byte free.
    if name.len() > 15 || !name.is_ascii() || name.contains(['/', ' ']) {
        bail!("ar member name {name:?} must be at most 15 ASCII bytes without '/' or spaces");
    }
    if size > 9_999_999_999 {
        bail!("ar member {name} is {size} bytes; the ar size field holds at most 10 digits (9.3 GiB)");
    }
    if mtime > 999_999_999_999 {
        bail!("ar mtime {mtime} does not fit the 12-digit field; check SOURCE_DATE_EPOCH");
    }
    let header = format!("{name:<16}{mtime:<12}{:<6}{:<6}{:<8}{size:<10}`\n", 0, 0, "100644");
    debug_assert_eq!(header.len(), 60);
    out.write_all(header.as_bytes())?;
    Ok(())
}

/// The '\n' after an odd-sized member.
pub(super) fn member_padding(out: &mut impl Write, size: u64) -> Result<()> {
    if size % 2 == 1 {
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_matches_dpkg_deb() {
        let mut v = Vec::new();
        super::member_header(&mut v, "debian-binary", 4, 1_700_000_000).unwrap();
        assert_eq!(v, b"debian-binary   1700000000  0     0     100644  4         `\n".to_vec());
        assert!(super::member_header(&mut Vec::new(), "control.tar.zstd", 1, 1).is_err());
    }
}
