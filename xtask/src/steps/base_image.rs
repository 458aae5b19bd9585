//! `cargo xtask base-image`: a build-base image from Debian packages, for machines that reach
//! no image registry (air-gapped build farms, and our CI): debootstrap a rootfs of the
//! target's arch (under binfmt QEMU for a foreign one), then `FROM scratch` + `ADD rootfs.tar /`
//! built with `--platform`, which labels the image with the right platform (`docker import`
//! would label it with the host's).
//!
//! The rootfs tarball is cached outside the checkout (`KT_CACHE_DIR`, default
//! `~/.cache/kitchntabs`) with its stamp beside it, so clean clones reuse it; the image carries
//! the rootfs fingerprint as a label, which is how a run knows it is current.

use std::path::PathBuf;

use anyhow::Result;

use crate::{
    arch::Arch,
    config::Suite,
    engine::Engine,
    plan::{Action, OutputProbe, Step, StepKind},
    prereq::Prereq,
    process::Command,
};

/// What a services build needs from the OS: Python with venv and its shared libpython
/// (PyInstaller bundles it), gcc and zlib headers for PyInstaller's bootloader (no armv7l
/// wheel), libjpeg and zlib headers for Pillow (no armv7l wheel), objcopy (PyInstaller adds
/// its archive as an ELF section).
pub const PACKAGES: &[&str] =
    &["python3", "python3-venv", "python3-dev", "gcc", "libc6-dev", "zlib1g-dev", "libjpeg62-turbo-dev", "binutils"];

pub const MIRROR: &str = "http://deb.debian.org/debian";

/// The label that ties an image to the rootfs it was built from.
const LABEL: &str = "com.kitchntabs.rootfs";

/// The rootfs step and the image step for `arch` on `suite`, and the rootfs fingerprint the
/// image is labelled with (builds on the image record it, so a new base rebuilds them).
pub fn steps(
    root: &std::path::Path,
    arch: Arch,
    suite: Suite,
    engine: &Engine,
    cache: &std::path::Path,
) -> Result<(Vec<Step>, String)> {
    let debian =
        arch.debian_arch().ok_or_else(|| anyhow::anyhow!("{arch} has no Debian base image: it builds natively"))?;
    let platform = arch.docker_platform().expect("Debian arches have a Docker platform");
    let name = format!("{}-{debian}", suite.name());
    let packages: Vec<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
    let (rootfs, tar) = rootfs_step(root, arch, suite, cache, &name, &packages)?;
    let digest = rootfs.fingerprint(root, None)?.0.digest();

    let image_tag = suite.build_image(arch);
    let context = cache.join("base-image").join(&name);
    let mut image =
        Step::new("base-image", format!("build image {image_tag}"), StepKind::BaseImage { tag: image_tag.clone() });
    image.probe = Some(OutputProbe {
        command: engine.image_label(&image_tag, LABEL, root).expect("a container engine"),
        expect: digest.clone(),
        missing: format!("{image_tag} is missing or was built from another rootfs"),
    });
    // The build context is in the shared cache (beside the rootfs it hard-links), and two runs
    // for two engines (a second endpoint) build this image at once: one at a time, or one
    // removes the context the other's `docker build` is reading.
    image.lock = Some(cache.join("base-image").join(format!("{name}.lock")));
    image.actions.push(Action::Clean { path: context.clone() });
    image.actions.push(Action::Link { from: tar, to: context.join("rootfs.tar") });
    image.actions.push(Action::WriteFile {
        path: context.join("Dockerfile"),
        contents: "FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD [\"/bin/bash\"]\n".into(),
    });
    image.actions.push(Action::Run(
        engine.image_build(platform, &image_tag, &[(LABEL, &digest)], &context).expect("a container engine"),
    ));
    image.actions.push(Action::Clean { path: context });
    Ok((vec![rootfs, image], digest))
}

/// A debootstrap rootfs of `arch` with `packages`, as a tarball cached under `cache/rootfs/`
/// as `<name>.tar` with its stamp beside it.
pub fn rootfs_step(
    root: &std::path::Path,
    arch: Arch,
    suite: Suite,
    cache: &std::path::Path,
    name: &str,
    packages: &[String],
) -> Result<(Step, PathBuf)> {
    let debian = arch.debian_arch().ok_or_else(|| anyhow::anyhow!("{arch} has no Debian rootfs"))?;
    let dir = cache.join("rootfs");
    let tar = dir.join(format!("{name}.tar"));
    let work = dir.join(format!("{name}.work"));

    let mut rootfs =
        Step::new("rootfs", format!("debootstrap {} {debian} rootfs", suite.name()), StepKind::Rootfs { suite });
    rootfs.stamp = Some(dir.join(format!("{name}.stamp.json")));
    // Every checkout on the machine shares the cache: one debootstrap per rootfs at a time.
    rootfs.lock = Some(dir.join(format!("{name}.lock")));
    rootfs.values.insert("suite".into(), suite.name().into());
    rootfs.values.insert("arch".into(), debian.into());
    rootfs.values.insert("mirror".into(), MIRROR.into());
    rootfs.values.insert("packages".into(), packages.join(","));
    rootfs.outputs.push(tar.clone());
    rootfs.actions.push(Action::Clean { path: work.clone() });
    rootfs.actions.push(Action::Run(
        Command::new("debootstrap", root)
            .args(["--variant=minbase", &format!("--arch={debian}"), &format!("--include={}", packages.join(","))])
            .arg(suite.name())
            .arg(&work)
            .arg(MIRROR),
    ));
    let tmp_tar = crate::fsx::tmp_sibling(&tar);
    // Numeric owners: the image must not depend on the host's user names.
    rootfs.actions.push(Action::Run(
        Command::new("tar", root)
            .args(["--numeric-owner", "--sort=name", "-C"])
            .arg(&work)
            .arg("-cf")
            .arg(&tmp_tar)
            .arg("."),
    ));
    rootfs.actions.push(Action::Install { from: tmp_tar, to: tar.clone(), executable: false });
    rootfs.actions.push(Action::Clean { path: work });
    Ok((rootfs, tar))
}

/// What the host needs for `steps`: debootstrap and GNU tar (installed when they do not run,
/// as root).
pub fn add_preflight(step: &mut Step) {
    step.actions.push(Action::Prerequisites {
        needs: vec![
            Prereq::runs("debootstrap", &["--version"], &["debootstrap"]),
            Prereq::runs("tar", &["--version"], &["tar"]),
        ],
    });
}
