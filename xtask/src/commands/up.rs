//! `cargo xtask up [ENV]`.

use super::{Ctx, Run};
use crate::error::Result;
use crate::launch;

/// Start an environment (building its image if needed) and wait until
/// Jupyter and SSH answer; prints how to connect. Idempotent.
#[derive(clap::Args)]
pub struct Up {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Replace taken host ports by free ones (and report them).
    #[arg(long)]
    auto_ports: bool,
    /// Seconds to wait for readiness before giving up (exit 7).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Start this image instead of the environment's own.
    #[arg(long, env = "TORCHENV_IMAGE")]
    image: Option<String>,
}

impl Run for Up {
    fn run(self, ctx: &Ctx) -> Result<()> {
        launch::up::Up {
            env: self.env,
            auto_ports: self.auto_ports,
            timeout: std::time::Duration::from_secs(self.timeout),
            image: self.image,
        }
        .run(ctx.spec_path())
    }
}
