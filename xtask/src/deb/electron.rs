//! The package layout electron-builder's deb target (fpm) produces for an Electron app,
//! plus the two documents lintian requires and fpm leaves out (copyright, changelog).
//!
//! ```text
//! /opt/<ProductName>/...                              the unpacked app
//! /usr/share/applications/<name>.desktop
//! /usr/share/icons/hicolor/<N>x<N>/apps/<name>.png
//! /usr/share/doc/<package>/copyright                  DEP-5
//! /usr/share/doc/<package>/changelog(.Debian).gz
//! /lib/systemd/system/<name>-kiosk.service            optional
//! /etc/apt/apt.conf.d/52<name>-unattended-upgrades    optional (a conffile, as all of /etc)
//! postinst/prerm/postrm: /usr/bin/<name> alternative, chrome-sandbox mode, caches
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::compress::gzip_bytes;
use super::spec::{BlockCacheConfig, Compression, Control, DebArch, DebSpec, DpkgVersion, Entry, MaintainerScripts};

/// fpm's `--depends` as electron-builder 26 passes them (dist.yaml starts from this list).
#[cfg(test)]
pub const FPM_DEPENDS: &[&str] = &[
    "libgtk-3-0",
    "libnotify4",
    "libnss3",
    "libxss1",
    "libxtst6",
    "xdg-utils",
    "libatspi2.0-0",
    "libuuid1",
    "libsecret-1-0",
];

/// fpm's `--deb-recommends` as electron-builder 26 passes them.
#[cfg(test)]
pub const FPM_RECOMMENDS: &[&str] = &["libappindicator3-1"];

/// `/usr/share/doc/<package>/copyright` in machine-readable (DEP-5) form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyrightInfo {
    /// The `Copyright:` value, e.g. "2025 KitchnTabs".
    pub holder: String,
    /// Short license name, e.g. "proprietary" or "MIT".
    pub license: String,
    /// Full license text (plain text; blank lines allowed); a plan shows its length.
    #[serde(serialize_with = "length_of")]
    pub license_text: String,
}

/// A systemd unit that starts the app as a kiosk at boot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KioskService {
    /// `User=`, e.g. "pi" (Raspberry Pi OS bookworm no longer creates it: dist.yaml names it).
    pub user: String,
    /// Extra arguments after the executable, e.g. `--no-sandbox`.
    pub args: Vec<String>,
    /// `Environment=DISPLAY=...`, e.g. ":0".
    pub display: String,
}

/// The repository a board that updates itself takes new versions from, as unattended-upgrades
/// matches it: the `Origin:` and `Suite:` of the repository's Release file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnattendedOrigin {
    pub origin: String,
    pub suite: String,
}

/// Inputs of [`electron_app_spec`]. Names follow electron-builder's: `product_name` is the
/// folder under /opt and the window class, `executable` the binary and the /usr/bin link,
/// `package` the Debian package name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ElectronApp {
    pub product_name: String,
    pub package: String,
    pub executable: String,
    pub version: String,
    pub arch: DebArch,
    pub maintainer: String,
    pub homepage: Option<String>,
    pub description_short: String,
    pub description_long: String,
    /// `Comment=` of the desktop entry.
    pub desktop_comment: String,
    /// `Categories=` of the desktop entry, e.g. "Office;".
    pub categories: String,
    /// electron-builder's `linux-*-unpacked` folder.
    pub unpacked_dir: PathBuf,
    /// (pixel size, PNG bytes); each PNG must really be N x N (lintian checks). A plan
    /// shows the sizes.
    #[serde(serialize_with = "icon_sizes")]
    pub icons: Vec<(u32, Vec<u8>)>,
    pub depends: Vec<String>,
    pub recommends: Vec<String>,
    pub copyright: CopyrightInfo,
    /// Highest `GLIBC_x.y` the bundled ELF files need (the ELF check's result), e.g.
    /// "2.31". Adds `libc6 (>= x.y)` in front of `depends`: fpm omits it, lintian calls
    /// that `missing-dependency-on-libc`, and without it apt happily installs a bookworm
    /// build on a bullseye device where it cannot start.
    pub glibc_floor: Option<String>,
    pub kiosk: Option<KioskService>,
    /// Install an unattended-upgrades origin pattern for this repository (and recommend
    /// unattended-upgrades): the board installs new versions by itself.
    pub unattended: Option<UnattendedOrigin>,
    pub source_date_epoch: u64,
}

