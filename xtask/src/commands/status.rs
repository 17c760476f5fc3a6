//! `cargo xtask status [--json] [--gpu] [--watch SECONDS]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::io::IsTerminal;
use std::time::Duration;

use gpumon::{GpuMonitor, Snapshot};
use serde::Serialize;

use super::{Ctx, Run};
use crate::error::Result;
use crate::launch::status::{collect, gpu_table, human, EnvStatus};

/// This user's environments: state, image, ports, GPUs, uptime (with
/// --gpu, the host's GPUs live from NVML).
#[derive(clap::Args)]
pub struct Status {
    /// Print JSON (with --gpu: `{"environments": [...], "gpu": {...}}`).
    #[arg(long)]
    json: bool,
    /// Also show the host's GPUs as NVML reads them now: memory used/total,
    /// utilization, temperature, power, SM clock, and the running
    /// environments that have each. Without NVML (no NVIDIA driver), one
    /// line says why.
    #[arg(long)]
    gpu: bool,
    /// Refresh every SECONDS until interrupted (ctrl-c).
    #[arg(
        long,
        value_name = "SECONDS",
        conflicts_with = "json",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    watch: Option<u64>,
}

impl Run for Status {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let Some(every) = self.watch else {
            return self.show(ctx);
        };
        let terminal = std::io::stdout().is_terminal();
        loop {
            if terminal {
                // Clear the screen and go home, as `watch` does.
                print!("\x1b[2J\x1b[H");
            }
            self.show(ctx)?;
            println!();
            std::thread::sleep(Duration::from_secs(every));
        }
    }
}

impl Status {
    fn show(&self, ctx: &Ctx) -> Result<()> {
        let list = ctx.block_on(async { Ok(collect(&ctx.docker().await?).await?) })?;
        let gpu = self.gpu.then(gpumon::snapshot);
        if self.json {
            let json = match gpu {
                None => serde_json::to_string_pretty(&list),
                Some(gpu) => serde_json::to_string_pretty(&WithGpu {
                    environments: &list,
                    gpu: gpu.map_or_else(
                        |e| GpuMonitor::unavailable(e.to_string()),
                        Snapshot::into_monitor,
                    ),
                }),
            };
            println!("{}", json.expect("status serializes"));
            return Ok(());
        }
        print_environments(&list);
        match gpu {
            None => {}
            Some(Ok(snapshot)) => {
                println!();
                for line in gpu_table(&snapshot, &list) {
                    println!("{line}");
                }
            }
            Some(Err(reason)) => println!("\nhost GPUs: {reason}"),
        }
        Ok(())
    }
}

/// `status --json --gpu`.
#[derive(Serialize)]
struct WithGpu<'a> {
    environments: &'a [EnvStatus],
    /// One sample per GPU, or why there is none.
    gpu: GpuMonitor,
}

fn print_environments(list: &[EnvStatus]) {
    if list.is_empty() {
        println!("no torchenv environments running (start one with `cargo xtask up`)");
        return;
    }
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
