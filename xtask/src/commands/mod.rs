//! The commands, one module each, named as on the command line: each parses its flags, builds
//! its plan or reads its inputs, runs, and reports.

pub mod afterpack;
pub mod apt_repo;
pub mod base_image;
pub mod bench;
pub mod check;
pub mod deploy;
pub mod dist;
pub mod doctor;
pub mod install_hooks;
pub mod release;
pub mod smoke_test;
pub mod targets;
pub mod test;
pub mod verify;

/// A plan shown (`--dry-run`, as text or JSON) or run (the JSON report with `--json`): the
/// one way every planning command ends.
pub fn show_or_run(
    plan: &crate::plan::Plan,
    opts: &crate::plan::RunOptions,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    plan.resolve_force(&opts.force)?;
    if dry_run {
        if json {
            crate::exit::print_json(plan.to_json_value(Some(&opts.force))?, crate::exit::OK)?;
        } else {
            print!("{}", plan.render(&opts.force)?);
        }
        return Ok(());
    }
    let report = crate::plan::run(plan, opts)?;
    if json {
        crate::exit::print_json(serde_json::json!({ "plan": plan, "report": report }), crate::exit::OK)?;
    }
    Ok(())
}
