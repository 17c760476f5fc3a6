//! torchenv's `cargo xtask`: lock, build, launch and gate reproducible
//! PyTorch-CUDA environments declared in `environments.yaml`.
//!
//! One module per capability; `main.rs` only dispatches.

/// `impl From<T> for E` that boxes `T` into the variant `E::V(Box<T>)`: the
/// error enums box their large variants (clippy's `result_large_err`) and
/// `?` still converts from the unboxed errors.
/// `boxed_from!(Error { Spec(SpecError), Docker(DockerError) });`
macro_rules! boxed_from {
    ($error:ident { $($variant:ident($ty:ty)),* $(,)? }) => {$(
        impl From<$ty> for $error {
            fn from(e: $ty) -> Self {
                $error::$variant(Box::new(e))
            }
        }
    )*};
}

/// `E::failed(message)` and `E::io(context)` (for `map_err`) on an error
/// enum with `Failed { message, help }` and `Io { context, source }` variants.
macro_rules! failure_constructors {
    ($error:ident) => {
        impl $error {
            /// A failure described by `message`, without a hint.
            pub fn failed(message: impl Into<String>) -> Self {
                $error::Failed {
                    message: message.into(),
                    help: None,
                }
            }

            /// `map_err($error::io("reading x"))`.
            pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
                let context = context.into();
                move |source| $error::Io { context, source }
            }
        }
    };
}

pub mod build;
pub mod cache;
pub mod clock;
pub mod commands;
pub mod compat;
pub mod disk;
pub mod docker;
pub mod error;
pub mod eval;
pub mod exit;
pub mod export;
pub mod gate;
pub mod launch;
pub mod lock;
pub mod process;
pub mod progress;
pub mod report_view;
pub mod share;
pub mod slurm;
pub mod spec;
