//! A checkup of the host: named checks, each ok, a warning, failed or fixed, with the fix for
//! what failed. doctor prints one; dist's preflight fails with one.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Not a failure, but worth knowing (a check that could not run yet).
    Warn,
    Fail,
    /// Was failing; `--fix` repaired it.
    Fixed,
}

#[derive(Debug, Serialize)]
pub struct HostCheck {
    pub check: String,
    pub status: Status,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl HostCheck {
    pub fn ok(check: impl Into<String>, found: impl Into<String>) -> HostCheck {
        HostCheck { check: check.into(), status: Status::Ok, found: found.into(), fix: None }
    }
    pub fn fail(check: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> HostCheck {
        HostCheck { check: check.into(), status: Status::Fail, found: found.into(), fix: Some(fix.into()) }
    }
    pub fn warn(check: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> HostCheck {
        HostCheck { check: check.into(), status: Status::Warn, found: found.into(), fix: Some(fix.into()) }
    }
}

#[derive(Debug, Serialize)]
pub struct Checkup {
    pub findings: Vec<HostCheck>,
    pub ok: bool,
}

impl Checkup {
    pub fn new(findings: Vec<HostCheck>) -> Checkup {
        let ok = findings.iter().all(|f| f.status != Status::Fail);
        Checkup { findings, ok }
    }

    pub fn render(&self) -> String {
        let w = self.findings.iter().map(|f| f.check.len()).max().unwrap_or(5).max(5);
        let mut out = String::new();
        for f in &self.findings {
            let status = match f.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
                Status::Fixed => "fixed",
            };
            let _ = writeln!(out, "{:<w$}  {status:<5}  {}", f.check, f.found);
            if let (Some(fix), Status::Fail | Status::Warn) = (&f.fix, f.status) {
                let _ = writeln!(out, "{:<w$}         fix: {fix}", "");
            }
        }
        let failed = self.findings.iter().filter(|f| f.status == Status::Fail).count();
        let _ = writeln!(
            out,
            "{}",
            if failed == 0 {
                "doctor: all checks pass".to_string()
            } else {
                format!("doctor: {failed} check(s) failed")
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_renders_fixes_and_serialises_its_shape() {
        let r = Checkup::new(vec![
            HostCheck::ok("tool node", "/usr/bin/node"),
            HostCheck::fail("armv7l: binfmt", "qemu-arm is not registered", "cat conf > register"),
        ]);
        assert!(!r.ok);
        let text = r.render();
        assert!(text.contains("armv7l: binfmt  FAIL   qemu-arm is not registered"), "{text}");
        assert!(text.contains("fix: cat conf > register"), "{text}");
        assert!(text.ends_with("doctor: 1 check(s) failed\n"), "{text}");
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["findings"][1]["status"], "fail");
        assert_eq!(json["findings"][1]["fix"], "cat conf > register");
        assert!(json["findings"][0].get("fix").is_none());
    }
}
