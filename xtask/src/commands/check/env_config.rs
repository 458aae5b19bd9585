//! `env-config`: the env files dist.yaml `envs` names (config.yaml, config.ngrok.yaml,
//! config.prod.yaml) must agree, because one build bundles any of them as config.yaml and the
//! services reject a missing key or a wrong type at start-up — on the terminal, not here.
//!
//! Rules, per key path (nested mappings are compared key by key):
//! - every env has the same keys;
//! - the same type in every env, except that an integer and a float may differ (the services
//!   read a YAML `5` as `5.0` where a number is expected, kt_common's `_coerce`);
//! - `null` is never allowed: the services take no null value, so an unset optional value is
//!   written `""`;
//! - no empty value (`""`, blank, `[]`, `{}`) unless the key is optional, which the files say
//!   next to the value: a comment on the key's line in some env that explains `""` (e.g.
//!   `WS_PORT: ""  # "" = default port of WS_SCHEME`). The reason to leave a value empty
//!   stays beside it, and a key emptied by mistake is caught.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Result;
use serde_yaml::Value;

use super::{Problem, key_line, line_comment};
use crate::config::CONFIG_FILE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    String,
    Integer,
    Float,
    Bool,
    Null,
    List,
    Map,
}

impl Kind {
    fn of(v: &Value) -> Kind {
        match v {
            Value::String(_) => Kind::String,
            Value::Number(n) if n.is_f64() => Kind::Float,
            Value::Number(_) => Kind::Integer,
            Value::Bool(_) => Kind::Bool,
            Value::Null => Kind::Null,
            Value::Sequence(_) => Kind::List,
            Value::Mapping(_) => Kind::Map,
            Value::Tagged(t) => Kind::of(&t.value),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Integer => "an integer",
            Kind::Float => "a float",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
            Kind::List => "a list",
            Kind::Map => "a mapping",
        }
    }

    /// The type differences the services accept (see the module comment).
    fn compatible(self, other: Kind) -> bool {
        self == other || matches!((self, other), (Kind::Integer, Kind::Float) | (Kind::Float, Kind::Integer))
    }
}

struct Leaf {
    kind: Kind,
    empty: bool,
}

struct EnvFile {
    env: String,
    /// Repository-relative, for messages.
    path: String,
    text: String,
    leaves: BTreeMap<Vec<String>, Leaf>,
}

impl EnvFile {
    fn at(&self, key: &[String]) -> String {
        let segs: Vec<&str> = key.iter().map(String::as_str).collect();
        match key_line(&self.text, &segs) {
            Some(l) => format!("{}:{l}", self.path),
            None => self.path.clone(),
        }
    }

    fn comment(&self, key: &[String]) -> Option<&str> {
        let segs: Vec<&str> = key.iter().map(String::as_str).collect();
        let line = key_line(&self.text, &segs)?;
        line_comment(self.text.lines().nth(line - 1)?)
    }
}

fn flatten(v: &Value, prefix: &mut Vec<String>, out: &mut BTreeMap<Vec<String>, Leaf>) {
    if let Value::Mapping(m) = v
        && !m.is_empty()
    {
        for (k, child) in m {
            let key = match k {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
            };
            prefix.push(key);
            flatten(child, prefix, out);
            prefix.pop();
        }
        return;
    }
    let empty = match v {
        Value::String(s) => s.trim().is_empty(),
        Value::Sequence(s) => s.is_empty(),
        Value::Mapping(m) => m.is_empty(),
        Value::Null => true,
        _ => false,
    };
    out.insert(prefix.clone(), Leaf { kind: Kind::of(v), empty });
}

/// The envs (name → file relative to the Python folder) and that folder, read leniently from
/// dist.yaml's YAML: this check must not fail because an unrelated part of dist.yaml is wrong
/// (that is the dist-yaml check's finding).
pub fn envs(root: &Path) -> Result<(PathBuf, BTreeMap<String, PathBuf>)> {
    let text = std::fs::read_to_string(root.join(CONFIG_FILE))?;
    let doc: Value = serde_yaml::from_str(&text)?;
    let dir = doc.get("python").and_then(|p| p.get("dir")).and_then(Value::as_str).unwrap_or("python-service");
    let envs = doc
        .get("envs")
        .and_then(Value::as_mapping)
        .ok_or_else(|| anyhow::anyhow!("no `envs:` mapping"))?
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), PathBuf::from(v.as_str()?))))
        .collect();
    Ok((PathBuf::from(dir), envs))
}

