//! A plan carries everything its steps need: the afterpack, deb and release steps of a real
//! `dist` plan run from the plan alone, without reading dist.yaml again (the config is read
//! once, when the command starts).

mod common;

use std::path::Path;

use xtask::{arch::Arch, config::Config, host::Host, plan};

fn install_true(to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy("/bin/true", to).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_dist_run_reads_dist_yaml_once() {
    if Arch::host() != Some(Arch::X64) {
        return; // the stand-ins below are this host's /bin/true, an x64 binary
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    common::copy_repo(&root);
    let config = Config::load(&root).unwrap();
    assert_eq!(xtask::config::loads(), 1);

    // What the earlier steps would have left: the services and the unpacked app (x64 ELF).
    for s in config.dist.services.keys() {
        install_true(&root.join("python-service/dist/x64").join(s));
    }
    let app = root.join("electron-app/release/linux-unpacked");
    install_true(&app.join(&config.dist.product.name));
    install_true(&app.join("chrome-sandbox"));
    std::fs::create_dir_all(app.join("resources")).unwrap();
    std::fs::write(app.join("resources/app.asar"), b"asar").unwrap();

    let mut host = Host::probe(&config);
    host.electron_dist = None;
    let req = xtask::steps::dist::Request {
        arch: Arch::X64,
        env: "default".into(),
        engine: None,
        services: Vec::new(),
        package: true,
    };
    let mut p = xtask::steps::dist::plan(&config, &req, Some(Arch::X64), &host).unwrap();
    p.steps.retain(|s| ["afterpack", "deb", "release"].contains(&s.id.as_str()));
    for s in &mut p.steps {
        s.after.retain(|a| ["afterpack", "deb"].contains(&a.as_str()));
    }
    let opts = plan::RunOptions { force: plan::Force::None, verbose: false, keep_going: false };
    let report = plan::run(&p, &opts).unwrap();
    let outcomes: Vec<_> = report.steps.iter().map(|s| (s.id.as_str(), s.outcome)).collect();
    assert_eq!(
        outcomes,
        [("afterpack", plan::Outcome::Built), ("deb", plan::Outcome::Built), ("release", plan::Outcome::Built)]
    );
    let deb = root.join(format!("release/{v}/kitchntabs_{v}_amd64.deb", v = config.version));
    assert!(deb.is_file(), "{}", deb.display());
    assert_eq!(xtask::config::loads(), 1, "a step read dist.yaml again");
}