fn length_of<S: serde::Serializer>(text: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{} bytes", text.len()))
}

fn icon_sizes<S: serde::Serializer>(icons: &[(u32, Vec<u8>)], s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(icons.len()))?;
    for (size, png) in icons {
        seq.serialize_element(&format!("{size}x{size} ({} bytes)", png.len()))?;
    }
    seq.end()
}

/// An Electron app's package as dist writes it: the app, the control fields dist.yaml sets,
/// the compression and the oldest dpkg that must unpack it. Resolved while planning.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AppPackage {
    pub out: PathBuf,
    pub app: ElectronApp,
    pub section: String,
    pub priority: String,
    pub compression: Compression,
    /// The oldest dpkg that will unpack it (decides which compressions are allowed).
    pub target_dpkg: DpkgVersion,
    /// xz: the block cache to reuse compressed data.tar blocks from (trimmed to twice the
    /// package's data.tar.xz). The package bytes do not depend on it.
    pub block_cache: Option<PathBuf>,
    /// The target's glibc floor, for the verify pass that runs before the rename.
    pub glibc: Option<crate::config::GlibcVersion>,
}

/// Write the .deb an [`AppPackage`] describes (temp file, verified, then renamed).
pub fn write_app_package(plan: &AppPackage) -> Result<super::DebSummary> {
    let mut spec = electron_app_spec(&plan.app)?;
    spec.control.section = plan.section.clone();
    spec.control.priority = plan.priority.clone();
    spec.compression = plan.compression;
    spec.target_dpkg = plan.target_dpkg;
    spec.xz_block_cache = plan.block_cache.as_ref().map(|dir| BlockCacheConfig { dir: dir.clone(), max_bytes: None });
    spec.verify = super::VerifyBinaries::Yes { glibc: plan.glibc };
    if let Some(dir) = plan.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    super::write_deb(&spec, &plan.out)
}

/// Build the [`DebSpec`] of an Electron app. Compression, threads and the target dpkg
/// keep [`DebSpec::new`]'s defaults (xz -6, all cores, bullseye); set them on the result.
pub fn electron_app_spec(app: &ElectronApp) -> Result<DebSpec> {
    for (field, value) in [("ElectronApp.product_name", &app.product_name), ("ElectronApp.executable", &app.executable)]
    {
        if value.is_empty() || value.contains(['/', '\n', '\'']) || value.starts_with('.') {
            bail!("{field} {value:?} must be a plain file name (no '/', quote or leading '.')");
        }
    }
    if let Some(v) = &app.glibc_floor
        && (v.is_empty() || !v.chars().all(|c| c.is_ascii_digit() || c == '.'))
    {
        bail!("ElectronApp.glibc_floor {v:?} must be a glibc version like \"2.31\"");
    }
    let pkg = &app.package;
    let exe = &app.executable;
    let opt = format!("/opt/{}", app.product_name);
    let app_path = format!("{opt}/{exe}");

    let control = Control {
        package: pkg.clone(),
        version: app.version.clone(),
        architecture: app.arch,
        maintainer: app.maintainer.clone(),
        section: "misc".into(),
        priority: "optional".into(),
        homepage: app.homepage.clone(),
        depends: app.glibc_floor.iter().map(|v| format!("libc6 (>= {v})")).chain(app.depends.iter().cloned()).collect(),
        recommends: app.recommends.clone(),
        description_short: app.description_short.clone(),
        description_long: app.description_long.clone(),
    };
    let mut spec = DebSpec::new(control, app.source_date_epoch);
    spec.add_tree(&app.unpacked_dir, &opt)?;
    if !app.unpacked_dir.join(exe).is_file() {
        bail!(
            "{} has no executable {exe:?}; is ElectronApp.unpacked_dir electron-builder's \
             linux-*-unpacked folder?",
            app.unpacked_dir.display()
        );
    }

    spec.entries.push(Entry::bytes(
        format!("/usr/share/applications/{exe}.desktop"),
        desktop_entry(app, &app_path),
        0o644,
    ));
    for (size, png) in &app.icons {
        check_png(*size, png)?;
        spec.entries.push(Entry::bytes(
            format!("/usr/share/icons/hicolor/{size}x{size}/apps/{exe}.png"),
            png.clone(),
            0o644,
        ));
    }
    let doc = format!("/usr/share/doc/{pkg}");
    spec.entries.push(Entry::bytes(format!("{doc}/copyright"), copyright(app), 0o644));
    spec.entries.push(Entry::bytes(
        format!("{doc}/{}", changelog_name(&app.version)),
        gzip_bytes(changelog(app).as_bytes()),
        0o644,
    ));
    let unit = app.kiosk.as_ref().map(|_| format!("{exe}-kiosk.service"));
    if let (Some(kiosk), Some(unit)) = (&app.kiosk, &unit) {
        spec.entries.push(Entry::bytes(
            format!("/lib/systemd/system/{unit}"),
            kiosk_unit(app, kiosk, &app_path),
            0o644,
        ));
        // deb-systemd-helper (enable/mask/purge) comes from init-system-helpers.
        spec.control.depends.push("init-system-helpers (>= 1.54~)".into());
    }
    if let Some(u) = &app.unattended {
        spec.entries.push(Entry::bytes(unattended_path(exe), unattended_conf(u)?, 0o644));
        if !spec.control.recommends.iter().any(|r| r == "unattended-upgrades") {
            spec.control.recommends.push("unattended-upgrades".into());
        }
    }
    spec.scripts = scripts(exe, &opt, &app_path, unit.as_deref());
    Ok(spec)
}

