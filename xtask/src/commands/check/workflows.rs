//! `workflows`: structural rules over .github/workflows/ (each file parses; `on` and `jobs`;
//! every job has `runs-on` or `uses`; every step exactly one of `uses`/`run`; `needs` names
//! existing jobs; actions are referenced `owner/repo@ref`), then actionlint (from the tool
//! venv), which knows every key, expression and action input. actionlint runs without its
//! shellcheck and pyflakes integrations so its result does not depend on what else a machine
//! has installed; shell worth checking lives in ci/.

use std::path::Path;

use anyhow::Result;
use serde_yaml::Value;

use super::{Problem, key_line};
use crate::commands::check::tool_venv::Tool;

pub const DIR: &str = ".github/workflows";

pub fn files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(root.join(DIR))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    found.sort();
    found
}

pub fn check(root: &Path) -> Result<Vec<Problem>> {
    // `.github/workflows/ci.yml:12:9: message [rule]`
    let parse = |line: &str| {
        let mut parts = line.strip_prefix(DIR).map(|_| line.splitn(4, ':'))?;
        let (f, l, _col, msg) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        Some(Problem::new(
            format!("{f}:{l}"),
            format!("actionlint:{msg}"),
            "fix the workflow as the message says (https://github.com/rhysd/actionlint/blob/main/docs/checks.md)",
        ))
    };
    let args = ["-no-color", "-oneline", "-shellcheck=", "-pyflakes="];
    super::rules_then_linter(root, &files(root), rules, Tool::Actionlint, &args, parse)
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

pub fn rules(file: &str, text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let at = |path: &[&str]| key_line(text, path).map_or(file.to_string(), |l| format!("{file}:{l}"));
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e.location().map_or(file.to_string(), |l| format!("{file}:{}", l.line()));
            return vec![Problem::new(at, format!("not valid YAML: {e}"), "fix the YAML syntax at that line")];
        }
    };
    if get(&doc, "on").is_none() {
        problems.push(Problem::new(
            file,
            "no `on:` (the events that start the workflow)",
            "add e.g. `on: [push, pull_request]`",
        ));
    }
    let Some(jobs) = get(&doc, "jobs").and_then(Value::as_mapping).filter(|j| !j.is_empty()) else {
        problems.push(Problem::new(file, "no `jobs:` mapping", "add `jobs:` with at least one job"));
        return problems;
    };
    let ids: Vec<String> = jobs.keys().filter_map(|k| k.as_str().map(str::to_string)).collect();
    for (id, job) in jobs {
        let id = id.as_str().unwrap_or("?");
        let here = at(&["jobs", id]);
        if get(job, "runs-on").is_none() && get(job, "uses").is_none() {
            problems.push(Problem::new(
                &here,
                format!("job `{id}` has no `runs-on`"),
                format!("add `runs-on: ubuntu-latest` (or a reusable workflow `uses:`) to job `{id}`"),
            ));
        }
        let needs: Vec<&str> = match get(job, "needs") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Sequence(s)) => s.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for n in needs {
            if !ids.iter().any(|i| i == n) {
                problems.push(Problem::new(
                    at(&["jobs", id, "needs"]),
                    format!("job `{id}` needs `{n}`, which is not a job of this workflow (jobs: {})", ids.join(", ")),
                    "fix the job id in `needs:`",
                ));
            }
        }
        match get(job, "steps") {
            None => {}
            Some(Value::Sequence(steps)) => {
                for (n, step) in steps.iter().enumerate() {
                    let (uses, run) = (get(step, "uses"), get(step, "run"));
                    let name = get(step, "name")
                        .and_then(Value::as_str)
                        .map_or(format!("step {}", n + 1), |s| format!("step `{s}`"));
                    if uses.is_some() == run.is_some() {
                        problems.push(Problem::new(
                            &here,
                            format!("job `{id}`, {name}: needs exactly one of `uses:` and `run:`"),
                            "give the step either `uses: owner/action@version` or `run: command`",
                        ));
                    }
                    if let Some(u) = uses.and_then(Value::as_str)
                        && !u.starts_with("./")
                        && !u.starts_with("docker://")
                        && !u.contains('@')
                    {
                        problems.push(Problem::new(
                            &here,
                            format!("job `{id}`, {name}: `uses: {u}` has no @version"),
                            format!("pin it: `uses: {u}@v4` (a tag or a commit)"),
                        ));
                    }
                }
            }
            Some(_) => problems.push(Problem::new(
                at(&["jobs", id, "steps"]),
                format!("job `{id}`: `steps` is not a list"),
                "write each step as a `- ` list item",
            )),
        }
    }
    problems
}
