//! `cargo xtask dist` and `cargo xtask build-services`: the request from the flags, the plan
//! from `steps::dist`, then the dry run or the run.

use anyhow::Result;

use crate::{
    arch::Arch,
    config::Config,
    host::Host,
    lock::TreeLock,
    plan::{Force, RunOptions},
    steps::dist::Request,
};

/// How to carry the plan out.
#[derive(Clone, Debug)]
pub struct Mode {
    pub dry_run: bool,
    pub json: bool,
    pub force: Force,
    pub verbose: bool,
}

pub fn run(config: &Config, req: &Request, mode: &Mode, what: &str) -> Result<()> {
    let tools = Host::probe(config);
    let plan = crate::steps::dist::plan(config, req, Arch::host(), &tools)?;
    plan.resolve_force(&mode.force)?;
    // One dist per tree: two runs writing the same outputs would corrupt both.
    let _lock =
        if mode.dry_run { None } else { Some(TreeLock::acquire(&config.root.join("target/xtask/dist.lock"), what)?) };
    let opts = RunOptions { force: mode.force.clone(), verbose: mode.verbose, keep_going: false };
    super::show_or_run(&plan, &opts, mode.dry_run, mode.json)
}
