//! Where in dist.yaml's text an error is: serde_yaml's marks turned into `dist.yaml:LINE:COL`,
//! and values found again in the text for errors found after parsing.

use std::path::Path;

use super::CONFIG_FILE;
use crate::arch::Arch;

/// `dist.yaml:LINE:COL` of the first occurrence of `value`, for errors found after parsing
/// (serde_yaml has no spans for values once deserialized).
pub(super) fn at(text: &str, value: &Path) -> String {
    let needle = value.to_string_lossy();
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(needle.as_ref()) {
            return format!("{CONFIG_FILE}:{}:{}", i + 1, col + 1);
        }
    }
    CONFIG_FILE.to_string()
}

/// Turn serde_yaml's error into `dist.yaml:LINE:COL: path: message` plus the offending line.
pub(super) fn located(text: &str, e: serde_yaml::Error) -> anyhow::Error {
    let msg = e.to_string();
    // serde_yaml appends " at line L column C"; we lead with it instead, compiler-style.
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let Some(loc) = e.location() else {
        return anyhow::anyhow!("{CONFIG_FILE}: {msg}");
    };
    let (line, column, msg) = tab(text, &msg, loc.line(), loc.column())
        .or_else(|| duplicate(text, &msg, loc.line(), loc.column()))
        .unwrap_or_else(|| {
            let (line, column) = refine(text, &msg, loc.line(), loc.column());
            (line, column, msg)
        });
    let source = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    anyhow::anyhow!(
        "{CONFIG_FILE}:{line}:{column}: {msg}\n  {line} | {source}\n  {}^",
        " ".repeat(line.to_string().len() + 3 + column.saturating_sub(1))
    )
}

/// libyaml's words for a tab in indentation ("found character that cannot start any token",
/// "found a tab character that violates indentation", ...) say neither what nor how to fix.
/// Its mark is on the tab's line.
fn tab(text: &str, msg: &str, line: usize, column: usize) -> Option<(usize, usize, String)> {
    let scanner = msg.contains("cannot start any token") || msg.contains("tab character");
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let indent: Vec<char> = l.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
    let at = indent.iter().position(|c| *c == '\t')?;
    scanner.then(|| {
        let fix = "tabs are not allowed in YAML indentation; indent with spaces (replace the tab with spaces, \
                   lining the key up with its siblings)";
        (line, if column == at + 1 { column } else { at + 1 }, fix.to_string())
    })
}

/// A key given twice. serde_yaml marks the start of the mapping (its first key, or its `{`),
/// which is where the first of the two usually is: point at the second one instead, and say
/// where the first is.
fn duplicate(text: &str, msg: &str, line: usize, column: usize) -> Option<(usize, usize, String)> {
    // serde_yaml leads with the path of the mapping: `targets.arm64: duplicate field ...`.
    let (path, rest) = match msg.split_once(": ") {
        Some((p, r)) if !p.contains([' ', '`']) => (&msg[..p.len() + 2], r),
        _ => ("", msg),
    };
    let named = |prefix: &str| rest.strip_prefix(prefix).and_then(|r| r.strip_suffix('`'));
    let (second, first, what) = if let Some(k) = named("duplicate field `").or_else(|| named("duplicate key `")) {
        (k, k, super::keys::duplicate_key(k))
    } else {
        let (second, first) = super::keys::parse_same_arch(rest)?;
        (second, first, rest.to_string())
    };
    let keys = mapping_keys(&text.lines().collect::<Vec<_>>(), line, column);
    let i = keys.iter().position(|k| k.name == first)?;
    let j = i + 1 + keys[i + 1..].iter().position(|k| k.name == second)?;
    let (a, b) = (&keys[i], &keys[j]);
    Some((
        b.line,
        b.column,
        format!("{path}{what} (the first is at line {}:{}); keep one of the two", a.line, a.column),
    ))
}

/// serde_yaml locates an error in a map *key* (an unknown arch) at the start of the map.
/// When the message quotes the bad value, point at its first occurrence from there on.
fn refine(text: &str, msg: &str, line: usize, column: usize) -> (usize, usize) {
    let quoted = msg.split('`').nth(1).filter(|q| !q.is_empty());
    if let Some(q) = quoted {
        for (i, l) in text.lines().enumerate().skip(line.saturating_sub(1)) {
            let bare = l.trim_start();
            let key_or_value = bare.starts_with(&format!("{q}:"))
                || bare.ends_with(&format!(": {q}"))
                || bare.ends_with(&format!(": \"{q}\""));
            if key_or_value {
                return (i + 1, l.find(q).map_or(column, |c| c + 1));
            }
        }
    }
    (line, column)
}

