//! The steps of a plan, built from dist.yaml and the host's facts: the whole `dist` plan, the
//! service builds (native and container), the Electron app, the build-base image, the .deb or
//! archive, the release record. Nothing here runs anything.

pub mod base_image;
pub mod dist;
pub mod electron;
pub mod package;
pub mod release;
pub mod service_stages;
pub mod services;
