//! The one Docker client: every engine call torchenv makes goes through
//! [`Docker`], and every failure is a [`DockerError`] naming the operation
//! and the image, container or volume it concerned.
//!
//! Capabilities add their calls in their own files (`images.rs`, `registry.rs`,
//! `containers.rs`, `networks.rs`, `run.rs`) as further `impl Docker` blocks; `classify.rs`
//! is the only reader of engine status codes and message text, turning each
//! failure into a typed variant (conflict, not modified, port taken, GPUs or
//! a ulimit refused, …) callers match on.
//!
//! May use: bollard, tokio and the standard library; nothing else of the
//! crate (the launch and gate modules build on this one, never the reverse).

use bollard::errors::Error as BollardError;

pub mod classify;
pub mod containers;
pub mod engine;
pub mod images;
pub mod networks;
pub mod registry;
pub mod run;

/// Label on everything torchenv creates; the tool never touches an object
/// without it.
pub const LABEL_MANAGED_BY: &str = "dev.torchenv.managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "torchenv";
/// Label holding the environment name.
pub const LABEL_ENV: &str = "dev.torchenv.env";
/// Label of an image naming the base it was built on.
pub const LABEL_BASE: &str = "dev.torchenv.base";
/// Label of a stage image naming its stage (`venv`, `system`).
pub const LABEL_STAGE: &str = "dev.torchenv.stage";

/// A connection to the engine named by `DOCKER_HOST` (unix socket, tcp
/// with TLS when `DOCKER_TLS_VERIFY` is set, or ssh), else the first local
/// socket that answers of [`local_sockets`]: Docker's, then the user's
/// rootless Podman service, then rootful Podman's.
#[derive(Clone)]
pub struct Docker {
    pub(crate) api: bollard::Docker,
    /// Where we connected, for messages.
    pub host: String,
    /// Which engine answers, and how it differs ([`engine`]).
    pub engine: std::sync::Arc<engine::Engine>,
}

/// The local engine sockets tried, in order, when `DOCKER_HOST` is unset:
/// Docker's, the user's Podman service
/// (`$XDG_RUNTIME_DIR/podman/podman.sock`, as `systemctl --user start
/// podman.socket` or `podman system service` makes it) and rootful
/// Podman's.
pub fn local_sockets() -> Vec<String> {
    let mut out = vec!["/var/run/docker.sock".to_string()];
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        let sock = std::path::Path::new(&run).join("podman/podman.sock");
        out.push(sock.to_string_lossy().into_owned());
    }
    out.push("/run/podman/podman.sock".into());
    out
}

/// Why the engine answered 409.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// The container name is taken (a concurrent create won).
    NameInUse,
    /// The container is being removed ("removal … already in progress",
    /// "marked for removal"): a concurrent `down` or `up`.
    BeingRemoved,
    Other,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DockerError {
    #[error("cannot reach the Docker engine at {host}: {}", classify::transport_reason(.source, Some(HANDSHAKE_TIMEOUT)))]
    #[diagnostic(
        code(torchenv::docker::unreachable),
        help("is the daemon running and DOCKER_HOST right? `cargo xtask doctor` checks the setup")
    )]
    Unreachable {
        host: String,
        #[source]
        source: BollardError,
    },
    /// 404: no such image, container or volume.
    #[error("docker {op} {target}: not found: {source}")]
    #[diagnostic(code(torchenv::docker::not_found))]
    NotFound {
        op: &'static str,
        target: String,
        #[source]
        source: BollardError,
    },
    /// 304: nothing to do (e.g. starting a running container).
    #[error("docker {op} {target}: not modified (already in that state)")]
    #[diagnostic(code(torchenv::docker::not_modified))]
    NotModified { op: &'static str, target: String },
    /// 409: see [`Conflict`].
    #[error("docker {op} {target}: conflict: {source}")]
    #[diagnostic(code(torchenv::docker::conflict))]
    Conflict {
        op: &'static str,
        target: String,
        reason: Conflict,
        #[source]
        source: BollardError,
    },
    /// The engine could not publish a host port (`port` when its message
    /// names it).
    #[error("docker {op} {target}: a host port is already in use: {source}")]
    #[diagnostic(code(torchenv::docker::port_taken))]
    PortTaken {
        op: &'static str,
        target: String,
        port: Option<u16>,
        #[source]
        source: BollardError,
    },
    /// The engine refused the container's GPU (device) requests.
    #[error("docker {op} {target}: the engine refused the GPU request: {source}")]
    #[diagnostic(code(torchenv::docker::gpu_refused))]
    GpuRefused {
        op: &'static str,
        target: String,
        #[source]
        source: BollardError,
    },
    /// The engine ran out of disk space doing `op` (its storage, or where
    /// it keeps an upload): what it wrote for `op` is its to clean up.
    #[error("docker {op} {target}: the engine ran out of disk space: {source}")]
    #[diagnostic(
        code(torchenv::docker::disk_full),
        help("free space where the engine keeps images and temporary files (`cargo xtask prune`, `docker image prune`, `podman image prune`; `cargo xtask doctor` shows the free space), then run the command again")
    )]
    DiskFull {
        op: &'static str,
        target: String,
        #[source]
        source: BollardError,
    },
    /// The engine may not raise the ulimit `name` (no CAP_SYS_RESOURCE).
    #[error("docker {op} {target}: the engine may not set the {name} ulimit: {source}")]
    #[diagnostic(code(torchenv::docker::ulimit_refused))]
    UlimitRefused {
        op: &'static str,
        target: String,
        name: &'static str,
        #[source]
        source: BollardError,
    },
    /// The connection to the engine broke, or the engine stopped answering,
    /// in the middle of `op`: whether `op` took effect is unknown (the next
    /// run finds out from what exists).
    #[error("lost the connection to the Docker engine at {host} during docker {op} {target}: {}", classify::transport_reason(.source, None))]
    #[diagnostic(
        code(torchenv::docker::lost),
        help("is the daemon still running (`cargo xtask doctor` checks the setup)? Run the command again: it picks up what the interrupted run left")
    )]
    Lost {
        host: String,
        op: &'static str,
        target: String,
        #[source]
        source: Box<BollardError>,
    },
    /// Any other failed engine call: `op` says what we were doing, `target`
    /// to what.
    #[error("docker {op} {target}: {source}")]
    #[diagnostic(code(torchenv::docker::api))]
    Api {
        op: &'static str,
        target: String,
        #[source]
        source: BollardError,
    },
}

