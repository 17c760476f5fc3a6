//! The error every command returns ([`Error`]), and the exit code each kind
//! maps to (README "Exit codes", constants in [`crate::exit`]).
//!
//! This module gathers the capabilities' own error types; it may depend on
//! them, they never depend on it. Only the command layer (`commands`, the
//! gate's and the benchmarks' entry points) returns [`Error`].

use miette::Diagnostic;

use crate::build::BuildError;
use crate::docker::DockerError;
use crate::eval::EvalError;
use crate::exit;
use crate::export::ExportError;
use crate::launch::LaunchError;
use crate::lock::LockError;
use crate::process::ProcessError;
use crate::share::ShareError;
use crate::slurm::SlurmError;
use crate::spec::{SpecError, UnknownEnv};

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
    Lock(Box<LockError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Docker(Box<DockerError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Launch(Box<LaunchError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Build(Box<BuildError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Process(Box<ProcessError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Eval(Box<EvalError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Export(Box<ExportError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Slurm(Box<SlurmError>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Share(Box<ShareError>),
    /// Command-line arguments that cannot work together or name nothing.
    #[error("{message}")]
    #[diagnostic(code(torchenv::usage))]
    Usage {
        message: String,
        #[help]
        help: Option<String>,
    },
    /// The regression gate found a difference beyond tolerance (or a
    /// missing baseline).
    #[error("{summary}")]
    #[diagnostic(
        code(torchenv::regression),
        help("accept intended changes with `cargo insta review` (fixtures/baselines/README.md)")
    )]
    Regression { summary: String },
    /// A command run in an environment (`exec`, `shell`) finished: its exit
    /// status becomes ours, and there is nothing to report.
    #[error("the command exited with status {0}")]
    #[diagnostic(code(torchenv::exit))]
    Exited(u8),
    /// Anything else a command reports, with a hint how to fix it.
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

failure_constructors!(Error);

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_) | Error::UnknownEnv(_) | Error::Usage { .. } => exit::BAD_INPUT,
            Error::Eval(e) => e.exit_code(),
            Error::Export(e) => e.exit_code(),
            Error::Share(e) => e.exit_code(),
            Error::Docker(e) if e.is_unreachable() => exit::DOCKER_UNREACHABLE,
            Error::Regression { .. } => exit::REGRESSION,
            Error::Exited(code) => *code,
            Error::Lock(e) => e.exit_code(),
            Error::Launch(e) => e.exit_code(),
            Error::Build(e) => e.exit_code(),
            Error::Docker(_)
            | Error::Process(_)
            | Error::Slurm(_)
            | Error::Failed { .. }
            | Error::Io { .. } => exit::FAILED,
        }
    }
}

boxed_from!(Error {
    Spec(SpecError),
    Lock(LockError),
    Docker(DockerError),
    Launch(LaunchError),
    Build(BuildError),
    Process(ProcessError),
    Eval(EvalError),
    Export(ExportError),
    Slurm(SlurmError),
    Share(ShareError),
});

pub type Result<T, E = Error> = std::result::Result<T, E>;
