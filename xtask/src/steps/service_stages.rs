//! What a service build runs, from dist.yaml: PyInstaller's arguments (the same for a native
//! and a container build, with paths as each builder sees them) and, for container builds, the
//! Dockerfile stages after `docker/Dockerfile.services`: the shared sources and staged config,
//! one stage per service, and the export stages.
//!
//! The service stages are independent, so BuildKit runs them at once, and each is cached on its
//! own entry and data files: an edit to one service rebuilds that stage alone.

use std::path::{Component, Path};

use anyhow::{Context, Result, bail};

use crate::config::Config;

/// Where the container build puts the python project (`python.dir`) and the staged config.
pub const CONTAINER_PYTHON: &str = "/build";
pub const CONTAINER_STAGE: &str = "/build/stage";
/// The stage of the fixed part that the generated stages start from.
const BASE_STAGE: &str = "deps";
/// PyInstaller writes base_library.zip in the order of a Python set, which follows the hash
/// seed: without a fixed seed two builds of the same sources differ in bytes.
pub const PYTHONHASHSEED: &str = "0";

/// Paths a service build reads, as its builder sees them.
pub struct Paths<'a> {
    /// `python.dir`.
    pub python: &'a Path,
    /// The folder holding config.yaml and build-info.json to bundle.
    pub stage: &'a Path,
}

/// PyInstaller's arguments for one service, after `pyinstaller` and before the output
/// folders: name, search paths, bundled data, dist.yaml's options, the entry script.
pub fn pyinstaller_args(config: &Config, service: &str, p: &Paths) -> Vec<String> {
    let svc = &config.dist.services[service];
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut args: Vec<String> =
        ["--noconfirm", "--onefile", "--log-level", "WARN", "--name", service].iter().map(|a| a.to_string()).collect();
    // The shared code is importable from an entry in any folder, as from one beside it.
    let mut roots: Vec<String> = Vec::new();
    for shared in &config.dist.shared_sources {
        let parent = s(&p.python.join(shared.parent().unwrap_or(Path::new(""))));
        if !roots.contains(&parent) {
            roots.push(parent);
        }
    }
    for r in roots {
        args.extend(["--paths".into(), r]);
    }
    for f in ["config.yaml", "build-info.json"] {
        args.extend(["--add-data".into(), format!("{}:.", s(&p.stage.join(f)))]);
    }
    for d in &svc.add_data {
        args.extend(["--add-data".into(), format!("{}:{}", s(&p.python.join(&d.src)), d.dest)]);
    }
    for c in &svc.collect_data {
        args.extend(["--collect-data".into(), c.clone()]);
    }
    for h in &svc.hidden_imports {
        args.extend(["--hidden-import".into(), h.clone()]);
    }
    args.push(s(&p.python.join(&svc.entry)));
    args
}

/// The modules beside a service's entry script that its build can bundle, relative to
/// `python.dir`: PyInstaller puts the entry's folder first on the search path, so any `*.py`
/// file, extension module or package folder there is importable by name (`import kt_extra`)
/// and an edit to it changes the binary. Not the service's own entry nor the shared sources
/// (inputs already); another service's entry script only when one of this service's sources
/// names it on an import line, since an edit to one service must not rebuild the others.
/// Sorted; `__pycache__` and dot-files are never modules.
pub fn beside_modules(config: &Config, service: &str) -> Result<Vec<std::path::PathBuf>> {
    let svc = &config.dist.services[service];
    let dir_rel = svc.entry.parent().unwrap_or(Path::new("")).to_path_buf();
    let dir = config.python_dir().join(&dir_rel);
    let listing = match std::fs::read_dir(&dir) {
        Ok(l) => l,
        // A missing entry folder is the preflight's and PyInstaller's to report.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {} (services.{service}.entry)", dir.display())),
    };
    let entries: Vec<std::path::PathBuf> = config.dist.services.values().map(|s| s.entry.clone()).collect();
    let mut modules = Vec::new();
    for e in listing {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = dir_rel.join(&name);
        let path = e.path();
        let module = if path.is_dir() {
            name != "__pycache__"
        } else {
            name.ends_with(".py") || name.ends_with(".so") || name.ends_with(".pyd")
        };
        if !module || name.starts_with('.') || rel == svc.entry || config.dist.shared_sources.contains(&rel) {
            continue;
        }
        modules.push(rel);
    }
    modules.sort();
    // The sources whose import lines decide which other entry scripts are modules too.
    let python = config.python_dir();
    let mut texts = vec![std::fs::read_to_string(python.join(&svc.entry)).unwrap_or_default()];
    for m in modules.iter().filter(|m| !entries.contains(m)) {
        for f in walkdir::WalkDir::new(python.join(m)).into_iter().filter_map(|f| f.ok()) {
            if f.file_type().is_file() && f.path().extension().is_some_and(|x| x == "py") {
                texts.push(std::fs::read_to_string(f.path()).unwrap_or_default());
            }
        }
    }
    modules.retain(|m| {
        if !entries.contains(m) {
            return true;
        }
        let name = m.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        texts.iter().any(|t| imports_name(t, &name))
    });
    Ok(modules)
}