/// Where the origin pattern goes: after Debian's `50unattended-upgrades`, so it adds to the
/// list that file starts (apt.conf lists accumulate across fragments).
pub fn unattended_path(exe: &str) -> String {
    format!("/etc/apt/apt.conf.d/52{exe}-unattended-upgrades")
}

/// The apt.conf fragment that lets unattended-upgrades install from this repository. Its
/// pattern syntax (README.md of unattended-upgrades): `key=value` pairs joined by commas, a
/// comma inside a value written `\,`, values matched as globs.
pub fn unattended_conf(u: &UnattendedOrigin) -> Result<String> {
    let value = |what: &str, v: &str| -> Result<String> {
        if v.is_empty() || v.contains(['"', '\\', '\n', '*', '?', '[', ']', '{', '}', ';']) {
            bail!(
                "the unattended-upgrades {what} {v:?} must be non-empty and free of quotes, backslashes, \
                 glob characters, braces and semicolons (apt.conf and the pattern syntax give them meaning)"
            );
        }
        Ok(v.replace(',', "\\,"))
    };
    Ok(format!(
        "// Installed by the package: new versions from its APT repository are installed\n\
         // unattended. Matched against the repository's Release file (Origin, Suite).\n\
         Unattended-Upgrade::Origins-Pattern {{\n    \"origin={},suite={}\";\n}};\n",
        value("origin", &u.origin)?,
        value("suite", &u.suite)?
    ))
}

/// Quote for a POSIX shell: single quotes, embedded quotes closed and escaped.
fn sh(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn desktop_entry(app: &ElectronApp, app_path: &str) -> String {
    // The desktop-entry spec wants paths with spaces quoted in Exec.
    let exec = if app_path.contains(' ') { format!("\"{app_path}\"") } else { app_path.to_string() };
    format!(
        "[Desktop Entry]\nName={}\nExec={exec} %U\nTerminal=false\nType=Application\n\
         Icon={}\nStartupWMClass={}\nComment={}\nCategories={}\n",
        app.product_name, app.executable, app.product_name, app.desktop_comment, app.categories
    )
}

/// Policy 12.7: native versions (no Debian revision) ship `changelog.gz`, others
/// `changelog.Debian.gz`; lintian 2.116 flags the other name
/// (`wrong-name-for-changelog-of-native-package` / `no-changelog`).
pub(super) fn changelog_name(version: &str) -> &'static str {
    if version.contains('-') { "changelog.Debian.gz" } else { "changelog.gz" }
}

