//! Where in dist.yaml's text an error is: serde_yaml's marks turned into `dist.yaml:LINE:COL`,
//! and values found again in the text for errors found after parsing.

use std::path::Path;

use super::CONFIG_FILE;

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
    let (line, column) = refine(text, &msg, loc.line(), loc.column());
    let source = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    anyhow::anyhow!(
        "{CONFIG_FILE}:{line}:{column}: {msg}\n  {line} | {source}\n  {}^",
        " ".repeat(line.to_string().len() + 3 + column.saturating_sub(1))
    )
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
