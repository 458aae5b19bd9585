//! The incremental build against a build from scratch, under random sequences of edits.
//!
//! A service build's step is made as `dist` makes it (its entry, the modules beside it that
//! `service_stages::beside_modules` lists, the shared sources), with a build that archives
//! what PyInstaller could bundle from `python-service/src/`: every file but the other
//! services' entry scripts, once with links kept (their targets and every file's mode, as a
//! .deb records them) and once with links followed (their content, as PyInstaller and a
//! container build's COPY read them). After each random edit (content, a same-size edit with
//! its mtime put back, a mode change, a link retargeted, the file behind a link or a linked
//! folder edited, a new module or package beside the entry, a deleted module, a rewrite with
//! the same bytes, another service's entry edited) the plan runs, and its output must be the
//! bytes the build gives when run from scratch on the same tree. A difference prints the
//! seed, the edits so far and the step's freshness.

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use crate::{
        arch::Arch,
        config::Config,
        plan::{Action, Force, Header, Outcome, Plan, RunOptions, Step, StepKind, run},
        process::Command,
        rng::XorShift,
        steps::service_stages,
    };

    /// What PyInstaller could bundle for kt_service, archived twice: links kept (with modes),
    /// then followed. Both archives are sorted and carry no time or owner.
    const BUILD: &str = r#"set -e
