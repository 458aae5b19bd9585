//! `dockerfiles`: hadolint, plus rules hadolint does not have:
//! - no secret-looking `ARG`/`ENV` name: both are stored in the image's metadata and history,
//!   so a secret must come in as a BuildKit secret (`RUN --mount=type=secret`). A name is
//!   split into words (on `_`, `-` and camelCase) and flagged when a word is PASSWORD, PASSWD,
//!   TOKEN, SECRET(S), CREDENTIAL(S) or APIKEY, or is KEY without a word that makes it public
//!   or a locator (PUBLIC_KEY, KEY_ID, KEY_URL, KEY_FILE, KEY_PATH, KEY_SERVER...). Whole words
//!   only: KEYRING, KEYBOARD, TOKENIZERS_PARALLELISM and PWD (the working directory) are fine.
//! - base images pinned: `FROM image:tag` or `@sha256:`, never untagged or `:latest`.
//!   `FROM scratch` and earlier stage names are fine; `FROM ${ARG}` is judged by the ARG's
//!   default, which must exist (a build without `--build-arg` would otherwise fail).
//! - requirements before sources: a `COPY` of requirements*.txt comes before the `pip install`
//!   and before any `COPY` of sources, so a source edit never re-resolves dependencies.

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;

use super::Problem;
use crate::commands::check::tool_venv::Tool;

pub fn is_dockerfile(file: &str) -> bool {
    file.starts_with("Dockerfile") || file.ends_with(".Dockerfile") || file.ends_with(".dockerfile")
}

/// Every Dockerfile of the repository (outside build outputs and dependencies).
pub fn find(root: &Path) -> Vec<std::path::PathBuf> {
    let skip = ["target", "node_modules", ".git", ".venv", "dist", "build", "release"];
    let mut found: Vec<_> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !skip.contains(&e.file_name().to_string_lossy().as_ref()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && is_dockerfile(&e.file_name().to_string_lossy()))
        .map(|e| e.into_path())
        .collect();
    found.sort();
    found
}

pub fn check(root: &Path) -> Result<Vec<Problem>> {
    // `docker/Dockerfile.services:20 DL3008 warning: Pin versions in apt get install...`
    let parse = |line: &str| {
        let (at, rest) = line.split_once(' ')?;
        let (code, msg) = rest.split_once(' ')?;
        at.contains(':').then(|| {
            Problem::new(
                at,
                format!("hadolint {code} {msg}"),
                format!(
                    "follow the rule (https://github.com/hadolint/hadolint/wiki/{code}), or where it does not apply \
                     put `# hadolint ignore={code}` and the reason above the instruction"
                ),
            )
        })
    };
    super::rules_then_linter(root, &find(root), rules, Tool::Hadolint, &["--no-color"], parse)
}

/// One instruction, its continuation lines joined, with the line it starts on.
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<Instruction> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_none()) {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (line, false),
        };
        match &mut current {
            Some(ins) => {
                ins.args.push(' ');
                ins.args.push_str(body);
            }
            None => {
                let (kw, args) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
                current =
                    Some(Instruction { line: i + 1, keyword: kw.to_ascii_uppercase(), args: args.trim().to_string() });
            }
        }
        if !continues {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// `${NAME}` and `$NAME` replaced by known ARG defaults; unknown ones are left as they are.
fn substitute(s: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = s.to_string();
    for (k, v) in args {
        out = out.replace(&format!("${{{k}}}"), v).replace(&format!("${k}"), v);
    }
    out
}

/// The words of an ARG/ENV name, upper-cased: `dbPassword` and `DB_PASSWORD` give DB, PASSWORD.
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' || c == '.' {
            words.push(std::mem::take(&mut cur));
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_uppercase());
    }
    words.push(cur);
    words.retain(|w| !w.is_empty());
    words
}

pub fn secret_looking(name: &str) -> bool {
    const SECRET: [&str; 8] =
        ["PASSWORD", "PASSWD", "TOKEN", "SECRET", "SECRETS", "CREDENTIAL", "CREDENTIALS", "APIKEY"];
    // KEY next to one of these names something public or where a key is, not the key itself.
    const NOT_THE_KEY: [&str; 9] = ["PUBLIC", "PUB", "ID", "URL", "FILE", "PATH", "SERVER", "FINGERPRINT", "NAME"];
    let w = words(name);
    w.iter().any(|x| SECRET.contains(&x.as_str()))
        || (w.iter().any(|x| x == "KEY") && !w.iter().any(|x| NOT_THE_KEY.contains(&x.as_str())))
}

/// Names an `ARG` or `ENV` instruction declares (`ENV A=1 B=2`, legacy `ENV A 1`).
fn declared(ins: &Instruction) -> Vec<(String, Option<String>)> {
    let parts = shlex::split(&ins.args).unwrap_or_else(|| ins.args.split_whitespace().map(str::to_string).collect());
    if ins.keyword == "ENV" && !parts.first().is_some_and(|p| p.contains('=')) {
        return parts.first().map(|n| vec![(n.clone(), Some(parts[1..].join(" ")))]).unwrap_or_default();
    }
    parts
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (p.clone(), None),
        })
        .collect()
}

