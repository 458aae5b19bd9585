//! Symbolic links inside a tree (an unpacked folder, or the members of an archive),
//! resolved against the tree itself, one path component at a time as the kernel does,
//! never against the host's filesystem outside the tree.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Links followed while resolving one path before it counts as a loop (Linux's MAXSYMLINKS).
pub const MAX_HOPS: usize = 40;

/// What a tree holds at a path relative to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File,
    Dir,
    /// A symbolic link and its target as written.
    Link(PathBuf),
    /// A FIFO, socket or device.
    Other,
    Missing,
}

/// Where a tree is unpacked, which decides what an absolute or missing target means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// A folder or a tarball, which may be unpacked anywhere: an absolute target points
    /// out of it, and a missing target is a broken link.
    Detached,
    /// A .deb's data, unpacked at `/`: an absolute target is a path of the same tree
    /// (Debian links across top-level folders with absolute targets), and a target this
    /// package does not hold may be another package's file (a -dev package's
    /// `libfoo.so -> libfoo.so.1`).
    System,
}

/// Where a link ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A regular file at this path (relative to the root, no links in it).
    File(PathBuf),
    Dir,
    Other,
    /// Only under [`Root::System`]: the target is not in this tree.
    Elsewhere,
}

#[derive(Debug)]
pub enum LinkError {
    /// Under [`Root::Detached`]: this absolute target was met.
    Absolute(PathBuf),
    /// A `..` went above the root.
    AboveRoot,
    /// Nothing at this path (relative to the root).
    Dangling(PathBuf),
    /// This path is a file or special file, yet more components follow it.
    NotADirectory(PathBuf),
    /// More than [`MAX_HOPS`] links.
    Loop,
    /// The tree could not be read at this path.
    Io(PathBuf, io::Error),
}

impl LinkError {
    /// What went wrong, for a finding's "found" column.
    pub fn describe(&self) -> String {
        match self {
            LinkError::Absolute(target) => format!("absolute target {} points out of the tree", target.display()),
            LinkError::AboveRoot => "`..` climbs above the root of the tree".to_string(),
            LinkError::Dangling(at) => format!("nothing at {} in the tree", at.display()),
            LinkError::NotADirectory(at) => format!("{} is not a folder, yet the target goes through it", at.display()),
            LinkError::Loop => format!("more than {MAX_HOPS} links deep (a loop)"),
            LinkError::Io(at, err) => format!("cannot read {}: {err}", at.display()),
        }
    }
}

/// The path relative to a root, without `.` components; `None` for an absolute path
/// or one with a `..` component.
pub fn tree_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// One step of a walk: a name to enter or a `..`.
enum Step {
    Parent,
    Name(OsString),
}

/// Resolve the link at `link` (relative to the root) whose target is `target`;
/// `lookup` says what the tree holds at a path relative to the root.
pub fn resolve(
    link: &Path,
    target: &Path,
    root: Root,
    lookup: &mut dyn FnMut(&Path) -> io::Result<Node>,
) -> Result<Resolved, LinkError> {
    let mut at = link.parent().map(Path::to_path_buf).unwrap_or_default();
    // Steps still to walk, last first.
    let mut rest: Vec<Step> = Vec::new();
    enter(target, root, &mut at, &mut rest)?;
    let mut hops = 0;
    while let Some(step) = rest.pop() {
        let name = match step {
            Step::Parent => {
                if !at.pop() {
                    return Err(LinkError::AboveRoot);
                }
                continue;
            }
            Step::Name(name) => name,
        };
        let next = at.join(&name);
        match lookup(&next).map_err(|err| LinkError::Io(next.clone(), err))? {
            Node::Dir => at = next,
            Node::Link(to) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(LinkError::Loop);
                }
                // A relative target counts from the folder holding the link, `at`.
                enter(&to, root, &mut at, &mut rest)?;
            }
            Node::File if rest.is_empty() => return Ok(Resolved::File(next)),
            Node::Other if rest.is_empty() => return Ok(Resolved::Other),
            Node::File | Node::Other => return Err(LinkError::NotADirectory(next)),
            Node::Missing => {
                return match root {
                    Root::System => Ok(Resolved::Elsewhere),
                    Root::Detached => Err(LinkError::Dangling(next)),
                };
            }
        }
    }
    Ok(Resolved::Dir)
}

/// Push `target`'s steps onto `rest` (last first); an absolute target restarts at the root.
fn enter(target: &Path, root: Root, at: &mut PathBuf, rest: &mut Vec<Step>) -> Result<(), LinkError> {
    if target.is_absolute() {
        match root {
            Root::Detached => return Err(LinkError::Absolute(target.to_path_buf())),
            Root::System => at.clear(),
        }
    }
    for part in target.components().rev() {
        match part {
            Component::Normal(name) => rest.push(Step::Name(name.to_owned())),
            Component::ParentDir => rest.push(Step::Parent),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(())
}
