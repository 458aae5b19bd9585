//! A .deb's `md5sums` control file held against its data.tar as the stream passes: every
//! regular file's bytes hash to the sum its line gives, every line names a file the package
//! holds, and every regular file has a line (conffiles excepted: `dh_md5sums` leaves them out,
//! as dpkg records their sums itself).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::Path;

use md5::Digest as _;

use super::report::{InputError, InputErrorKind};

/// The sums `md5sums` promises, by installed path without a leading "./" or "/".
pub(super) struct Md5sums {
    want: BTreeMap<String, [u8; 16]>,
    /// Paths `conffiles` names: their lines are optional.
    conffiles: BTreeSet<String>,
    /// The sum of each regular file read so far, for hard links to it.
    seen: BTreeMap<String, [u8; 16]>,
    /// The first difference found.
    first_error: Option<InputError>,
}

/// `./usr/bin/x`, `/usr/bin/x` and `usr/bin/x` are one installed path.
fn installed(path: &str) -> &str {
    path.trim_start_matches("./").trim_start_matches('/')
}

impl Md5sums {
    /// Parse `text` (md5sum's output format: 32 hex digits, one or two spaces or " *", the
    /// path) and `conffiles` (one absolute path a line). `member` names control.tar in errors.
    pub fn parse(text: &str, conffiles: &str, file: &Path, member: &str) -> Result<Md5sums, InputError> {
        let mut want = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: &str| {
                InputError::new(file, InputErrorKind::Md5sums, format!("md5sums line {}: {line:?} {why}", n + 1))
                    .member(format!("{member} -> ./md5sums"))
            };
            let (hex, rest) = line.split_at_checked(32).ok_or_else(|| bad("is not `<md5>  <path>`"))?;
            let sum = parse_hex(hex).ok_or_else(|| bad("does not start with 32 hex digits"))?;
            let path = rest.strip_prefix("  ").or_else(|| rest.strip_prefix(" *")).or_else(|| rest.strip_prefix(' '));
            let path = path.map(installed).filter(|p| !p.is_empty()).ok_or_else(|| bad("names no path"))?;
            if want.insert(path.to_string(), sum).is_some() {
                return Err(bad("repeats a path listed above"));
            }
        }
        let conffiles = conffiles.lines().map(|l| installed(l.trim()).to_string()).filter(|l| !l.is_empty()).collect();
        Ok(Md5sums { want, conffiles, seen: BTreeMap::new(), first_error: None })
    }

    /// One data.tar entry: a regular file is hashed to its end, a hard link takes the sum of
    /// the file it links to. `at` names the entry in errors ("data.tar.xz -> ./usr/bin/x").
    pub fn visit<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        display: &str,
        file: &Path,
        at: String,
    ) -> io::Result<()> {
        let path = installed(display).to_string();
        let kind = entry.header().entry_type();
        let sum = if kind.is_file() {
            let mut hasher = md5::Md5::new();
            io::copy(entry, &mut hasher)?;
            let sum: [u8; 16] = hasher.finalize().into();
            self.seen.insert(path.clone(), sum);
            sum
        } else if kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| installed(&String::from_utf8_lossy(&t)).to_string());
            match target.and_then(|t| self.seen.get(&t).copied()) {
                Some(sum) => sum,
                None => return Ok(()),
            }
        } else {
            return Ok(());
        };
        let problem = match self.want.get(&path) {
            Some(want) if *want == sum => return Ok(()),
            Some(want) => format!(
                "its bytes have MD5 {}, the package's md5sums says {}: the data is damaged",
                crate::fingerprint::hex(&sum),
                crate::fingerprint::hex(want)
            ),
            None if self.conffiles.contains(&path) => return Ok(()),
            None => "md5sums has no line for this file".to_string(),
        };
        self.fail(InputError::new(file, InputErrorKind::Md5sums, problem).member(at));
        Ok(())
    }

    fn fail(&mut self, err: InputError) {
        self.first_error.get_or_insert(err);
    }

    /// The verdict once data.tar has ended: the first difference, else a line naming a file
    /// the package does not hold.
    pub fn finish(mut self, file: &Path, member: &str) -> Result<(), InputError> {
        if let Some(missing) = self.want.keys().find(|p| !self.seen.contains_key(*p)) {
            let detail = format!("md5sums lists ./{missing}, which {member} does not hold as a file");
            self.fail(InputError::new(file, InputErrorKind::Md5sums, detail).member(member.to_string()));
        }
        self.first_error.map_or(Ok(()), Err)
    }
}

fn parse_hex(hex: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_in_md5sums_formats_and_bad_lines_are_named() {
        let p = Path::new("x.deb");
        let sums = Md5sums::parse(
            "d41d8cd98f00b204e9800998ecf8427e  usr/a\nd41d8cd98f00b204e9800998ecf8427e *./usr/b\n",
            "/etc/c\n",
            p,
            "control.tar.xz",
        )
        .unwrap();
        assert_eq!(sums.want.keys().collect::<Vec<_>>(), ["usr/a", "usr/b"]);
        assert!(sums.conffiles.contains("etc/c"));
        for (text, why) in [
            ("zz1d8cd98f00b204e9800998ecf8427e  usr/a\n", "32 hex digits"),
            ("d41d8cd98f00b204e9800998ecf8427e\n", "names no path"),
            ("short\n", "is not"),
            ("d41d8cd98f00b204e9800998ecf8427e  a\nd41d8cd98f00b204e9800998ecf8427e  ./a\n", "line 2"),
        ] {
            let err = Md5sums::parse(text, "", p, "control.tar.xz").err().unwrap().to_string();
            assert!(err.contains(why) && err.contains("./md5sums"), "{err}");
        }
    }
}