pub fn rules(file: &str, text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let ins = instructions(text);
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    let mut no_default: Vec<String> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut stage_args: BTreeMap<String, String> = BTreeMap::new();
    let (mut first_req, mut first_pip, mut first_src) = (None::<usize>, None::<usize>, None::<usize>);
    for i in &ins {
        let at = format!("{file}:{}", i.line);
        match i.keyword.as_str() {
            "ARG" | "ENV" => {
                for (name, default) in declared(i) {
                    if secret_looking(&name) {
                        problems.push(Problem::new(
                            &at,
                            format!("{} {name} looks like a secret; ARG and ENV values are stored in the image's metadata and history", i.keyword),
                            format!(
                                "drop the {} and pass it as a BuildKit secret: `RUN --mount=type=secret,id={} ...` \
                                 with `--secret id={},src=FILE` on the build command",
                                i.keyword,
                                name.to_ascii_lowercase(),
                                name.to_ascii_lowercase()
                            ),
                        ));
                    }
                    if i.keyword == "ARG" {
                        let target = if stages.is_empty() { &mut global } else { &mut stage_args };
                        match default {
                            Some(d) => {
                                target.insert(name, d);
                            }
                            None if stages.is_empty() => no_default.push(name),
                            None => {}
                        }
                    }
                }
            }
            "FROM" => {
                stage_args.clear();
                let parts: Vec<&str> = i.args.split_whitespace().filter(|p| !p.starts_with("--")).collect();
                let Some(image) = parts.first() else { continue };
                let resolved = substitute(image, &global);
                let lower = resolved.to_ascii_lowercase();
                let earlier_stage = stages.contains(&lower);
                if let Some(name) =
                    parts.iter().position(|p| p.eq_ignore_ascii_case("as")).and_then(|n| parts.get(n + 1))
                {
                    stages.push(name.to_ascii_lowercase());
                }
                if resolved.contains('$') {
                    let var = image.trim_start_matches('$').trim_start_matches('{').trim_end_matches('}');
                    let fix = if no_default.iter().any(|n| n == var) {
                        format!(
                            "give `ARG {var}` (before the first FROM) a pinned default, e.g. `ARG {var}=python:3.11-slim-bookworm`"
                        )
                    } else {
                        format!("declare `ARG {var}=image:tag` before the first FROM")
                    };
                    problems.push(Problem::new(&at, format!("FROM {image}: the base image has no default, so it cannot be checked or built without --build-arg"), fix));
                    continue;
                }
                if lower == "scratch" || earlier_stage || lower.contains("@sha256:") {
                    continue;
                }
                let name_part = resolved.rsplit('/').next().unwrap_or(&resolved);
                let shown = if resolved == *image { resolved.clone() } else { format!("{image} (= {resolved})") };
                match name_part.split_once(':') {
                    None => problems.push(Problem::new(
                        &at,
                        format!("FROM {shown}: untagged base image (means :latest, which moves)"),
                        format!("pin a version tag: `FROM {resolved}:<version>` (or a digest @sha256:...)"),
                    )),
                    Some((_, "latest")) => problems.push(Problem::new(
                        &at,
                        format!("FROM {shown}: `latest` moves; builds would not be repeatable"),
                        "pin a version tag (e.g. python:3.11-slim-bookworm) or a digest @sha256:...",
                    )),
                    Some(_) => {}
                }
            }
            "COPY" | "ADD" => {
                if i.args.split_whitespace().any(|a| a.starts_with("--from")) {
                    continue;
                }
                let mut known = global.clone();
                known.extend(stage_args.clone());
                let resolved = substitute(&i.args, &known);
                let paths: Vec<&str> = resolved.split_whitespace().filter(|p| !p.starts_with("--")).collect();
                let sources = &paths[..paths.len().saturating_sub(1)];
                let is_req = |s: &&str| {
                    let f = s.rsplit('/').next().unwrap_or(s);
                    f.starts_with("requirements") && f.ends_with(".txt")
                };
                let is_src = |s: &&str| {
                    *s == "."
                        || s.ends_with(".py")
                        || s.split('/').any(|c| c == "src")
                        || s.trim_end_matches('/') == "python-service"
                };
                if sources.iter().any(is_req) && first_req.is_none() {
                    first_req = Some(i.line);
                }
                if sources.iter().any(is_src) && first_src.is_none() {
                    first_src = Some(i.line);
                }
            }
            "RUN" if i.args.contains("pip install") || i.args.contains("pip3 install") => {
                first_pip.get_or_insert(i.line);
            }
            _ => {}
        }
    }
    if let Some(pip) = first_pip {
        if first_req.is_none_or(|r| r > pip) {
            problems.push(Problem::new(
                format!("{file}:{pip}"),
                "pip install runs before any COPY of requirements*.txt",
                "COPY the requirements files first, then `pip install -r` them, then COPY the sources",
            ));
        }
        if let Some(src) = first_src.filter(|&s| s < pip) {
            problems.push(Problem::new(
                format!("{file}:{src}"),
                format!("sources are copied before the pip install on line {pip}: every source edit re-installs the dependencies"),
                "move the COPY of the sources after the `pip install` (copy requirements*.txt alone before it)",
            ));
        }
    }
    if let (Some(req), Some(src)) = (first_req, first_src)
        && src < req
    {
        problems.push(Problem::new(
            format!("{file}:{src}"),
            format!("sources are copied before requirements*.txt (line {req})"),
            "COPY requirements*.txt first, install them, then COPY the sources",
        ));
    }
    problems
}