pub fn check(root: &Path) -> Result<Vec<Problem>> {
    let (py_dir, envs) = match envs(root) {
        Ok(e) => e,
        Err(e) => {
            return Ok(vec![Problem::new(
                CONFIG_FILE,
                format!("cannot read the env list (envs:) from dist.yaml: {e}"),
                "fix dist.yaml first (the dist-yaml check names the problem)",
            )]);
        }
    };
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for (env, file) in &envs {
        let rel = py_dir.join(file).to_string_lossy().into_owned();
        let text = match std::fs::read_to_string(root.join(&rel)) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::new(
                    &rel,
                    format!("env `{env}`: cannot read it: {e}"),
                    format!("create {rel}, or fix `envs.{env}` in dist.yaml"),
                ));
                continue;
            }
        };
        let value: Value = match serde_yaml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let at = e.location().map_or(rel.clone(), |l| format!("{rel}:{}", l.line()));
                problems.push(Problem::new(at, format!("not valid YAML: {e}"), "fix the YAML syntax at that line"));
                continue;
            }
        };
        if !matches!(value, Value::Mapping(_)) {
            problems.push(Problem::new(
                &rel,
                "must be a mapping of KEY: value",
                "write one `KEY: value` per line, like config.yaml",
            ));
            continue;
        }
        let mut leaves = BTreeMap::new();
        flatten(&value, &mut Vec::new(), &mut leaves);
        files.push(EnvFile { env: env.clone(), path: rel, text, leaves });
    }
    if files.is_empty() {
        return Ok(problems);
    }
    // The reference for types is the `default` env (dist.yaml requires one).
    let reference = files.iter().position(|f| f.env == "default").unwrap_or(0);
    let mut keys: Vec<&Vec<String>> = files.iter().flat_map(|f| f.leaves.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let dotted = key.join(".");
        let have: Vec<&EnvFile> = files.iter().filter(|f| f.leaves.contains_key(key)).collect();
        let lack: Vec<&EnvFile> = files.iter().filter(|f| !f.leaves.contains_key(key)).collect();
        if !lack.is_empty() {
            let names = |fs: &[&EnvFile]| fs.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", ");
            if have.len() * 2 < files.len() {
                // In a minority of envs: more likely an extra (or misspelt) key there.
                for f in &have {
                    problems.push(Problem::new(
                        f.at(key),
                        format!("{dotted}: only in this env (not in {})", names(&lack)),
                        format!("remove {dotted} (or fix its spelling), or add it to {} as well", names(&lack)),
                    ));
                }
            } else {
                for f in &lack {
                    problems.push(Problem::new(
                        &f.path,
                        format!(
                            "{dotted}: missing (present in {})",
                            have.iter().map(|h| h.at(key)).collect::<Vec<_>>().join(", ")
                        ),
                        format!("add `{dotted}: <value for env {}>` to {}: every env has the same keys", f.env, f.path),
                    ));
                }
            }
        }
        // Types, against the reference env (or the first env that has the key).
        let base = if files[reference].leaves.contains_key(key) { &files[reference] } else { have[0] };
        let base_kind = base.leaves[key].kind;
        for f in &have {
            let leaf = &f.leaves[key];
            if leaf.kind == Kind::Null {
                problems.push(Problem::new(
                    f.at(key),
                    format!("{dotted}: null; the services take no null value"),
                    format!("give {dotted} a value ({} as in {})", base_kind.name(), base.at(key)),
                ));
            } else if !leaf.kind.compatible(base_kind) && base_kind != Kind::Null {
                problems.push(Problem::new(
                    f.at(key),
                    format!("{dotted}: {} here but {} in {}", leaf.kind.name(), base_kind.name(), base.at(key)),
                    format!(
                        "write {dotted} as {} in every env (quote strings, keep floats' decimal point)",
                        base_kind.name()
                    ),
                ));
            }
        }
        // Empty values, unless some env documents what "" means for this key.
        let optional = have.iter().any(|f| f.comment(key).is_some_and(|c| c.contains("\"\"")));
        for f in &have {
            let leaf = &f.leaves[key];
            if leaf.empty && leaf.kind != Kind::Null && !optional {
                problems.push(Problem::new(
                    f.at(key),
                    format!("{dotted}: empty, and the key is not documented as optional"),
                    format!(
                        "give {dotted} a value; if empty is meaningful for it, say what \"\" means in a comment on its line \
                         (like `WS_PORT: \"\"  # \"\" = default port of WS_SCHEME`)"
                    ),
                ));
            }
        }
    }
    Ok(problems)
}
