//! [`LaunchError`]: why an environment could not be started, reached or
//! checked, each with its documented exit code (README "Exit codes").
//!
//! May use: `build`, `docker`, `exit`, `lock`, `spec`, `launch::owner`.

use std::path::PathBuf;
use std::time::Duration;

use miette::Diagnostic;

use super::owner::Kind;
use crate::build::BuildError;
use crate::docker::DockerError;
use crate::exit;
use crate::lock::LockError;
use crate::spec::{SpecError, UnknownEnv};

/// Failures of the launch commands, each with its documented exit code.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum LaunchError {
    #[error("host port {port} ({purpose}) on {host_ip} is already in use")]
    #[diagnostic(
        code(torchenv::port_taken),
        help("stop what listens there (`ss -ltnp 'sport = :{port}'`), change the port in environments.yaml, or run `cargo xtask up --auto-ports` to pick free ones")
    )]
    PortTaken {
        port: u16,
        host_ip: String,
        purpose: String,
    },
    #[error("volume source {path} does not exist (mounted at {target})")]
    #[diagnostic(
        code(torchenv::volume_missing),
        help("create it or fix `volumes:` in environments.yaml; torchenv never creates an empty folder in its place")
    )]
    VolumeMissing { path: PathBuf, target: String },
    #[error("environment `{env}` asks for GPUs (`gpus: {requested}`) but the engine at {host} has {found}")]
    #[diagnostic(
        code(torchenv::gpu_unavailable),
        help("install and configure nvidia-container-toolkit (Docker: `nvidia-ctk runtime configure --runtime=docker`, then restart dockerd; Podman 5.4 or later: `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`), or set `gpus: auto` / `gpus: none`; `cargo xtask doctor` checks the setup")
    )]
    GpuUnavailable {
        env: String,
        requested: String,
        host: String,
        found: String,
    },
    /// A command needs GPUs (e.g. `check --device cuda`) but the
    /// environment's `gpus:` resolves to none on this engine.
    #[error("`{wanted}` needs GPUs, but environment `{env}` gets none (`gpus: {gpus}`){why}")]
    #[diagnostic(
        code(torchenv::no_gpus),
        help("set `gpus:` of the environment in environments.yaml (e.g. `gpus: all`), or check on the CPU (`--device cpu --expect-gpus 0`); `cargo xtask doctor` checks the GPU setup")
    )]
    NoGpus {
        env: String,
        gpus: String,
        wanted: String,
        why: String,
    },
    #[error("environment `{env}` was not ready after {waited:?}: {reason}\n--- last log lines of {container} ---\n{logs}")]
    #[diagnostic(
        code(torchenv::not_ready),
        help("the container is left for inspection: `cargo xtask logs {env}`, `cargo xtask shell {env}`; remove it with `cargo xtask down {env}`; a slower machine may need `--timeout`")
    )]
    NotReady {
        env: String,
        container: String,
        waited: Duration,
        reason: String,
        logs: String,
    },
    #[error("container {name} exists but was not created by torchenv (no {label} label)")]
    #[diagnostic(
        code(torchenv::foreign_container),
        help("torchenv never touches containers it did not create; rename or remove it yourself (`docker rm {name}`)")
    )]
    ForeignContainer { name: String, label: &'static str },
    /// A container, volume or network torchenv made for another user
    /// (`launch::owner::check`): no command acts on it.
    #[error("{kind} {name} is not yours: it belongs to {owner}; you are {you}")]
    #[diagnostic(
        code(torchenv::not_yours),
        help("torchenv acts only on your own containers, volumes and networks; its owner can remove it (`cargo xtask down`), or an administrator: `{remove}`")
    )]
    NotYours {
        kind: Kind,
        name: String,
        /// `alice (uid 1001)`, or why the owner is unknown.
        owner: String,
        /// `bob (uid 1002)`.
        you: String,
        /// The docker command that removes it.
        remove: String,
    },
    /// `TORCHENV_UID` names another uid and this process is not root.
    #[error(
        "TORCHENV_UID={asked} asks to act as another user, but this process runs as uid {uid}"
    )]
    #[diagnostic(
        code(torchenv::uid_override),
        help("only root may act on behalf of another uid; unset TORCHENV_UID")
    )]
    UidOverride { asked: u32, uid: u32 },
    /// `TORCHENV_GID` names a group this (non-root) process is not in.
    #[error("TORCHENV_GID={asked} names a group you are not in (your groups: {groups})")]
    #[diagnostic(
        code(torchenv::gid_override),
        help("the container's files would carry that group's id; unset TORCHENV_GID or name one of your groups")
    )]
    GidOverride { asked: u32, groups: String },
    #[error("environment `{env}` is not running (no container {container})")]
    #[diagnostic(
        code(torchenv::not_running),
        help("start it with `cargo xtask up {env}`")
    )]
    NotRunning { env: String, container: String },
    /// A concurrent `up` of the same environment replaced or removed the
    /// container under us; `up` retries on this.
    #[error("container {container} changed under us (a concurrent `up` or `down`?)")]
    #[diagnostic(code(torchenv::raced), help("run `cargo xtask up` again"))]
    Raced { container: String },
    #[error("SSH public key {path} cannot be read: {reason}")]
    #[diagnostic(
        code(torchenv::ssh_key),
        help("fix `ssh.public_key` in environments.yaml, or create a key with `ssh-keygen -t ed25519`")
    )]
    SshKey { path: PathBuf, reason: String },
    #[error("image {image} does not exist on the Docker engine at {host}")]
    #[diagnostic(
        code(torchenv::image_missing),
        help("build it with `cargo xtask build`, or drop --image")
    )]
    ImageMissing { image: String, host: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(Box<DockerError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Build(Box<BuildError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lock(Box<LockError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(Box<SpecError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownEnv(#[from] UnknownEnv),
    /// Anything else a launch step reports.
    #[error("{message}")]
    #[diagnostic(code(torchenv::launch::failed))]
    Failed {
        message: String,
        #[help]
        help: Option<String>,
    },
    #[error("{context}: {source}")]
    #[diagnostic(code(torchenv::io))]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

failure_constructors!(LaunchError);

impl LaunchError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LaunchError::PortTaken { .. } => exit::PORT_TAKEN,
            LaunchError::VolumeMissing { .. } => exit::VOLUME_MISSING,
            LaunchError::GpuUnavailable { .. } => exit::GPU_UNAVAILABLE,
            // `gpus: none` contradicts the command line; anything else
            // resolved to none because the engine offers no GPUs.
            LaunchError::NoGpus { gpus, .. } if gpus == "none" => exit::BAD_INPUT,
            LaunchError::NoGpus { .. } => exit::GPU_UNAVAILABLE,
            LaunchError::NotReady { .. } => exit::NOT_READY,
            LaunchError::SshKey { .. }
            | LaunchError::UidOverride { .. }
            | LaunchError::GidOverride { .. } => exit::BAD_INPUT,
            LaunchError::Spec(_) | LaunchError::UnknownEnv(_) => exit::BAD_INPUT,
            LaunchError::Docker(e) if e.is_unreachable() => exit::DOCKER_UNREACHABLE,
            LaunchError::Build(e) => e.exit_code(),
            LaunchError::Lock(e) => e.exit_code(),
            LaunchError::ForeignContainer { .. }
            | LaunchError::NotYours { .. }
            | LaunchError::NotRunning { .. }
            | LaunchError::Raced { .. }
            | LaunchError::ImageMissing { .. }
            | LaunchError::Docker(_)
            | LaunchError::Failed { .. }
            | LaunchError::Io { .. } => exit::FAILED,
        }
    }
}

boxed_from!(LaunchError {
    Docker(DockerError),
    Build(BuildError),
    Lock(LockError),
    Spec(SpecError),
});

pub type Result<T, E = LaunchError> = std::result::Result<T, E>;