mkdir -p "$(dirname "$1")"
cd python-service/src
list() { find $1 . \( -name __pycache__ -o -path ./print_service.py -o -path ./tts_service.py \) -prune -o -print | LC_ALL=C sort; }
tarball() { tar --no-recursion --numeric-owner --owner=0 --group=0 --mtime=@0 $1 -cf - -T -; }
{ list -P | tarball ""; list -L | tarball -h; } > "$1"
"#;

    fn build(root: &Path, out: &Path) -> Command {
        Command::new("sh", root).args(["-c", BUILD, "build"]).arg(out)
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// The tree: three entries, shared code with a link to a file and one to a folder outside it.
    fn tree(root: &Path) {
        let src = root.join("python-service/src");
        write(&src.join("kt_service.py"), "import kt_common\nprint(kt_common.X)\n");
        write(&src.join("print_service.py"), "import kt_common\n");
        write(&src.join("tts_service.py"), "import kt_common\n");
        write(&src.join("kt_common/__init__.py"), "X = 1\n");
        write(&src.join("kt_common/util.py"), "def f():\n    return 1\n");
        write(&root.join("elsewhere/shared.py"), "SHARED = 1\n");
        write(&root.join("elsewhere/other.py"), "OTHER = 22\n");
        write(&root.join("elsewhere/lib/a.py"), "A = 1\n");
        std::os::unix::fs::symlink("../../../elsewhere/shared.py", src.join("kt_common/linked.py")).unwrap();
        std::os::unix::fs::symlink("../../../elsewhere/lib", src.join("kt_common/libdir")).unwrap();
    }

    fn config(root: &Path) -> Config {
        let mut config = Config::load(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap();
        config.root = root.to_path_buf();
        config
    }

    /// kt_service's step as `dist` builds its inputs, with [`BUILD`] for PyInstaller.
    fn plan(root: &Path) -> Plan {
        let config = config(root);
        let dir = config.python_dir();
        let svc = &config.dist.services["kt_service"];
        let mut step = Step::new(
            "kt_service",
            "archive kt_service's sources",
            StepKind::BuildService { service: "kt_service".into() },
        );
        step.inputs.push(dir.join(&svc.entry));
        step.inputs.extend(service_stages::beside_modules(&config, "kt_service").unwrap().iter().map(|m| dir.join(m)));
        step.inputs.extend(config.dist.shared_sources.iter().map(|s| dir.join(s)));
        step.outputs.push(root.join("out/kt_service.tar"));
        step.actions.push(Action::Clean { path: root.join("tmp") });
        step.actions.push(Action::Run(build(root, &root.join("tmp/kt_service.tar"))));
        step.actions.push(Action::Install {
            from: root.join("tmp/kt_service.tar"),
            to: root.join("out/kt_service.tar"),
            executable: false,
        });
        let header = Header { arch: Some(Arch::X64), ..Header::new("test", &config) };
        Plan { header, root: root.to_path_buf(), steps: vec![step] }
    }

    /// Regular files an edit may touch: under src/ (links' targets included, through elsewhere/).
    fn files(root: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = walkdir::WalkDir::new(root.join("python-service/src"))
            .into_iter()
            .chain(walkdir::WalkDir::new(root.join("elsewhere")))
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect();
        found.sort();
        found
    }

    fn pick<'a>(rng: &mut XorShift, from: &'a [PathBuf]) -> &'a Path {
        &from[rng.below(from.len())]
    }

    /// One random edit; what it did, for the failure message.
    fn edit(root: &Path, rng: &mut XorShift, n: usize) -> String {
        let all = files(root);
        let src = root.join("python-service/src");
        let word = format!("V{}", rng.next_u64() % 1000);
        match rng.below(10) {
            0 => {
                let f = pick(rng, &all);
                let text = std::fs::read_to_string(f).unwrap();
                std::fs::write(f, format!("{text}{word} = {n}\n")).unwrap();
                format!("appended to {}", f.display())
            }
            1 => {
                // The same size, the old mtime put back: `cp -p`, `rsync -t`, `tar -x`.
                let f = pick(rng, &all);
                let mtime = std::fs::metadata(f).unwrap().modified().unwrap();
                let mut bytes = std::fs::read(f).unwrap();
                let at = rng.below(bytes.len());
                bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
                std::fs::write(f, &bytes).unwrap();
                std::fs::File::options().write(true).open(f).unwrap().set_modified(mtime).unwrap();
                format!("same-size edit of {} at byte {at}, mtime put back", f.display())
            }
            2 => {
                let f = pick(rng, &all);
                let mode = std::fs::metadata(f).unwrap().permissions().mode() ^ 0o111;
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap();
                format!("chmod {:o} {}", mode & 0o7777, f.display())
            }
            3 => {
                let link = src.join("kt_common/linked.py");
                let now = std::fs::read_link(&link).unwrap();
                let other = if now.ends_with("shared.py") { "other.py" } else { "shared.py" };
                std::fs::remove_file(&link).unwrap();
                std::os::unix::fs::symlink(format!("../../../elsewhere/{other}"), &link).unwrap();
                format!("linked.py -> {other}")
            }
            4 => {
                let f = src.join(format!("kt_extra_{}.py", rng.below(3)));
                write(&f, &format!("{word} = 1\n"));
                format!("wrote module {}", f.display())
            }
            5 => {
                let f = src.join(format!("pkg_{}/__init__.py", rng.below(2)));
                write(&f, &format!("{word} = 2\n"));
                format!("wrote package {}", f.display())
            }
            6 => {
                let f = root.join(format!("elsewhere/lib/m{}.py", rng.below(3)));
                write(&f, &format!("{word} = 3\n"));
                format!("wrote {} in the linked folder", f.display())
            }
            7 => {
                // A module beside the entry, never an entry or a link's target (the link would dangle).
                let gone: Vec<PathBuf> = all
                    .iter()
                    .filter(|f| {
                        f.starts_with(&src)
                            && f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("kt_extra"))
                    })
                    .cloned()
                    .collect();
                match gone.first() {
                    Some(f) => {
                        std::fs::remove_file(f).unwrap();
                        format!("removed {}", f.display())
                    }
                    None => "nothing to remove".into(),
                }
            }
            8 => {
                let f = pick(rng, &all);
                let same = std::fs::read(f).unwrap();
                std::fs::write(f, same).unwrap();
                format!("rewrote {} with its own bytes", f.display())
            }
            _ => {
                let f = src.join("print_service.py");
                let text = std::fs::read_to_string(&f).unwrap();
                std::fs::write(&f, format!("{text}{word} = 4\n")).unwrap();
                "edited print_service.py (not kt_service's)".into()
            }
        }
    }

    #[test]
    fn incremental_builds_equal_builds_from_scratch_under_random_edits() {
        const SEQUENCES: u64 = 200;
        const EDITS: usize = 6;
        let opts = RunOptions { force: Force::None, verbose: false, keep_going: false };
        let (mut rebuilt, mut kept) = (0, 0);
        for seq in 0..SEQUENCES {
            let seed = 0x9E37_79B9_7F4A_7C15 ^ seq.wrapping_mul(0x2545_F491);
            let mut rng = XorShift(seed | 1);
            let d = tempfile::tempdir().unwrap();
            let root = d.path();
            tree(root);
            let mut done = Vec::new();
            for n in 0..=EDITS {
                if n > 0 {
                    done.push(edit(root, &mut rng, n));
                }
                // The plan is made anew each run, as `dist` makes it: a new module is a new input.
                let plan = plan(root);
                let freshness = plan.freshness(&plan.steps[0]).unwrap();
                let report = run(&plan, &opts).unwrap_or_else(|e| panic!("seed {seed:#x}, after {done:?}: {e:#}"));
                match report.outcome("kt_service") {
                    Some(Outcome::Built) => rebuilt += 1,
                    _ => kept += 1,
                }
                let scratch = root.join("scratch.tar");
                build(root, &scratch).capture().unwrap();
                let fast = std::fs::read(root.join("out/kt_service.tar")).unwrap();
                let slow = std::fs::read(&scratch).unwrap();
                assert!(
                    fast == slow,
                    "seed {seed:#x}: the incremental build differs from a build from scratch after {done:?} \
                 (the step was {freshness:?})"
                );
            }
        }
        // Both paths were taken: the comparison checked reuse, not only rebuilds.
        assert!(rebuilt > SEQUENCES as usize && kept > SEQUENCES as usize, "rebuilt {rebuilt}, kept {kept}");
    }
}
