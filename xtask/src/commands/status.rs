//! `cargo xtask status [--json]`.

use super::{Ctx, Run};
use crate::error::Result;
use crate::launch;

/// This user's environments: state, image, ports, GPUs, uptime.
#[derive(clap::Args)]
pub struct Status {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Run for Status {
    fn run(self, _ctx: &Ctx) -> Result<()> {
        launch::status::run(self.json)
    }
}
