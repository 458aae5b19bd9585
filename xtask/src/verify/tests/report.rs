//! The table, the verdict line and the JSON carry the same content.

use super::common::*;
use crate::verify::Check;

#[test]
fn table_verdict_and_json() {
    let fx = Fx::new();
    let app = pyi_app(&fx);
    let report = verify(&[&app.path, &fx.armel_dyn()], &target("x64").with_glibc_floor(2, 31));

    let table = report.render_table();
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["SEVERITY", "FILE", "INNER", "CHECK", "EXPECTED", "FOUND", "FIX"] {
        assert!(header.contains(col), "{header}");
    }
    assert_eq!(table.lines().count(), 1 + report.findings.len());
    let foreign = table.lines().find(|l| l.contains("libforeign.so")).unwrap();
    assert!(foreign.contains("machine") && foreign.contains("ELF64 EM_AARCH64 (183)"), "{foreign}");

    let verdict = report.verdict("x64");
    assert!(verdict.starts_with("FAIL: "), "{verdict}");
    assert!(verdict.contains("1 PyInstaller archive(s)"), "{verdict}");

    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), report.findings.len());
    let j = findings.iter().find(|f| f["inner"] == "libforeign.so").unwrap();
    assert_eq!(j["check"], "machine");
    assert_eq!(j["severity"], "error");
    assert_eq!(j["expected"], "ELF64 EM_X86_64 (62)");
    assert_eq!(j["found"], "ELF64 EM_AARCH64 (183)");
    assert_eq!(j["file"], app.path.to_str().unwrap());
    assert_eq!(json["archives"][0]["python_version"], 311);
    assert_eq!(json["archives"][0]["entries"], 5);
    assert_eq!(json["elfs_checked"], report.elfs_checked);
    assert!(report.with_check(Check::Machine).len() >= 2);
}

#[test]
fn clean_verdict() {
    let fx = Fx::new();
    let report = verify(&[&fx.armhf_dyn()], &target("armv7l"));
    assert_eq!(
        report.verdict("armv7l"),
        "OK: 0 error(s), 0 warning(s) for target armv7l; 1 file(s), 1 binary object(s), 0 PyInstaller archive(s) checked"
    );
    assert_eq!(report.render_table().lines().count(), 1);
}

#[test]
fn input_error_message_names_file_member_offset() {
    let err = crate::verify::InputError {
        file: "/x/app.deb".into(),
        member: Some("data.tar.xz".into()),
        offset: Some(1234),
        kind: crate::verify::InputErrorKind::Decompress,
        detail: "bad".into(),
    };
    assert_eq!(err.to_string(), "cannot read /x/app.deb, member data.tar.xz, at byte 1234: bad");
    let json = serde_json::to_value(&err).unwrap();
    assert_eq!(json["kind"], "decompress");
}

#[test]
fn targets_from_the_arch_enum_match_the_reference_table() {
    // Two independent tables of the same arch facts must agree.
    for arch in crate::arch::Arch::ALL {
        let from_enum = crate::verify::Target::for_arch(arch, None);
        let from_table = crate::verify::Target::from_arch_name(arch.name()).unwrap();
        assert_eq!(from_enum, from_table, "{arch}");
    }
}

#[test]
fn repeated_warnings_are_grouped() {
    let fx = Fx::new();
    let bin = std::fs::read(fx.x64_fake_glibc()).unwrap();
    let dir = fx.path("tools");
    for i in 0..12 {
        let p = fx.write(&format!("tools/tool{i:02}"), &bin);
        fx.set_exec(&p, true);
    }
    // readelf -V lists the two tags this tool only warns about, in every copy.
    let versions = tool_output("readelf", &["-V", dir.join("tool00").to_str().unwrap()]);
    assert!(versions.contains("GLIBC_PRIVATE") && versions.contains("GLIBC_WEIRD"), "{versions}");
    let report = verify(&[&dir], &target("x64"));
    assert_eq!((report.errors(), report.warnings()), (0, 24), "{}", report.render_table());

    let table = report.render_table();
    assert_eq!(table.lines().count(), 1 + 2, "one line per kind of warning:\n{table}");
    let private = table.lines().find(|l| l.contains("GLIBC_PRIVATE")).unwrap();
    assert!(private.starts_with("warning x12"), "{private}");
    let examples: Vec<String> = (0..3).map(|i| dir.join(format!("tool{i:02}")).display().to_string()).collect();
    assert!(private.contains(&format!("{} and 9 more", examples.join(", "))), "{private}");

    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["findings"].as_array().unwrap().len(), 0, "{json}");
    let groups = json["warnings"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{json}");
    for g in groups {
        assert_eq!(g["check"], "glibc_tag");
        assert_eq!(g["count"], 12);
        assert_eq!(g["files"], 12);
        let files: Vec<&str> = g["examples"].as_array().unwrap().iter().map(|e| e["file"].as_str().unwrap()).collect();
        assert_eq!(files, examples.iter().map(String::as_str).collect::<Vec<_>>());
    }
    assert!(groups.iter().any(|g| g["found"].as_str().unwrap().starts_with("GLIBC_PRIVATE from libfake.so.1")));
}
