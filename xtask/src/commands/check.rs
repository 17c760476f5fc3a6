//! `cargo xtask check [ENV] [--device cpu|cuda] [--expect-gpus N]`.

use std::path::PathBuf;

use super::{Ctx, Run};
use crate::error::Result;
use crate::gate::{self, Device, Sources};

/// Run the harness in an environment's container (`harness cuda`, then
/// `harness eval` per model) and compare with fixtures/baselines.
/// Exit 0 pass, 8 regression or missing baseline (a `.snap.new` is
/// written; accept with `cargo insta review`).
#[derive(clap::Args)]
pub struct Check {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Device for `harness eval` (default: cuda with --expect-gpus > 0, else cpu).
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// Fail unless this many GPUs pass `harness cuda`.
    #[arg(long, default_value_t = 0)]
    expect_gpus: u32,
    #[command(flatten)]
    sources: GateSources,
}

impl Check {
    /// The default environment on `device`, with `sources`.
    pub fn default_env(device: Device, sources: Sources) -> Check {
        Check {
            env: None,
            device: Some(device),
            expect_gpus: 0,
            sources: GateSources {
                host_harness: sources.host_harness,
                image: sources.image,
                weights: sources.weights,
                baselines: sources.baselines,
            },
        }
    }
}

impl Run for Check {
    fn run(self, ctx: &Ctx) -> Result<()> {
        gate::Check {
            env: self.env,
            device: self.device,
            expect_gpus: self.expect_gpus,
            sources: self.sources.into(),
        }
        .run(ctx.spec_path())
    }
}

/// Where `check`/`ci` get the harness, image, weights and baselines.
#[derive(clap::Args)]
pub struct GateSources {
    /// Run this harness binary on the host instead of in the container.
    #[arg(long, env = "TORCHENV_HOST_HARNESS")]
    host_harness: Option<PathBuf>,
    /// Check this image instead of the environment's own (built if needed).
    #[arg(long, env = "TORCHENV_IMAGE")]
    image: Option<String>,
    /// Weights of a model, MODEL=PATH (default: the locked weights).
    #[arg(long, value_parser = gate::parse_weights)]
    weights: Vec<(String, PathBuf)>,
    /// Baselines folder (default: fixtures/baselines beside the spec).
    #[arg(long)]
    baselines: Option<PathBuf>,
}

impl From<GateSources> for Sources {
    fn from(s: GateSources) -> Self {
        Sources {
            host_harness: s.host_harness,
            image: s.image,
            weights: s.weights,
            baselines: s.baselines,
        }
    }
}
