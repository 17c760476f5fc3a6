//! `cargo xtask bench build [ENV]`: what a build costs, in one run.
//!
//! - every stage made from scratch (in the `build --verify` scratch
//!   namespace, so the real images stay; wheels and uv from the cache, the
//!   base from the engine): venv stage (uv install + archive + load),
//!   system stage, final layer;
//! - a no-op build (the image exists: one inspect; median of 5);
//! - a harness-only rebuild (a harness that differs by a trailing byte):
//!   its time and how many layers differ from the image's (one);
//! - image size ÷ (base + installed venv), and the engine's disk for the
//!   environment (its final image, stage images and other harness
//!   variants, shared layers counted once) ÷ the final image's size.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::time::{Duration, Instant};

use super::median;
use crate::build::image::{self, Plan};
use crate::build::{harness, verify};
use crate::commands::{Ctx, Run};
use crate::docker::Docker;
use crate::error::{Error, Result};
use crate::lock::{self, Lock};
use crate::progress::{self, Progress};
use crate::spec::{Env, Spec};

/// Build stage times, no-op and harness-only rebuild times, size ratios.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchBuild {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
}

impl Run for BenchBuild {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let env = spec.env(self.env.as_deref())?;
        let locked = lock::check_fresh(&spec, &lock, env)?.clone();
        let binary = harness::build(&locked)?.binary;
        ctx.block_on(async {
            let docker = ctx.docker().await?;
            let progress = Progress::new();
            let built =
                image::ensure_image_with(&docker, &spec, &lock, env, Some(&binary), &progress)
                    .await?;
            let plan = image::plan(&spec, &lock, env, Some(&binary))?;
            let stages = stage_times(&docker, &plan, &progress).await?;
            let noop = noop_time(&docker, &spec, &lock, env, &binary).await?;
            let (harness_only, changed) =
                harness_only(&docker, &spec, &lock, env, &binary, &built.tag).await?;
            let sizes = Sizes::measure(&docker, &plan).await?;
            println!("{}: {}", env.name, built.tag);
            for (stage, t) in &stages {
                println!(
                    "  stage from scratch: {stage:<28} {}",
                    progress::seconds(*t)
                );
            }
            println!(
                "  no-op build (median of 5):            {:.3} s",
                noop.as_secs_f64()
            );
            println!(
                "  harness-only rebuild:                 {:.1} s ({changed} layer(s) differ)",
                harness_only.as_secs_f64()
            );
            sizes.print();
            Ok(())
        })
    }
}

/// Each stage of `plan` made again in the scratch namespace, timed; the
/// scratch images removed afterwards.
async fn stage_times(
    docker: &Docker,
    plan: &Plan,
    progress: &Progress,
) -> Result<Vec<(&'static str, Duration)>> {
    let scratch = verify::scratch_plan(plan);
    let mut times = Vec::new();
    let result = async {
        let t = Instant::now();
        image::build_venv_stage(docker, &scratch, progress).await?;
        times.push(("venv (uv, archive, load)", t.elapsed()));
        let t = Instant::now();
        image::build_system_stage(docker, &scratch, progress).await?;
        times.push(("system (images/system.sh)", t.elapsed()));
        let t = Instant::now();
        image::build_final(docker, &scratch, progress).await?;
        times.push(("final (harness, config)", t.elapsed()));
        Ok::<_, Error>(())
    }
    .await;
    for tag in [&scratch.tag, &scratch.system_tag, &scratch.venv_tag] {
        if docker.image_inspect(tag).await?.is_some() {
            docker.image_remove(tag).await?;
        }
    }
    result?;
    Ok(times)
}

/// Median of five builds of an image that exists.
async fn noop_time(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
    binary: &std::path::Path,
) -> Result<Duration> {
    let quiet = Progress::plain();
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let again = image::ensure_image_with(docker, spec, lock, env, Some(binary), &quiet).await?;
        runs.push(t.elapsed());
        if again.built {
            return Err(Error::failed("the no-op build built something"));
        }
    }
    Ok(median(runs))
}

/// A build with a harness one byte longer: its time and the number of
/// layers that differ from `tag`'s. The new image is removed.
async fn harness_only(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
    binary: &std::path::Path,
    tag: &str,
) -> Result<(Duration, usize)> {
    let dir = tempfile::tempdir().map_err(Error::io("creating a scratch folder"))?;
    let copy = dir.path().join("harness");
    let mut bytes =
        std::fs::read(binary).map_err(Error::io(format!("reading {}", binary.display())))?;
    bytes.push(0);
    std::fs::write(&copy, bytes).map_err(Error::io(format!("writing {}", copy.display())))?;
    let quiet = Progress::plain();
    let t = Instant::now();
    let other = image::ensure_image_with(docker, spec, lock, env, Some(&copy), &quiet).await?;
    let took = t.elapsed();
    let layers = |i: Option<bollard::models::ImageInspect>| {
        i.and_then(|i| i.root_fs)
            .and_then(|r| r.layers)
            .unwrap_or_default()
    };
    let a = layers(docker.image_inspect(tag).await?);
    let b = layers(docker.image_inspect(&other.tag).await?);
    docker.image_remove(&other.tag).await?;
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len());
    Ok((took, differ))
}

/// Sizes of an environment's images in the engine.
struct Sizes {
    image: u64,
    base: u64,
    venv_layer: u64,
    /// The env's images (final ones and stages), shared layers counted once.
    engine: u64,
}

impl Sizes {
    async fn measure(docker: &Docker, plan: &Plan) -> Result<Sizes> {
        let size = |tag: String| async move {
            Ok::<u64, Error>(
                docker
                    .image_inspect(&tag)
                    .await?
                    .and_then(|i| i.size)
                    .unwrap_or(0)
                    .max(0) as u64,
            )
        };
        let image = size(plan.tag.clone()).await?;
        let base = size(plan.base_image.clone()).await?;
        let venv = size(plan.venv_tag.clone()).await?;
        let system = size(plan.system_tag.clone()).await?;
        // Other images of this env (other harnesses) share everything up to
        // the system stage when built from the same lock.
        let mut engine = image;
        for other in docker.images_managed().await? {
            let mine = other.labels.get(crate::docker::LABEL_ENV) == Some(&plan.env);
            if !mine || other.tags.contains(&plan.tag) {
                continue;
            }
            let shares = other.labels.get(image::LABEL_VENV) == Some(&plan.venv_tag);
            engine += if shares {
                other.size.saturating_sub(system)
            } else {
                other.size
            };
        }
        Ok(Sizes {
            image,
            base,
            venv_layer: venv.saturating_sub(base),
            engine,
        })
    }

    fn print(&self) {
        let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        println!(
            "  image {} = base {} + venv {} + system and harness {}: image ÷ (base + venv) = {:.3}",
            progress::bytes(self.image),
            progress::bytes(self.base),
            progress::bytes(self.venv_layer),
            progress::bytes(self.image.saturating_sub(self.base + self.venv_layer)),
            ratio(self.image, self.base + self.venv_layer)
        );
        println!(
            "  engine disk for this env {} ÷ image {} = {:.3}",
            progress::bytes(self.engine),
            progress::bytes(self.image),
            ratio(self.engine, self.image)
        );
    }
}
