//! The release step of `dist`: what `release/<version>/` records for one arch (the artifact,
//! the service binaries, the commit and tool versions), resolved while planning.

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;

use crate::{
    arch::Arch,
    config::Config,
    fsx,
    host::Host,
    layout::arch_manifest_name,
    plan::{Action, Step, StepKind},
    release_record::{MERGED, Record, SUMS},
};

/// The record of `arch`'s `artifact`; `Err` when the checkout has no commit to record.
pub fn record(
    config: &Config,
    host: &Host,
    arch: Arch,
    artifact: &Path,
    services_dir: &Path,
    electron_dist: Option<&Path>,
) -> Result<Record> {
    let (git_commit, git_dirty) = host.git.clone().map_err(anyhow::Error::msg)?;
    let epoch = host.source_date_epoch.clone().map_err(anyhow::Error::msg)?;
    let mut tools = BTreeMap::new();
    tools.insert("xtask".to_string(), env!("CARGO_PKG_VERSION").to_string());
    if let Some(v) = &host.node {
        tools.insert("node".into(), v.clone());
    }
    if let Some(v) = &host.python {
        tools.insert(config.dist.python.interpreter.clone(), v.clone());
    }
    Ok(Record {
        dir: crate::layout::release_dir(config),
        arch,
        artifact: artifact.to_path_buf(),
        services: config.dist.services.keys().map(|n| (n.clone(), services_dir.join(n))).collect(),
        version: config.version.clone(),
        git_commit,
        git_dirty,
        source_date_epoch: epoch,
        tools,
        electron_dist: electron_dist.map(Path::to_path_buf),
        node_modules: crate::layout::app_dir(&config.root).join("node_modules"),
    })
}

/// The release step of `dist`: record the artifact `artifact_step` writes and merge the folder.
pub fn step(record: Record, artifact_step: &Step, root: &Path) -> Step {
    let mut s = Step::new(
        "release",
        format!("record {} in {}", record.arch, fsx::rel(root, &record.dir).display()),
        StepKind::Release,
    );
    s.after.push(artifact_step.id.clone());
    s.inputs.push(record.artifact.clone());
    s.values.insert("SOURCE_DATE_EPOCH".into(), record.source_date_epoch.to_string());
    s.outputs.push(record.dir.join(arch_manifest_name(record.arch)));
    s.outputs.push(record.dir.join(SUMS));
    s.outputs.push(record.dir.join(MERGED));
    s.actions.push(Action::RecordRelease(Box::new(record)));
    s
}