/// `dist.yaml:LINE:COL` of the value of the key at `path` (`["packaging", "deb",
/// "compression_level"]`), else of the key itself, for errors found after parsing.
pub(super) fn key_at(text: &str, path: &[&str]) -> String {
    match key_path(text, path) {
        Some(k) => format!("{CONFIG_FILE}:{}:{}", k.line, k.value_column.unwrap_or(k.column)),
        None => CONFIG_FILE.to_string(),
    }
}

/// [`key_at`] for a field of `targets.<arch>`, whichever of the arch's names the key uses.
pub(super) fn target_at(text: &str, arch: Arch, field: &str) -> String {
    std::iter::once(arch.name())
        .chain(arch.aliases().iter().copied())
        .find(|name| key_path(text, &["targets", name, field]).is_some())
        .map_or_else(|| CONFIG_FILE.to_string(), |name| key_at(text, &["targets", name, field]))
}

/// A key of a YAML mapping as written: its name without quotes, its 1-based line and column,
/// and the column of its value when the value starts on the key's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Key {
    pub name: String,
    pub line: usize,
    pub column: usize,
    pub value_column: Option<usize>,
}

/// The key at `path`, walking from the document's top-level mapping down.
pub(super) fn key_path(text: &str, path: &[&str]) -> Option<Key> {
    let lines: Vec<&str> = text.lines().collect();
    let top = lines.iter().position(|l| is_content(l) && !l.starts_with("---"))?;
    let (mut line, mut column) = (top + 1, indent(lines[top]) + 1);
    for (n, name) in path.iter().enumerate() {
        let key = mapping_keys(&lines, line, column).into_iter().find(|k| k.name == *name)?;
        if n + 1 == path.len() {
            return Some(key);
        }
        (line, column) = match key.value_column {
            Some(c) => (key.line, c),
            // A block mapping below: the next content line, indented deeper than the key.
            None => {
                let i = (key.line..lines.len()).find(|&i| is_content(lines[i]))?;
                (indent(lines[i]) >= key.column).then_some((i + 1, indent(lines[i]) + 1))?
            }
        };
    }
    None
}

/// The keys, in order, of the mapping that starts at `line:column` as serde_yaml marks it: a
/// block mapping's first key, or a flow mapping's `{` (an anchor or tag before either is skipped).
pub(super) fn mapping_keys(lines: &[&str], line: usize, column: usize) -> Vec<Key> {
    let (Some(mut li), Some(mut ci)) = (line.checked_sub(1), column.checked_sub(1)) else { return Vec::new() };
    // `&anchor` / `!tag` properties, then the mapping itself (perhaps on the next line).
    loop {
        let chars: Vec<char> = lines.get(li).map_or(Vec::new(), |l| l.chars().collect());
        match chars.get(ci) {
            Some('&' | '!') => {
                ci += chars[ci..].iter().take_while(|c| !c.is_whitespace()).count();
                ci += chars[ci..].iter().take_while(|c| c.is_whitespace()).count();
                if ci >= chars.len() || chars[ci] == '#' {
                    let Some(next) = (li + 1..lines.len()).find(|&i| is_content(lines[i])) else { return Vec::new() };
                    (li, ci) = (next, indent(lines[next]));
                }
            }
            Some('{') => return flow_keys(lines, li, ci),
            Some(_) => return block_keys(lines, li, ci),
            None => return Vec::new(),
        }
    }
}

/// Keys of a block mapping whose keys sit at column `ci` (0-based), from line `li`.
fn block_keys(lines: &[&str], li: usize, ci: usize) -> Vec<Key> {
    let mut keys = Vec::new();
    for (i, l) in lines.iter().enumerate().skip(li) {
        if i > li {
            if !is_content(l) {
                continue;
            }
            if l.starts_with("---") || l.starts_with("...") || indent(l) < ci {
                break;
            }
            // Deeper: the values of this mapping. A `-` at the keys' indent: a sequence value.
            if indent(l) > ci || l[ci..].starts_with('-') {
                continue;
            }
        }
        let chars: Vec<char> = l.chars().collect();
        if let Some(k) = key(&chars, i, ci, false) {
            keys.push(k);
        }
    }
    keys
}