/// Whether a line of `source` that holds the word `import` (with the lines a bracket or a
/// backslash continues it onto) names `module` or a submodule of it. A superset of what
/// PyInstaller's analysis follows: a docstring that mentions it counts too.
fn imports_name(source: &str, module: &str) -> bool {
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        if !line.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == "import") {
            continue;
        }
        let mut statement = line.to_string();
        let mut depth: i32 = 0;
        loop {
            let last = statement.lines().last().unwrap_or("");
            depth += last.matches(['(', '[']).count() as i32 - last.matches([')', ']']).count() as i32;
            if depth <= 0 && !last.trim_end().ends_with('\\') {
                break;
            }
            match lines.next() {
                Some(next) => {
                    statement.push('\n');
                    statement.push_str(next);
                }
                None => break,
            }
        }
        let named = statement
            .split(|c: char| !c.is_alphanumeric() && c != '_' && c != '.')
            .any(|w| w == module || w.strip_prefix(module).is_some_and(|rest| rest.starts_with('.')));
        if named {
            return true;
        }
    }
    false
}

/// A path dist.yaml gives relative to `python.dir` that a container build can copy: inside
/// the project, no `..`, not absolute.
fn inside(field: &str, rel: &Path) -> Result<()> {
    if rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Ok(());
    }
    bail!(
        "dist.yaml: {field}: `{}` leaves python.dir; a container build copies only files inside it: move the file under python.dir",
        rel.display()
    )
}

/// The Dockerfile stage of a service (stage names are lowercase: BuildKit folds them).
pub fn stage_name(service: &str) -> String {
    format!("service-{}", service.to_lowercase())
}

/// A Dockerfile string in JSON form (exec-form `RUN`, `COPY [...]`), so no path or option
/// needs shell quoting.
fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialise")
}

/// The stages after `docker/Dockerfile.services`, and the build context paths they copy
/// (for the build's `.dockerignore`).
pub fn generated_stages(config: &Config) -> Result<(String, Vec<String>)> {
    let python_rel = config.dist.python.dir.to_string_lossy().trim_end_matches('/').to_string();
    let context = |rel: &Path| format!("{python_rel}/{}", rel.to_string_lossy());
    let inside_build = |rel: &Path| Path::new(CONTAINER_PYTHON).join(rel).to_string_lossy().into_owned();
    let mut copied = Vec::new();
    let mut out = String::from(
        "\n# ---- Generated by `cargo xtask dist` from dist.yaml: the shared sources and the staged\n\
         # config, then one stage per service (independent: BuildKit builds them at once), then the\n\
         # export stages. `cargo xtask dist --dry-run` shows this file.\n\n",
    );
    out.push_str(&format!(
        "FROM {BASE_STAGE} AS common\nARG STAGE\nWORKDIR {CONTAINER_PYTHON}\nENV PYTHONHASHSEED={PYTHONHASHSEED}\n"
    ));
    for shared in &config.dist.shared_sources {
        inside("shared_sources", shared)?;
        out.push_str(&format!("COPY {}\n", json_list(&[context(shared), inside_build(shared)])));
        copied.push(context(shared));
    }
    out.push_str(&format!(
        "COPY [\"${{STAGE}}/config.yaml\", \"${{STAGE}}/build-info.json\", \"{CONTAINER_STAGE}/\"]\n"
    ));

    let mut stages: Vec<(String, &String)> = Vec::new();
    for (name, svc) in &config.dist.services {
        let stage = stage_name(name);
        if let Some((_, other)) = stages.iter().find(|(s, _)| *s == stage) {
            bail!(
                "dist.yaml: services: `{other}` and `{name}` differ only in case; Dockerfile stage names cannot tell them apart"
            );
        }
        inside(&format!("services.{name}.entry"), &svc.entry)?;
        // No PyInstaller cache mount: with one (one id per platform and service) Debian's
        // docker 20.10 once replayed an arm64 stage's result for armv7l (verify refused it),
        // and under QEMU it saved nothing measurable, since PyInstaller analyses an edited
        // entry script again from the start.
        out.push_str(&format!("\nFROM common AS {stage}\n"));
        let beside = beside_modules(config, name)?;
        let mut files = vec![&svc.entry];
        files.extend(beside.iter());
        for d in &svc.add_data {
            inside(&format!("services.{name}.add_data"), &d.src)?;
            files.push(&d.src);
        }
        for f in files {
            out.push_str(&format!("COPY {}\n", json_list(&[context(f), inside_build(f)])));
            copied.push(context(f));
        }
        let paths = Paths { python: Path::new(CONTAINER_PYTHON), stage: Path::new(CONTAINER_STAGE) };
        let mut run = vec!["pyinstaller".to_string()];
        run.extend(pyinstaller_args(config, name, &paths));
        // `--distpath` before the entry script, which must come last.
        let entry = run.pop().expect("the entry script is the last argument");
        run.extend(["--distpath".into(), "/out".into(), entry]);
        out.push_str(&format!("RUN {}\n", json_list(&run)));
        stages.push((stage, name));
    }
    out.push_str("\n# Only the binaries leave the build: `--output type=local,dest=DIR` writes them to DIR.\nFROM scratch AS export\n");
    for (stage, name) in &stages {
        out.push_str(&format!("COPY --from={stage} /out/{name} /\n"));
    }
    for (stage, name) in &stages {
        out.push_str(&format!(
            "\n# One service alone (`build-services --service {name}`).\nFROM scratch AS export-{stage}\nCOPY --from={stage} /out/{name} /\n"
        ));
    }
    copied.sort();
    copied.dedup();
    Ok((out, copied))
}

