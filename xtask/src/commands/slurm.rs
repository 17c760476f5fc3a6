//! `cargo xtask slurm start|stop|status [--dir DIR]`: a single-node Slurm
//! on this machine (`slurm::local`), to try `ci --slurm` and to test it.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::PathBuf;

use super::{Ctx, Run};
use crate::build::host_tools;
use crate::error::Result;
use crate::launch::state_root;
use crate::progress::Progress;
use crate::slurm::local::LocalCluster;

/// A single-node Slurm cluster on this machine (munge, slurmctld and
/// slurmd as root, from a generated slurm.conf in one folder; Debian's
/// `slurm-wlm` and `munge`, installed on first use as root). Slurm's commands find it through
/// `SLURM_CONF`, which `start` prints.
#[derive(clap::Args)]
pub struct Slurm {
    #[command(subcommand)]
    action: Action,
    /// The cluster's folder (default: `<state>/torchenv/.slurm`).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Start it (nothing when it runs) and wait until its node is idle.
    Start,
    /// Stop its daemons and remove its folder.
    Stop,
    /// Say whether it runs, and its SLURM_CONF.
    Status,
}

impl Run for Slurm {
    fn run(self, _ctx: &Ctx) -> Result<()> {
        let dir = self.dir.unwrap_or_else(|| state_root().join(".slurm"));
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let cluster = LocalCluster::new(dir);
        match self.action {
            Action::Start => {
                host_tools::ensure(
                    &[host_tools::SLURM, host_tools::MUNGE],
                    "a local Slurm",
                    &Progress::new(),
                )?;
                cluster.start()?;
                println!(
                    "Slurm is up (one node: this machine, partition `torchenv`). For its commands:"
                );
                println!("export SLURM_CONF={}", cluster.conf().display());
            }
            Action::Stop => {
                cluster.stop()?;
                println!("Slurm stopped; {} removed", cluster.dir.display());
            }
            Action::Status => {
                if cluster.is_up() {
                    println!("up: export SLURM_CONF={}", cluster.conf().display());
                } else {
                    println!("not running ({})", cluster.dir.display());
                }
            }
        }
        Ok(())
    }
}
