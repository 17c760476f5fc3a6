//! The error every task returns, and the exit code each kind maps to.
//!
//! Exit codes are part of the CLI contract (README "Exit codes"):
//! 0 success, 1 a step failed, 2 bad input (spec, lock, arguments),
//! 3 Docker engine unreachable, 4 host port taken, 5 volume source missing,
//! 6 GPUs requested but not available, 7 environment not ready in time,
//! 8 the gate found a regression.

use miette::Diagnostic;

use crate::docker::DockerError;
use crate::image::ImageError;
use crate::launch::LaunchError;
use crate::spec::{SpecError, UnknownEnv};

pub mod exit {
    pub const FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const DOCKER_UNREACHABLE: u8 = 3;
    pub const PORT_TAKEN: u8 = 4;
    pub const VOLUME_MISSING: u8 = 5;
    pub const GPU_UNAVAILABLE: u8 = 6;
    pub const NOT_READY: u8 = 7;
    pub const REGRESSION: u8 = 8;
}

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(Box<SpecError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownEnv(#[from] UnknownEnv),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(Box<DockerError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Launch(Box<LaunchError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Image(Box<ImageError>),
    /// The regression gate found a difference beyond tolerance (or a
    /// missing baseline).
    #[error("{summary}")]
    #[diagnostic(
        code(torchenv::regression),
        help("accept intended changes with `cargo insta review` (fixtures/baselines/README.md)")
    )]
    Regression { summary: String },
    /// Anything else a task reports, with a hint how to fix it.
    #[error("{message}")]
    #[diagnostic(code(torchenv::failed))]
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

impl Error {
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed {
            message: message.into(),
            help: None,
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_) | Error::UnknownEnv(_) => exit::BAD_INPUT,
            Error::Docker(e) if matches!(**e, DockerError::Unreachable { .. }) => {
                exit::DOCKER_UNREACHABLE
            }
            Error::Regression { .. } => exit::REGRESSION,
            Error::Launch(e) => e.exit_code(),
            Error::Image(e) => e.exit_code(),
            Error::Docker(_) | Error::Failed { .. } | Error::Io { .. } => exit::FAILED,
        }
    }
}

/// The boxed variants keep `Error` small (clippy's `result_large_err`);
/// `?` still converts from the unboxed errors.
macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(
    Spec(SpecError),
    Docker(DockerError),
    Launch(LaunchError),
    Image(ImageError)
);

pub type Result<T, E = Error> = std::result::Result<T, E>;