/// The whole Dockerfile of a container build: the fixed part, then the generated stages.
pub fn dockerfile(config: &Config, fixed: &str) -> Result<(String, Vec<String>)> {
    if !fixed.lines().any(|l| {
        let l = l.trim().to_ascii_lowercase();
        l.starts_with("from ") && l.ends_with(&format!(" as {BASE_STAGE}"))
    }) {
        bail!(
            "{}: no `FROM ... AS {BASE_STAGE}` stage; the generated service stages start from it",
            config.dist.docker.dockerfile.display()
        );
    }
    let (stages, copied) = generated_stages(config)?;
    Ok((format!("{}\n{stages}", fixed.trim_end()), copied))
}

/// The `.dockerignore` of the generated Dockerfile: the context holds only what it copies.
pub fn dockerignore(config: &Config, copied: &[String], stage_rel: &str) -> String {
    let python_rel = config.dist.python.dir.to_string_lossy().trim_end_matches('/').to_string();
    let mut out = String::from("# Generated by `cargo xtask dist`: only what the Dockerfile beside it copies.\n*\n");
    out.push_str(&format!("!{python_rel}/{}\n", config.dist.python.build_requirements.display()));
    let mut reqs = vec![config.dist.python.requirements.clone()];
    reqs.extend(config.dist.targets.values().filter_map(|t| t.requirements.clone()));
    for r in reqs {
        out.push_str(&format!("!{python_rel}/{}\n", r.display()));
    }
    for c in copied {
        out.push_str(&format!("!{c}\n"));
    }
    out.push_str(&format!("!{stage_rel}/\n**/__pycache__\n**/*.pyc\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> Config {
        Config::load(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap()
    }

    #[test]
    fn every_dist_yaml_service_gets_its_own_stage_with_its_options() {
        let mut config = repo();
        // A fourth service with its entry in a subfolder, data and a hidden import.
        let mut extra = config.dist.services["kt_service"].clone();
        extra.entry = "src/app/main.py".into();
        extra.add_data = vec![crate::config::DataSpec { src: "src/app/menu.json".into(), dest: "menu".into() }];
        extra.hidden_imports = vec!["json".into()];
        config.dist.services.insert("menu_service".into(), extra);
        let fixed = std::fs::read_to_string(config.root.join(&config.dist.docker.dockerfile)).unwrap();
        let (text, copied) = dockerfile(&config, &fixed).unwrap();
        assert!(text.contains("FROM common AS service-menu_service\nCOPY [\"python-service/src/app/main.py\",\"/build/src/app/main.py\"]\nCOPY [\"python-service/src/app/menu.json\",\"/build/src/app/menu.json\"]\n"), "{text}");
        assert!(text.contains("\"--add-data\",\"/build/src/app/menu.json:menu\",\"--hidden-import\",\"json\",\"--distpath\",\"/out\",\"/build/src/app/main.py\"]"), "{text}");
        assert!(text.contains("\nENV PYTHONHASHSEED=0\n"), "{text}");
        assert!(text.contains("\"--collect-data\",\"escpos\""), "print_service's collect_data: {text}");
        assert!(text.contains("\"--paths\",\"/build/src\""), "{text}");
        for s in ["kt_service", "print_service", "tts_service", "menu_service"] {
            assert!(text.contains(&format!("COPY --from=service-{s} /out/{s} /\n")), "{s}: {text}");
            assert!(text.contains(&format!("FROM scratch AS export-service-{s}\n")), "{s}: {text}");
        }
        assert!(copied.contains(&"python-service/src/app/main.py".to_string()));
        assert!(copied.contains(&"python-service/src/kt_common".to_string()));
        // Our Dockerfile rules hold for the generated file too.
        let problems = crate::commands::check::dockerfile::rules("Dockerfile", &text);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn modules_beside_an_entry_are_inputs_and_another_entry_only_when_imported() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let src = root.join("python-service/src");
        for dir in ["kt_common", "pkg", "__pycache__", ".hidden"] {
            std::fs::create_dir_all(src.join(dir)).unwrap();
        }
        let files = [
            ("kt_common/__init__.py", ""),
            ("kt_service.py", "import json\nfrom kt_extra import helper\n"),
            ("print_service.py", "\"\"\"Prints what kt_service sends.\"\"\"\nimport os\n"),
            ("tts_service.py", "import os, \\\n    kt_service\nfrom json import (\n    dumps,\n)\n"),
            ("kt_extra.py", "X = 1\n"),
            ("pkg/__init__.py", "from print_service.x import y\n"),
            ("notes.txt", "not a module\n"),
            ("native.so", ""),
            ("__pycache__/kt_extra.cpython-311.pyc", ""),
        ];
        for (f, text) in files {
            std::fs::write(src.join(f), text).unwrap();
        }
        // This checkout's dist.yaml over that folder.
        let mut config = repo();
        let checkout = config.root.clone();
        config.root = root.to_path_buf();
        let got = |s: &str| -> Vec<String> {
            beside_modules(&config, s).unwrap().iter().map(|p| p.to_string_lossy().into_owned()).collect()
        };
        // pkg names print_service on an import line; tts_service continues one onto kt_service.
        let shared = ["src/kt_extra.py", "src/native.so", "src/pkg"];
        let with = |extra: &[&str]| {
            let mut v: Vec<String> = shared.iter().chain(extra).map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(got("kt_service"), with(&["src/print_service.py"]));
        assert_eq!(got("print_service"), with(&[]));
        assert_eq!(got("tts_service"), with(&["src/kt_service.py", "src/print_service.py"]));
        // The container build copies them into each service's stage.
        let fixed = std::fs::read_to_string(checkout.join(&config.dist.docker.dockerfile)).unwrap();
        let (text, copied) = dockerfile(&config, &fixed).unwrap();
        assert!(text.contains("COPY [\"python-service/src/kt_extra.py\",\"/build/src/kt_extra.py\"]"), "{text}");
        assert!(copied.contains(&"python-service/src/pkg".to_string()), "{copied:?}");
        // This checkout's services import no other service: an edit to one rebuilds it alone.
        for s in ["kt_service", "print_service", "tts_service"] {
            assert!(
                beside_modules(&repo(), s).unwrap().iter().all(|m| !m.starts_with("src/kt_service.py")
                    && !m.ends_with("print_service.py")
                    && !m.ends_with("tts_service.py")),
                "{s}"
            );
        }
    }

    #[test]
    fn native_and_container_builds_pass_the_same_options() {
        let config = repo();
        let native = pyinstaller_args(
            &config,
            "print_service",
            &Paths { python: Path::new("/r/py"), stage: Path::new("/r/st") },
        );
        let container = pyinstaller_args(
            &config,
            "print_service",
            &Paths { python: Path::new("/build"), stage: Path::new("/build/stage") },
        );
        let normalise = |a: &[String], py: &str, st: &str| -> Vec<String> {
            a.iter().map(|x| x.replace(&format!("{st}/"), "<stage>/").replace(&format!("{py}/"), "<py>/")).collect()
        };
        assert_eq!(normalise(&native, "/r/py", "/r/st"), normalise(&container, "/build", "/build/stage"));
        assert_eq!(native.last().unwrap(), "/r/py/src/print_service.py");
    }

    #[test]
    fn paths_outside_the_project_and_case_twins_are_refused() {
        let mut config = repo();
        config.dist.services.get_mut("kt_service").unwrap().entry = "../elsewhere/main.py".into();
        let err = generated_stages(&config).unwrap_err().to_string();
        assert!(
            err.starts_with("dist.yaml: services.kt_service.entry: `../elsewhere/main.py` leaves python.dir"),
            "{err}"
        );
        let mut config = repo();
        let twin = config.dist.services["kt_service"].clone();
        config.dist.services.insert("KT_service".into(), twin);
        let err = generated_stages(&config).unwrap_err().to_string();
        assert!(err.contains("differ only in case"), "{err}");
    }
}
