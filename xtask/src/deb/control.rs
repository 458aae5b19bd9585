//! control.tar contents: the `control` file, `md5sums`, `conffiles` and the maintainer
//! scripts, plus the checks that keep `dpkg-deb` and lintian from rejecting them.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};

use super::spec::{Control, DebSpec, Entry, Source};

/// Field checks with Debian policy's syntax (5.6.1, 5.6.7, 5.6.12), so a bad value fails
/// here with the field's name instead of in dpkg or on the target.
pub(super) fn validate(control: &Control) -> Result<()> {
    let p = &control.package;
    let package_ok = p.len() >= 2
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !package_ok {
        bail!(
            "Control.package {p:?} is not a Debian package name: use lower-case letters, \
             digits, '+', '-', '.', at least 2 characters, starting alphanumeric"
        );
    }
    let v = &control.version;
    let upstream_start = v.split_once(':').map_or(v.as_str(), |(_, rest)| rest);
    let version_ok = upstream_start.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c));
    if !version_ok {
        bail!(
            "Control.version {v:?} is not a Debian version: it must start with a digit and use \
             only letters, digits and . + ~ - : (e.g. \"1.0.19\" or \"1.0.19-1\")"
        );
    }
    let m = &control.maintainer;
    if !(m.contains('<') && m.ends_with('>') && m.contains('@')) {
        bail!("Control.maintainer {m:?} must be \"Full Name <email@example.org>\"");
    }
    single_line("Control.section", &control.section)?;
    single_line("Control.priority", &control.priority)?;
    if let Some(h) = &control.homepage {
        single_line("Control.homepage", h)?;
        if !(h.starts_with("https://") || h.starts_with("http://")) {
            bail!("Control.homepage {h:?} must be an http(s) URL");
        }
    }
    for (field, list) in [("Control.depends", &control.depends), ("Control.recommends", &control.recommends)] {
        for dep in list {
            single_line(field, dep)?;
            if dep.trim().is_empty() || dep.contains(',') {
                bail!("{field} item {dep:?} must be one non-empty relation without ','");
            }
        }
    }
    single_line("Control.description_short", &control.description_short)?;
    if control.description_short.trim().is_empty() {
        bail!("Control.description_short is empty; give a one-line synopsis");
    }
    Ok(())
}

fn single_line(field: &str, value: &str) -> Result<()> {
    if value.contains(['\n', '\r']) {
        bail!("{field} {value:?} must be a single line");
    }
    if value.trim().is_empty() {
        bail!("{field} is empty");
    }
    Ok(())
}

/// `Description:` with the extended part: each line indented by one space, blank lines
/// as " ." (policy 5.6.13).
pub(super) fn description(control: &Control) -> String {
    let mut s = control.description_short.trim().to_string();
    for line in control.description_long.trim_end().lines() {
        let line = line.trim_end();
        s.push('\n');
        if line.is_empty() {
            s.push_str(" .");
        } else {
            s.push(' ');
            s.push_str(line);
        }
    }
    s
}

/// The `control` file, fields in the order dpkg-deb and fpm write them.
pub(super) fn render(control: &Control, installed_size_kib: u64) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "Package: {}", control.package);
    let _ = writeln!(s, "Version: {}", control.version);
    let _ = writeln!(s, "Architecture: {}", control.architecture);
    let _ = writeln!(s, "Maintainer: {}", control.maintainer);
    let _ = writeln!(s, "Installed-Size: {installed_size_kib}");
    if !control.depends.is_empty() {
        let _ = writeln!(s, "Depends: {}", control.depends.join(", "));
    }
    if !control.recommends.is_empty() {
        let _ = writeln!(s, "Recommends: {}", control.recommends.join(", "));
    }
    let _ = writeln!(s, "Section: {}", control.section);
    let _ = writeln!(s, "Priority: {}", control.priority);
    if let Some(h) = &control.homepage {
        let _ = writeln!(s, "Homepage: {h}");
    }
    let _ = writeln!(s, "Description: {}", description(control));
    s
}

/// `conffiles`: every regular file under /etc, in package order. `None` when there is none
/// (dpkg and lintian prefer no file over an empty one).
pub(super) fn conffiles(entries: &[Entry]) -> Option<String> {
    let mut list: Vec<&str> = entries
        .iter()
        .filter(|e| matches!(e.source, Source::File(_) | Source::Bytes(_)))
        .map(|e| e.path.as_str())
        .filter(|p| p.starts_with("/etc/"))
        .collect();
    list.sort_unstable();
    if list.is_empty() {
        return None;
    }
    Some(list.iter().map(|p| format!("{p}\n")).collect())
}

/// Members of control.tar besides `./`, sorted by name as dpkg-deb does, with modes.
pub(super) fn members(
    spec: &DebSpec,
    control_file: String,
    md5sums: String,
) -> Result<Vec<(&'static str, Vec<u8>, u32)>> {
    let mut members: Vec<(&'static str, Vec<u8>, u32)> = Vec::new();
    if let Some(c) = conffiles(&spec.entries) {
        members.push(("conffiles", c.into_bytes(), 0o644));
    }
    members.push(("control", control_file.into_bytes(), 0o644));
    members.push(("md5sums", md5sums.into_bytes(), 0o644));
    for (name, script) in spec.scripts.present() {
        if !script.starts_with("#!") {
            bail!("MaintainerScripts.{name} must start with a #! line (e.g. \"#!/bin/sh\")");
        }
        if script.contains('\r') {
            bail!("MaintainerScripts.{name} contains CR characters; use Unix line endings");
        }
        members.push((name, script.as_bytes().to_vec(), 0o755));
    }
    members.sort_by_key(|m| m.0);
    Ok(members)
}

/// md5sums line for one file (two spaces, path without "./").
pub(super) fn md5sums_line(out: &mut String, md5: &str, path: &str) -> Result<()> {
    writeln!(out, "{md5}  {path}").context("cannot format md5sums")
}

#[cfg(test)]
mod tests {
    use super::super::spec::DebArch;
    use super::*;

    fn control() -> Control {
        Control {
            package: "kitchntabs".into(),
            version: "1.0.19".into(),
            architecture: DebArch::Armhf,
            maintainer: "Kitchn <dev@kitchntabs.example>".into(),
            section: "misc".into(),
            priority: "optional".into(),
            homepage: Some("https://kitchntabs.example".into()),
            depends: vec!["libgtk-3-0".into(), "libnss3".into()],
            recommends: vec!["libappindicator3-1".into()],
            description_short: "Kitchen terminal".into(),
            description_long: "First line.\n\nSecond paragraph.\n".into(),
        }
    }

    #[test]
    fn control_file_is_exact() {
        let c = control();
        validate(&c).unwrap();
        assert_eq!(
            render(&c, 42),
            "Package: kitchntabs\nVersion: 1.0.19\nArchitecture: armhf\n\
             Maintainer: Kitchn <dev@kitchntabs.example>\nInstalled-Size: 42\n\
             Depends: libgtk-3-0, libnss3\nRecommends: libappindicator3-1\nSection: misc\n\
             Priority: optional\nHomepage: https://kitchntabs.example\n\
             Description: Kitchen terminal\n First line.\n .\n Second paragraph.\n"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let mut c = control();
        c.package = "KitchnTabs".into();
        assert!(validate(&c).unwrap_err().to_string().contains("Control.package"));
        let mut c = control();
        c.version = "v1.0".into();
        assert!(validate(&c).unwrap_err().to_string().contains("Control.version"));
        let mut c = control();
        c.maintainer = "nobody".into();
        assert!(validate(&c).unwrap_err().to_string().contains("Control.maintainer"));
    }
}
