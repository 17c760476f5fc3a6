//! `cargo xtask down [ENV|--all] [--volumes]`.

use super::{Ctx, Run};
use crate::error::Result;
use crate::launch;

/// Remove an environment's container (volumes and workspace are kept).
#[derive(clap::Args)]
pub struct Down {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Every torchenv container of this user.
    #[arg(long, conflicts_with = "env")]
    all: bool,
    /// Also remove the environment's torchenv-created named volumes.
    #[arg(long)]
    volumes: bool,
}

impl Run for Down {
    fn run(self, ctx: &Ctx) -> Result<()> {
        launch::down::Down {
            env: self.env,
            all: self.all,
            volumes: self.volumes,
        }
        .run(ctx.spec_path())
    }
}
