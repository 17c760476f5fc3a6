//! `cargo xtask show [ENV] [--json]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use super::{Ctx, Run};
use crate::error::Result;

/// Print one environment with every default resolved.
#[derive(clap::Args)]
pub struct Show {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Print JSON instead of YAML.
    #[arg(long)]
    json: bool,
}

impl Run for Show {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let env = spec.env(self.env.as_deref())?;
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(env).expect("spec serializes")
            );
        } else {
            print!("{}", serde_yaml::to_string(env).expect("spec serializes"));
        }
        Ok(())
    }
}
