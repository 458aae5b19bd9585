//! The crate's shape, checked as rust-analyzer's tidy test checks its own: every module says
//! what it is for in a `//!` doc, and no two modules import each other, directly or around a
//! loop. Data flows one way (config → plan → run → verify → report) only if the imports do.
//!
//! Nodes are the module files of `xtask/src` outside `#[cfg(test)]`; an edge is any path one
//! of them names into another (`use crate::a::b`, `crate::a::f()`, `super::x`), re-exports
//! included. A `mod x;` line is not an edge.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// `src/a/b.rs` and `src/a/b/mod.rs` → `a::b`; `lib.rs` and `main.rs` → the crate root.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        return "crate".into();
    }
    parts.join("::")
}

/// The source without comments, string and char literals (their text is not code).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#")) {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' && (i == 0 || !(b[i - 1] as char).is_alphanumeric()) {
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{1F}') but not a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..].iter().position(|&c| c == b'\'').map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                let c = text[i + 1..].chars().next().unwrap_or(' ');
                (text.as_bytes().get(i + 1 + c.len_utf8()) == Some(&b'\'')).then(|| i + 1 + c.len_utf8())
            };
            match end {
                Some(e) => {
                    out.push_str("' '");
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Cut every item behind `#[cfg(test)]` (or `#[cfg(any(test, ...))]`): test code may reach
/// anywhere. The item ends at its `;` or its balanced `{...}`.
fn without_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after.char_indices().skip("#[cfg(test)]".len()) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Module names declared behind `#[cfg(test)]` (`#[cfg(test)] mod snapshot;`): whole test files.
fn test_only_children(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        let decl = after.strip_prefix("pub(crate) ").or_else(|| after.strip_prefix("pub ")).unwrap_or(after);
        if let Some(name) = decl.strip_prefix("mod ") {
            let name: String = name.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if name.len() < decl.len() && decl[4 + name.len()..].trim_start().starts_with(';') {
                out.push(name);
            }
        }
        rest = &rest[at + 1..];
    }
    out
}

/// Every path a module names: `crate::a::b`, `super::x`, and each leaf of a `use` tree.
fn paths_named(code: &str) -> Vec<Vec<String>> {
    let tokens: Vec<String> = {
        let mut t = Vec::new();
        let mut cur = String::new();
        let mut chars = code.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() || c == '_' {
                cur.push(c);
                continue;
            }
            if !cur.is_empty() {
                t.push(std::mem::take(&mut cur));
            }
            if c == ':' && chars.peek() == Some(&':') {
                chars.next();
                t.push("::".into());
            } else if "{},;*".contains(c) {
                t.push(c.to_string());
            } else if !c.is_whitespace() {
                t.push(" ".into());
            }
        }
        t
    };
    let mut out = Vec::new();
    // `use` trees: expand `a::{b, c::{d}}` into a::b, a::c::d.
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "use" {
            let end = tokens[i..].iter().position(|t| t == ";").map_or(tokens.len(), |p| i + p);
            expand(&tokens[i + 1..end], &[], &mut out);
            i = end;
        } else if (tokens[i] == "crate" || tokens[i] == "super" || tokens[i] == "self")
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || tokens[i - 1] != "::")
        {
            let mut path = vec![tokens[i].clone()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|t| t == "::") && tokens.get(j + 1).is_some_and(|t| t != "{" && t != "*") {
                path.push(tokens[j + 1].clone());
                j += 2;
            }
            out.push(path);
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn expand(tokens: &[String], prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut i = 0;
    let mut path = prefix.to_vec();
    while i < tokens.len() {
        match tokens[i].as_str() {
            "::" => i += 1,
            "{" => {
                // Split the group at top-level commas.
                let mut depth = 0;
                let mut start = i + 1;
                let mut j = i + 1;
                while j < tokens.len() {
                    match tokens[j].as_str() {
                        "{" => depth += 1,
                        "}" if depth == 0 => break,
                        "}" => depth -= 1,
                        "," if depth == 0 => {
                            expand(&tokens[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                expand(&tokens[start..j.min(tokens.len())], &path, out);
                return;
            }
            "," | "}" | ";" => break,
            "as" => break,
            "*" | " " => i += 1,
            t => {
                path.push(t.to_string());
                i += 1;
            }
        }
    }
    if path.len() > prefix.len() || !path.is_empty() {
        out.push(path);
    }
}

struct Crate {
    /// Module path → its file's code (tests cut).
    modules: BTreeMap<String, String>,
    files: BTreeMap<String, PathBuf>,
}

fn load() -> Crate {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut raw = BTreeMap::new();
    let mut files = BTreeMap::new();
    for e in walkdir::WalkDir::new(&src).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "rs") {
            let m = module_of(&src, e.path());
            raw.insert(m.clone(), std::fs::read_to_string(e.path()).unwrap());
            files.insert(m, e.path().to_path_buf());
        }
    }
    // Files that only tests compile: declared behind #[cfg(test)], and everything below them.
    let mut test_only: BTreeSet<String> = BTreeSet::new();
    for (m, text) in &raw {
        for child in test_only_children(&code_only(text)) {
            test_only.insert(if m == "crate" { child } else { format!("{m}::{child}") });
        }
    }
    let modules = raw
        .into_iter()
        .filter(|(m, _)| !test_only.iter().any(|t| m == t || m.starts_with(&format!("{t}::"))))
        .map(|(m, text)| {
            let code = without_test_items(&code_only(&text));
            (m, code)
        })
        .collect();
    Crate { modules, files }
}

/// The module a path lands in: the longest module prefix after resolving crate/super/self.
fn resolve(krate: &Crate, from: &str, path: &[String]) -> Option<String> {
    let mut base: Vec<String> = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" => from.split("::").filter(|s| *s != "crate").map(String::from).collect(),
        "super" => {
            let mut b: Vec<String> = from.split("::").filter(|s| *s != "crate").map(String::from).collect();
            let mut k = 0;
            while path.get(k).is_some_and(|p| p == "super") {
                b.pop();
                k += 1;
            }
            b.extend(path[k..].iter().cloned());
            return longest(krate, &b);
        }
        // A path from the crate root without `crate::` (2015 style) is not used here.
        _ => return None,
    };
    base.extend(path[1..].iter().cloned());
    longest(krate, &base)
}

fn longest(krate: &Crate, parts: &[String]) -> Option<String> {
    (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| krate.modules.contains_key(m))
}

fn graph(krate: &Crate) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in &krate.modules {
        let edges = g.entry(m.clone()).or_default();
        for p in paths_named(code) {
            if let Some(to) = resolve(krate, m, &p)
                && to != *m
            {
                edges.insert(to);
            }
        }
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let krate = load();
    let g = graph(&krate);
    let found = cycles(&g);
    let report: Vec<String> = found
        .iter()
        .map(|c| {
            let inside: BTreeSet<&String> = c.iter().collect();
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| g[a].iter().filter(|b| inside.contains(b)).map(move |b| format!("{a} -> {b}")))
                .collect();
            format!("{} modules: {}\n    {}", c.len(), c.join(", "), edges.join("\n    "))
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", report.join("\n"));
}

#[test]
fn every_module_says_what_it_is_for() {
    let krate = load();
    let missing: Vec<String> = krate
        .files
        .iter()
        .filter(|(m, _)| krate.modules.contains_key(*m))
        .filter(|(_, f)| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("//!"))
        })
        .map(|(_, f)| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "modules without a `//!` doc:\n{}", missing.join("\n"));
}

/// The checker itself: a made-up crate with one cycle and one clean edge.
#[test]
fn the_checker_finds_a_cycle_through_use_trees_super_and_inline_paths() {
    let code = |s: &str| without_test_items(&code_only(s));
    let mut modules = BTreeMap::new();
    modules.insert("a".to_string(), code("use crate::{b::{X, y}, c};\n// crate::d::Nope\nfn f() { \"crate::d\"; }"));
    modules.insert("b".to_string(), code("fn g() { crate::a::f(); }\n#[cfg(test)]\nmod tests { use crate::d::Z; }"));
    modules.insert("c".to_string(), code("pub fn h() {}"));
    modules.insert("d".to_string(), code("pub struct Z;"));
    modules.insert("c::inner".to_string(), code("use super::h;"));
    let krate = Crate { modules, files: BTreeMap::new() };
    let g = graph(&krate);
    assert_eq!(g["a"], BTreeSet::from(["b".to_string(), "c".to_string()]));
    assert_eq!(g["b"], BTreeSet::from(["a".to_string()]), "a test module's import is not an edge");
    assert_eq!(g["c::inner"], BTreeSet::from(["c".to_string()]));
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
}

/// dist.yaml is read where a command starts (`main.rs`), once: everything below takes the
/// loaded config or the plan's resolved specs.
#[test]
fn only_main_reads_dist_yaml() {
    let krate = load();
    // bench builds scratch checkouts of its own; check's dist-yaml check reads the file it checks.
    let other_checkouts = ["commands::bench", "commands::check"];
    let readers: Vec<&String> = krate
        .modules
        .iter()
        .filter(|(m, code)| *m != "crate" && !other_checkouts.contains(&m.as_str()) && code.contains("Config::load("))
        .map(|(m, _)| m)
        .collect();
    assert!(readers.is_empty(), "these modules read dist.yaml themselves: {readers:?}");
}
