//! Sharing an environment's image between machines without rebuilding
//! it: air-gapped bundles ([`bundle`]: one file, `bundle` and `load`).
//! What arrives is used only if it is what this machine's spec, lock and
//! harness sources would build (the labels and base layers of
//! `build::image::shared_labels` and `build::provenance`); a difference is
//! an error naming the field, never a silent use.
//!
//! May use: `build`, `docker`, `exit`, `lock`, `progress`, `spec`.

pub mod bundle;

use std::path::PathBuf;

use crate::build::BuildError;
use crate::docker::DockerError;
use crate::exit;

/// Why an image could not be shared.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ShareError {
    #[error("{path} is not a torchenv bundle: {why}")]
    #[diagnostic(
        code(torchenv::bundle::format),
        help("bundles are written by `cargo xtask bundle ENV --out FILE`")
    )]
    NotABundle { path: PathBuf, why: String },
    #[error("{path} holds environment `{env}`, which this spec does not define")]
    #[diagnostic(
        code(torchenv::bundle::env),
        help("load it where its environments.yaml and environments.lock are (the same checkout)")
    )]
    UnknownEnv { path: PathBuf, env: String },
    /// The image is not what this machine's spec, lock and harness sources
    /// would build.
    #[error(
        "{path}: `{env}`'s {field} is `{found}`, but this spec, lock and harness give `{expected}`"
    )]
    #[diagnostic(
        code(torchenv::bundle::mismatch),
        help("the bundle was made from another spec, lock or harness version: check out the commit it was made from, or make a new bundle from this one")
    )]
    Mismatch {
        path: PathBuf,
        env: String,
        field: String,
        expected: String,
        found: String,
    },
    /// The archive inside does not hold what its manifest says.
    #[error("{path}: {why}")]
    #[diagnostic(
        code(torchenv::bundle::tampered),
        help("the file was changed after `cargo xtask bundle` wrote it; nothing was loaded, or what was loaded is untagged again")
    )]
    Tampered { path: PathBuf, why: String },
    #[error("{tag} already names image {existing} on this engine, not the bundle's {bundled}")]
    #[diagnostic(
        code(torchenv::bundle::tag_taken),
        help("remove it first (`docker image rm {tag}`) if the bundle's image should replace it")
    )]
    TagTaken {
        tag: String,
        existing: String,
        bundled: String,
    },
    #[error("--out {path}: {what}")]
    #[diagnostic(code(torchenv::bundle::out))]
    Output { path: PathBuf, what: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Build(Box<BuildError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(Box<DockerError>),
}

impl ShareError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ShareError::NotABundle { .. }
            | ShareError::UnknownEnv { .. }
            | ShareError::Mismatch { .. }
            | ShareError::Tampered { .. } => exit::BAD_INPUT,
            ShareError::Build(e) => e.exit_code(),
            ShareError::Docker(e) if e.is_unreachable() => exit::DOCKER_UNREACHABLE,
            ShareError::TagTaken { .. } | ShareError::Output { .. } | ShareError::Docker(_) => {
                exit::FAILED
            }
        }
    }
}

impl From<BuildError> for ShareError {
    fn from(e: BuildError) -> Self {
        ShareError::Build(Box::new(e))
    }
}

impl From<DockerError> for ShareError {
    fn from(e: DockerError) -> Self {
        ShareError::Docker(Box::new(e))
    }
}
