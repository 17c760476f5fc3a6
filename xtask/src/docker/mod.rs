//! The one Docker client: every engine call torchenv makes goes through
//! [`Docker`], and every failure is a [`DockerError`] naming the operation
//! and the image, container or volume it concerned.
//!
//! Capabilities add their calls in their own files (`images.rs`,
//! `containers.rs`, …) as further `impl Docker` blocks.

use bollard::errors::Error as BollardError;

pub mod containers;
pub mod images;
pub mod run;

/// Label on everything torchenv creates; the tool never touches an object
/// without it.
pub const LABEL_MANAGED_BY: &str = "dev.torchenv.managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "torchenv";
/// Label holding the environment name.
pub const LABEL_ENV: &str = "dev.torchenv.env";

/// A connection to the Docker engine named by `DOCKER_HOST` (unix socket,
/// tcp with TLS when `DOCKER_TLS_VERIFY` is set, or ssh), else the local socket.
#[derive(Clone)]
pub struct Docker {
    pub(crate) api: bollard::Docker,
    /// Where we connected, for messages.
    pub host: String,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DockerError {
    #[error("cannot reach the Docker engine at {host}: {source}")]
    #[diagnostic(
        code(torchenv::docker::unreachable),
        help("is the daemon running and DOCKER_HOST right? `cargo xtask doctor` checks the setup")
    )]
    Unreachable {
        host: String,
        #[source]
        source: BollardError,
    },
    /// Any engine call that failed: `op` says what we were doing, `target`
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
    pub fn api(op: &'static str, target: impl Into<String>) -> impl FnOnce(BollardError) -> Self {
        let target = target.into();
        move |source| DockerError::Api { op, target, source }
    }

    /// True when the engine answered 404 (no such image/container/volume).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            DockerError::Api {
                source: BollardError::DockerResponseServerError {
                    status_code: 404,
                    ..
                },
                ..
            }
        )
    }
}

impl Docker {
    /// Connects and negotiates the API version with the engine, so an older
    /// daemon (e.g. API 1.41) is spoken to in its own version.
    pub async fn connect() -> Result<Docker, DockerError> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |source| DockerError::Unreachable {
            host: host.clone(),
            source,
        };
        let api = bollard::Docker::connect_with_defaults().map_err(unreachable)?;
        let api = api.negotiate_version().await.map_err(unreachable)?;
        api.ping().await.map_err(unreachable)?;
        Ok(Docker { api, host })
    }

    /// The engine's version string and API version.
    pub async fn version(&self) -> Result<(String, String), DockerError> {
        let v = self
            .api
            .version()
            .await
            .map_err(DockerError::api("version", &self.host))?;
        Ok((
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default(),
        ))
    }
}
