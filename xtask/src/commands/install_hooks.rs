//! `cargo xtask install-hooks`: a git pre-commit hook that runs `cargo xtask check --staged`.
//! The hooks folder comes from `git rev-parse --git-path hooks`, which is right for linked
//! worktrees (their hooks are the main checkout's) and for `core.hooksPath`.
//! `.pre-commit-config.yaml` offers the same check to the pre-commit framework instead.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::process::{Command, exec};

/// The hook. `KT_XTASK` runs an already-built xtask binary instead of `cargo xtask` (tests;
/// machines that prebuild it); `--root` is the checkout being committed, whichever binary runs.
pub const HOOK: &str = r#"#!/bin/sh
# Installed by `cargo xtask install-hooks`: checks what this commit stages (fmt and clippy when
# Rust changes; the env configs, Dockerfiles, workflows, Python, versions when they do).
# Bypass once with `git commit --no-verify`.
root="$(git rev-parse --show-toplevel)" || exit 1
if [ -n "${KT_XTASK:-}" ]; then
    exec "$KT_XTASK" --root "$root" check --staged
fi
exec cargo xtask --root "$root" check --staged
"#;

pub fn hooks_dir(root: &Path) -> Result<PathBuf> {
    let out = exec(&Command::new("git", root).args(["rev-parse", "--git-path", "hooks"]))?;
    if !out.success {
        bail!("{} is not a git checkout ({}); run install-hooks inside one", root.display(), out.stderr.trim());
    }
    let path = PathBuf::from(out.stdout.trim());
    Ok(if path.is_absolute() { path } else { root.join(path) })
}

pub fn run(root: &Path) -> Result<()> {
    let hook = hooks_dir(root)?.join("pre-commit");
    if let Ok(old) = std::fs::read_to_string(&hook)
        && old != HOOK
        && !old.contains("cargo xtask install-hooks")
    {
        bail!(
            "{} exists and was not written by install-hooks; move it aside (or merge it by hand) and run again",
            hook.display()
        );
    }
    // Written beside it, made executable, then renamed: a commit never sees half a hook or
    // one it cannot run.
    let tmp = crate::fsx::tmp_sibling(&hook);
    crate::fsx::write_atomic(&tmp, HOOK.as_bytes())?;
    set_executable(&tmp)?;
    crate::fsx::install(&tmp, &hook)?;
    eprintln!("installed {} (runs `cargo xtask check --staged`)", hook.display());
    Ok(())
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}
