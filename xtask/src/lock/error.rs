//! [`LockError`]: the lock file cannot be read, or does not belong to the
//! spec as it is now.
//!
//! May use: `exit`, `spec`.

use crate::exit;
use crate::spec::SpecError;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    /// The lock has no entry for an environment, or one made from another
    /// version of its spec.
    #[error("environments.lock is out of date for `{env}`: {why}")]
    #[diagnostic(
        code(torchenv::lock::out_of_date),
        help("run `cargo xtask lock {env}` and commit environments.lock")
    )]
    OutOfDate { env: String, why: String },
    /// The spec disagrees with what the lock resolved (e.g. `cuda:`).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(Box<SpecError>),
    #[error("{message}")]
    #[diagnostic(code(torchenv::lock::unreadable))]
    Unreadable {
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

impl LockError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| LockError::Io { context, source }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            LockError::Spec(_) => exit::BAD_INPUT,
            _ => exit::FAILED,
        }
    }
}

boxed_from!(LockError { Spec(SpecError) });
