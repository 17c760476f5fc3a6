//! `cargo xtask status [--json]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::error::Result;
use crate::launch::status::{collect, human};

/// This user's environments: state, image, ports, GPUs, uptime.
#[derive(clap::Args)]
pub struct Status {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Run for Status {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let list = ctx.block_on(async { Ok(collect(&ctx.docker().await?).await?) })?;
        let json = self.json;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&list).expect("status serializes")
            );
        } else if list.is_empty() {
            println!("no torchenv environments running (start one with `cargo xtask up`)");
        } else {
            println!(
                "{:<28} {:<10} {:<12} {:<10} {:<40} IMAGE",
                "ENV", "STATE", "UPTIME", "GPUS", "PORTS"
            );
            for s in list {
                println!(
                    "{:<28} {:<10} {:<12} {:<10} {:<40} {}",
                    s.env,
                    s.state,
                    s.uptime_s.map(human).unwrap_or_else(|| "-".into()),
                    s.gpus,
                    s.ports.join(", "),
                    s.image
                );
            }
        }
        Ok(())
    }
}
