//! Turns the caller's entries into the exact list data.tar will hold: validated paths,
//! implicit parent directories, normalised modes, one canonical order.
//!
//! The order is depth-first with siblings sorted by name bytes (what `tar --sort=name`
//! and dpkg-deb produce): every directory comes right before its contents, so dpkg never
//! meets a child whose parent it has not created yet.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;
use std::path::Path;

use anyhow::{Result, bail};

use super::spec::{Entry, Source};

/// What kind of object a tar item is, borrowing the content source from the spec.
#[derive(Debug, Clone, Copy)]
pub(super) enum ItemKind<'a> {
    Dir,
    File(FileSource<'a>),
    Symlink(&'a Path),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum FileSource<'a> {
    Path(&'a Path),
    Bytes(&'a [u8]),
}

/// One data.tar member.
#[derive(Debug, Clone)]
pub(super) struct Item<'a> {
    /// Path inside the tar: "./", "./opt/", "./opt/KitchnTabs/kitchntabs".
    pub tar_path: String,
    pub kind: ItemKind<'a>,
    /// Normalised permission bits (including setuid/setgid/sticky).
    pub mode: u32,
}

impl Item<'_> {
    /// The installed path without the leading "./", as md5sums wants it.
    pub fn md5sums_path(&self) -> &str {
        self.tar_path.trim_start_matches("./")
    }
}

/// Normalise a mode: the rules dpkg-deb users get from `--root-owner-group` plus a
/// umask-independent build (why: the build machine's umask must not leak into the
/// package).
pub(super) fn normalise_mode(kind_is_dir: bool, is_symlink: bool, mode: u32) -> u32 {
    let special = mode & 0o7000;
    if is_symlink {
        0o777
    } else if kind_is_dir || mode & 0o111 != 0 {
        special | 0o755
    } else {
        special | 0o644
    }
}

/// Validate an absolute package path and split it into components.
fn components(path: &str) -> Result<Vec<&str>> {
    let Some(rest) = path.strip_prefix('/') else {
        bail!("entry {path:?}: package paths must be absolute, e.g. \"/opt/KitchnTabs/x\"");
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    for part in &parts {
        match *part {
            "" => bail!("entry {path:?}: empty path component (\"//\"); remove the double slash"),
            "." | ".." => {
                bail!("entry {path:?}: \".\" and \"..\" are not allowed; give the plain path")
            }
            p if p.contains('\0') || p.contains('\n') => {
                bail!("entry {path:?}: NUL or newline in a file name breaks md5sums and dpkg; rename it")
            }
            _ => {}
        }
    }
    Ok(parts)
}

/// Build the sorted item list. Errors on duplicates and on a file or symlink that would
/// have to be a directory.
pub(super) fn plan(entries: &[Entry]) -> Result<Vec<Item<'_>>> {
    // Key: path components. BTreeMap<Vec<&str>> orders component-wise, which is exactly
    // the depth-first, name-sorted order (a parent's key is a prefix of its children's).
    let mut map: BTreeMap<Vec<&str>, (ItemKind<'_>, u32, bool)> = BTreeMap::new();
    map.insert(Vec::new(), (ItemKind::Dir, 0o755, false));

    for entry in entries {
        let parts = components(&entry.path)?;
        let (kind, is_dir, is_link) = match &entry.source {
            Source::Dir => (ItemKind::Dir, true, false),
            Source::File(p) => (ItemKind::File(FileSource::Path(p)), false, false),
            Source::Bytes(b) => (ItemKind::File(FileSource::Bytes(b)), false, false),
            Source::Symlink(t) => {
                if t.as_os_str().is_empty() {
                    bail!("entry {:?}: symlink with an empty target", entry.path);
                }
                (ItemKind::Symlink(t), false, true)
            }
        };
        if !is_dir && parts.is_empty() {
            bail!("entry {:?}: the root can only be a directory", entry.path);
        }
        let mode = normalise_mode(is_dir, is_link, entry.mode);
        // Implicit parents (e.g. /opt, /usr/share) are plain 0755 directories.
        for depth in 0..parts.len() {
            map.entry(parts[..depth].to_vec()).or_insert((ItemKind::Dir, 0o755, false));
        }
        match map.entry(parts) {
            MapEntry::Vacant(v) => {
                v.insert((kind, mode, true));
            }
            MapEntry::Occupied(mut o) => {
                let (old_kind, _, explicit) = *o.get();
                match (old_kind, kind) {
                    // An explicit directory replaces an implicit one (its mode wins) and a
                    // repeated directory is harmless (add_tree of overlapping trees).
                    (ItemKind::Dir, ItemKind::Dir) => {
                        if !explicit || mode == o.get().1 {
                            o.insert((kind, mode, true));
                        } else {
                            bail!(
                                "entry {:?} is given twice as a directory with different modes \
                                 ({:o} and {mode:o}); keep one",
                                entry.path,
                                o.get().1
                            );
                        }
                    }
                    _ => bail!(
                        "entry {:?} is given twice (or is both a file and a directory); \
                         remove the duplicate",
                        entry.path
                    ),
                }
            }
        }
    }

    // A file or symlink must not have children: dpkg would fail half-way through unpacking.
    let mut prev: Option<(&Vec<&str>, bool)> = None;
    for (key, (kind, _, _)) in &map {
        if let Some((pk, pdir)) = prev
            && !pdir
            && key.len() > pk.len()
            && key.starts_with(pk)
        {
            bail!("entry /{} is a file or symlink but /{} is inside it; fix the paths", pk.join("/"), key.join("/"));
        }
        prev = Some((key, matches!(kind, ItemKind::Dir)));
    }

    Ok(map
        .into_iter()
        .map(|(parts, (kind, mode, _))| {
            let mut tar_path = String::from("./");
            tar_path.push_str(&parts.join("/"));
            if matches!(kind, ItemKind::Dir) && !parts.is_empty() {
                tar_path.push('/');
            }
            Item { tar_path, kind, mode }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(items: &[Item<'_>]) -> Vec<String> {
        items.iter().map(|i| i.tar_path.clone()).collect()
    }

    #[test]
    fn implicit_parents_and_depth_first_order() {
        let entries = vec![
            Entry::bytes("/usr/share/doc/k/copyright", "x", 0o644),
            Entry::bytes("/opt/a-b", "x", 0o644),
            Entry::bytes("/opt/a/c", "x", 0o755),
            Entry::symlink("/opt/a/l", "c"),
        ];
        let items = plan(&entries).unwrap();
        assert_eq!(
            paths(&items),
            [
                "./",
                "./opt/",
                "./opt/a/",
                "./opt/a/c",
                "./opt/a/l",
                "./opt/a-b",
                "./usr/",
                "./usr/share/",
                "./usr/share/doc/",
                "./usr/share/doc/k/",
                "./usr/share/doc/k/copyright",
            ]
        );
    }

    #[test]
    fn modes_are_normalised_and_setuid_kept() {
        assert_eq!(normalise_mode(false, false, 0o600), 0o644);
        assert_eq!(normalise_mode(false, false, 0o700), 0o755);
        assert_eq!(normalise_mode(false, false, 0o4755), 0o4755);
        assert_eq!(normalise_mode(true, false, 0o700), 0o755);
        assert_eq!(normalise_mode(false, true, 0o644), 0o777);
    }

    #[test]
    fn duplicates_and_bad_paths_are_refused() {
        let dup = vec![Entry::bytes("/a", "x", 0o644), Entry::bytes("/a", "y", 0o644)];
        assert!(plan(&dup).is_err());
        let under_file = vec![Entry::bytes("/a", "x", 0o644), Entry::bytes("/a/b", "y", 0o644)];
        assert!(plan(&under_file).unwrap_err().to_string().contains("inside it"));
        for bad in ["rel/x", "/a//b", "/a/../b", "/a/./b"] {
            assert!(plan(&[Entry::bytes(bad, "x", 0o644)]).is_err(), "{bad}");
        }
    }
}