/// Keys of the flow mapping whose `{` is at line `li`, column `ci` (0-based): those at its own
/// nesting depth, after the `{` and after each `,`.
fn flow_keys(lines: &[&str], li: usize, ci: usize) -> Vec<Key> {
    let mut keys = Vec::new();
    let (mut depth, mut expect_key, mut quote) = (0usize, false, None::<char>);
    for (i, l) in lines.iter().enumerate().skip(li) {
        let chars: Vec<char> = l.chars().collect();
        let mut c = if i == li { ci } else { 0 };
        while c < chars.len() {
            let ch = chars[c];
            if let Some(q) = quote {
                if ch == q {
                    quote = None;
                }
                c += 1;
                continue;
            }
            if ch == '#' && (c == 0 || chars[c - 1].is_whitespace()) {
                break;
            }
            if depth == 1 && expect_key && !ch.is_whitespace() && ch != '}' {
                expect_key = false;
                if let Some(k) = key(&chars, i, c, true) {
                    keys.push(k);
                }
            }
            match ch {
                '"' | '\'' => quote = Some(ch),
                '{' | '[' => {
                    depth += 1;
                    expect_key = depth == 1;
                }
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return keys;
                    }
                }
                ',' if depth == 1 => expect_key = true,
                _ => {}
            }
            c += 1;
        }
    }
    keys
}

/// The key starting at `chars[c]` of line `li` (0-based), if one does: a plain or quoted
/// scalar followed by `:`.
fn key(chars: &[char], li: usize, c: usize, flow: bool) -> Option<Key> {
    let rest = &chars[c..];
    let (name, len) = match rest.first()? {
        q @ ('"' | '\'') => {
            let end = 1 + rest[1..].iter().position(|ch| ch == q)?;
            (rest[1..end].iter().collect::<String>(), end + 1)
        }
        _ => {
            let end = (0..rest.len()).find(|&i| {
                let ends_key =
                    rest[i] == ':' && rest.get(i + 1).is_none_or(|n| n.is_whitespace() || flow && ",}]".contains(*n));
                ends_key || flow && ",}]".contains(rest[i])
            })?;
            (rest[..end].iter().collect::<String>().trim_end().to_string(), end)
        }
    };
    let after = &rest[len..];
    let colon = after.iter().position(|ch| !ch.is_whitespace())?;
    if after[colon] != ':' || name.is_empty() {
        return None;
    }
    let value = colon + 1 + after[colon + 1..].iter().take_while(|ch| ch.is_whitespace()).count();
    let value_column = after.get(value).filter(|ch| **ch != '#').map(|_| c + len + value + 1);
    Some(Key { name, line: li + 1, column: c + 1, value_column })
}

fn is_content(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

fn indent(line: &str) -> usize {
    line.chars().take_while(|c| *c == ' ').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str, line: usize, column: usize) -> Vec<(String, usize, usize)> {
        let lines: Vec<&str> = text.lines().collect();
        mapping_keys(&lines, line, column).into_iter().map(|k| (k.name, k.line, k.column)).collect()
    }

    #[test]
    fn mapping_keys_are_read_from_block_and_flow_mappings() {
        let text = "a:\n  # a comment\n  b: 1\n  c:\n    d: 2\n  - x\n  \"e f\": |\n    g: text\n  'h': {i: 1, j: [1, {k: 2}], \"l\": 3}\nm: 4\n";
        let keys = names(text, 3, 3);
        let want = [("b", 3, 3), ("c", 4, 3), ("e f", 7, 3), ("h", 9, 3)];
        assert_eq!(keys, want.map(|(n, l, c)| (n.to_string(), l, c)));
        assert_eq!(names(text, 9, 8), [("i", 9, 9), ("j", 9, 15), ("l", 9, 31)].map(|(n, l, c)| (n.to_string(), l, c)));
        assert_eq!(names(text, 1, 1).iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["a", "m"]);
        // serde_yaml marks an anchored mapping at its anchor.
        assert_eq!(names("s: &x\n  a: 1\n  b: 2\n", 1, 4).len(), 2);
        assert_eq!(names("s: &x {a: 1}\n", 1, 4).len(), 1);
    }

    #[test]
    fn key_at_walks_the_path_to_the_value() {
        let text = "# head\npackaging:\n  deb:\n    # level: 1\n    compression_level: 10\n  rpm: {level: 3}\n";
        assert_eq!(key_at(text, &["packaging", "deb", "compression_level"]), "dist.yaml:5:24");
        assert_eq!(key_at(text, &["packaging", "rpm", "level"]), "dist.yaml:6:16");
        assert_eq!(key_at(text, &["packaging", "deb"]), "dist.yaml:3:3");
        assert_eq!(key_at(text, &["packaging", "nope"]), "dist.yaml");
        let targets = "targets:\n  aarch64:\n    base: {image: x}\n";
        assert_eq!(target_at(targets, Arch::Arm64, "base"), "dist.yaml:3:11");
    }
}