fn changelog(app: &ElectronApp) -> String {
    format!(
        "{} ({}) stable; urgency=medium\n\n  * Release {} of {}.\n\n -- {}  {}\n",
        app.package,
        app.version,
        app.version,
        app.product_name,
        app.maintainer,
        rfc2822(app.source_date_epoch)
    )
}

fn copyright(app: &ElectronApp) -> String {
    let c = &app.copyright;
    let mut s = String::from("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n");
    s.push_str(&format!("Upstream-Name: {}\n", app.product_name));
    s.push_str(&format!("Upstream-Contact: {}\n", app.maintainer));
    if let Some(h) = &app.homepage {
        s.push_str(&format!("Source: {h}\n"));
    }
    s.push_str(&format!("\nFiles: *\nCopyright: {}\nLicense: {}\n", c.holder, c.license));
    for line in c.license_text.trim_end().lines() {
        let line = line.trim_end();
        s.push_str(if line.is_empty() { " ." } else { " " });
        s.push_str(line);
        s.push('\n');
    }
    s
}

fn kiosk_unit(app: &ElectronApp, kiosk: &KioskService, app_path: &str) -> String {
    let mut exec = app_path.to_string();
    for a in &kiosk.args {
        exec.push(' ');
        exec.push_str(a);
    }
    format!(
        "[Unit]\nDescription={} kiosk\nAfter=network.target\n\n\
         [Service]\nType=simple\nUser={}\nExecStart={exec}\nRestart=always\n\
         Environment=DISPLAY={}\n\n[Install]\nWantedBy=multi-user.target\n",
        app.product_name, kiosk.user, kiosk.display
    )
}