impl DockerError {
    /// The error of a failed `op` on `target`, classified
    /// ([`classify::classify`]).
    pub fn api(op: &'static str, target: impl Into<String>) -> impl FnOnce(BollardError) -> Self {
        let target = target.into();
        move |source| classify::classify(op, target, source)
    }

    /// True when the engine could not be reached at all, or the connection
    /// to it was lost half-way (exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DockerError::Unreachable { .. } | DockerError::Lost { .. }
        )
    }

    /// True when the engine answered 404 (no such image/container/volume).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::NotFound { .. })
    }
}

/// How long the engine may take to answer the first requests (version
/// negotiation and ping) before it counts as unreachable: a hung daemon,
/// or a socket something accepts on but never answers, fails the command
/// instead of stalling it for bollard's two-minute request timeout.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl Docker {
    /// Connects and negotiates the API version with the engine, so an older
    /// daemon (e.g. API 1.41) is spoken to in its own version, and finds
    /// out which engine it is. Without `DOCKER_HOST`, the first socket of
    /// [`local_sockets`] that exists and answers; when none answers, the
    /// first one's error.
    pub async fn connect() -> Result<Docker, DockerError> {
        if let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
            return Docker::connect_to(host).await;
        }
        // A socket this user may not open (Docker's, for someone outside
        // the docker group) is someone else's engine: its error is said
        // only when no other socket was there to try.
        let mut first_error = None;
        let mut denied = None;
        for sock in local_sockets() {
            match std::os::unix::net::UnixStream::connect(&sock) {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    denied.get_or_insert(sock);
                    continue;
                }
                Err(_) if !std::path::Path::new(&sock).exists() => continue,
                _ => {}
            }
            match Docker::connect_to(format!("unix://{sock}")).await {
                Ok(d) => return Ok(d),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (first_error, denied) {
            (Some(e), _) => Err(e),
            (None, Some(sock)) => Docker::connect_to(format!("unix://{sock}")).await,
            (None, None) => Docker::connect_to("unix:///var/run/docker.sock".into()).await,
        }
    }

    /// Connects to `host` (a `DOCKER_HOST` value).
    async fn connect_to(host: String) -> Result<Docker, DockerError> {
        let unreachable = |source| DockerError::Unreachable {
            host: host.clone(),
            source,
        };
        let api = bollard::Docker::connect_with_host(&host).map_err(unreachable)?;
        let socket_owner = host.strip_prefix("unix://").and_then(|path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).ok().map(|m| m.uid())
        });
        let request_timeout = api.timeout();
        // Version negotiation is the engine's first answer; `/info` only
        // for Docker (whose rootless mode says so there): Podman's is slow,
        // computing its storage's use, and its socket's owner tells.
        let handshake = async {
            let api = api
                .with_timeout(HANDSHAKE_TIMEOUT)
                .negotiate_version()
                .await?;
            let version = api.version().await?;
            let info = if engine::Engine::is_podman(&version) {
                Default::default()
            } else {
                api.info().await?
            };
            let engine = engine::Engine::identify(&version, &info, socket_owner);
            Ok((api, engine))
        };
        let (api, engine) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .unwrap_or(Err(BollardError::RequestTimeoutError))
            .map_err(unreachable)?;
        Ok(Docker {
            api: api.with_timeout(request_timeout),
            host,
            engine: std::sync::Arc::new(engine),
        })
    }

    /// The error of a failed `op` on `target` on this engine: classified
    /// ([`classify::classify_at`]); a broken connection names the engine.
    pub(crate) fn fail(
        &self,
        op: &'static str,
        target: impl Into<String>,
    ) -> impl FnOnce(BollardError) -> DockerError {
        let host = self.host.clone();
        let target = target.into();
        move |source| classify::classify_at(&host, op, target, source)
    }
}