/// electron-builder's after-install/after-remove templates, made POSIX-sh and `set -e`
/// clean, with two fixes:
/// - the alternative is removed in prerm (lintian `postrm-removes-alternative`: in postrm
///   the file is gone and update-alternatives leaves a dangling manual link), with the
///   alternative's path (electron-builder passes the link path, which --remove ignores);
/// - the user-namespace probe runs as `nobody` when setpriv exists: as root (postinst)
///   `unshare --user true` succeeds even where unprivileged namespaces are disabled, which
///   is exactly the case that needs the setuid sandbox.
fn scripts(exe: &str, opt: &str, app_path: &str, unit: Option<&str>) -> MaintainerScripts {
    let link = format!("/usr/bin/{exe}");
    let sandbox = format!("{opt}/chrome-sandbox");
    let (app_q, link_q, sandbox_q, name_q) = (sh(app_path), sh(&link), sh(&sandbox), sh(exe));

    let mut postinst = format!(
        r#"#!/bin/sh
set -e

# /usr/bin/{exe}: an alternative, or a plain link where update-alternatives is missing.
if command -v update-alternatives >/dev/null 2>&1; then
    # A plain link left by the fallback below would block the alternative.
    if [ -L {link_q} ] && [ "$(readlink {link_q})" != {alt_q} ]; then
        rm -f {link_q}
    fi
    update-alternatives --install {link_q} {name_q} {app_q} 100 || ln -sf {app_q} {link_q}
else
    ln -sf {app_q} {link_q}
fi

# chrome-sandbox needs setuid root only where unprivileged user namespaces do not work.
# The probe runs as nobody: root can always create a user namespace.
userns_works() {{
    if command -v setpriv >/dev/null 2>&1; then
        setpriv --reuid=nobody --regid=nogroup --clear-groups unshare --user true
    else
        unshare --user true
    fi
}}
if [ -f {sandbox_q} ]; then
    if [ -L /proc/self/ns/user ] && userns_works >/dev/null 2>&1; then
        chmod 0755 {sandbox_q} || true
    else
        chmod 4755 {sandbox_q} || true
    fi
fi

if command -v update-mime-database >/dev/null 2>&1; then
    update-mime-database /usr/share/mime || true
fi
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database /usr/share/applications || true
fi
"#,
        alt_q = sh(&format!("/etc/alternatives/{exe}")),
    );

    let mut prerm = format!(
        r#"#!/bin/sh
set -e

if [ "$1" = remove ] || [ "$1" = deconfigure ]; then
    if command -v update-alternatives >/dev/null 2>&1; then
        update-alternatives --remove {name_q} {app_q} || true
    fi
fi
"#
    );

    let mut postrm = format!(
        r#"#!/bin/sh
set -e

if [ "$1" = remove ] || [ "$1" = purge ]; then
    # The fallback link of postinst, only while it still points at this package.
    if [ -L {link_q} ] && [ "$(readlink {link_q})" = {app_q} ]; then
        rm -f {link_q}
    fi
fi
"#
    );

    if let Some(unit) = unit {
        let unit_q = sh(unit);
        // What dh_installsystemd generates, minus starting the unit on first install: a
        // kiosk takes over the display, so it starts at the next boot. On upgrade a running
        // kiosk is restarted (try-restart), as dh_installsystemd restarts on upgrade. deb-systemd-helper also works in a
        // chroot (image builds), where systemctl has no running systemd to talk to.
        postinst.push_str(&format!(
            r#"
# Kiosk unit: enabled on first install, kept as the admin left it on upgrades.
if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
    deb-systemd-helper unmask {unit_q} >/dev/null || true
    if deb-systemd-helper --quiet was-enabled {unit_q}; then
        deb-systemd-helper enable {unit_q} >/dev/null || true
    else
        deb-systemd-helper update-state {unit_q} >/dev/null || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        # An upgrade ($2: the version it replaces) restarts a running kiosk, so the new
        # version is the one on screen; a kiosk the admin stopped stays stopped.
        if [ -n "$2" ]; then
            deb-systemd-invoke try-restart {unit_q} >/dev/null || true
        fi
    fi
fi
"#
        ));
        prerm.push_str(&format!(
            r#"
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop {unit_q} >/dev/null || true
fi
"#
        ));
        postrm.push_str(&format!(
            r#"
if [ "$1" = remove ] && command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper mask {unit_q} >/dev/null || true
fi
if [ "$1" = purge ] && command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper purge {unit_q} >/dev/null || true
    deb-systemd-helper unmask {unit_q} >/dev/null || true
fi
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
"#
        ));
    }

    MaintainerScripts { preinst: None, postinst: Some(postinst), prerm: Some(prerm), postrm: Some(postrm) }
}

/// Check the PNG signature and that IHDR says `size` x `size`: lintian's
/// `icon-size-and-directory-name-mismatch` otherwise, and a blurry icon on the device.
fn check_png(size: u32, png: &[u8]) -> Result<()> {
    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || &png[..8] != SIG || &png[12..16] != b"IHDR" {
        bail!("ElectronApp.icons: the {size}x{size} icon is not a PNG file");
    }
    let w = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
    let h = u32::from_be_bytes(png[20..24].try_into().expect("4 bytes"));
    if (w, h) != (size, size) {
        bail!(
            "ElectronApp.icons: the icon given as {size}x{size} is {w}x{h}; \
             pass it under its real size or resize it"
        );
    }
    Ok(())
}

/// "Tue, 14 Nov 2023 22:13:20 +0000" (RFC 2822, as debian/changelog wants it).
pub(super) fn rfc2822(epoch: u64) -> String {
    rfc2822_in(epoch, "+0000")
}

/// An RFC 2822 date of `epoch` in UTC, the zone written as `zone`: debian/changelog writes
/// `+0000`, apt's Release files `UTC`.
pub fn rfc2822_in(epoch: u64, zone: &str) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (a Thursday).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} {zone}",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc2822_dates() {
        assert_eq!(super::rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(super::rfc2822(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(super::rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn changelog_name_follows_nativeness() {
        assert_eq!(super::changelog_name("1.0.19"), "changelog.gz");
        assert_eq!(super::changelog_name("1.0.19-1"), "changelog.Debian.gz");
    }
}
