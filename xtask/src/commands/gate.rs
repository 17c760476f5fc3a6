//! What `check` and `ci` share on the command line: where the harness,
//! image, weights and baselines come from ([`Sources`]), the gate's
//! [`ci::Setup`] on the product path (the environment's image, built when
//! missing, from the invocation's spec and lock; the locked weights), what
//! is printed, and the exit code.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Ctx;
use crate::build::image::{pull_env_image, HARNESS_ABSENT, LABEL_HARNESS};
use crate::build::{
    ensure_env_image, find_env_image, harness, registry, weights, BuildError, ImageRef,
};
use crate::error::{Error, Result};
use crate::gate::baseline::Store;
use crate::gate::check::{self, CheckOptions, Device, EnvResult, Outcome, Runner};
use crate::gate::ci;
use crate::progress::Progress;
use crate::spec::{Env, Spec};

/// Where `check`/`ci` get the harness, image, weights and baselines.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Sources {
    /// Run this harness binary on the host instead of in the container
    /// (tests and debugging; the product path is the container).
    #[arg(long, env = "TORCHENV_HOST_HARNESS")]
    pub host_harness: Option<PathBuf>,
    /// Check this image instead of the environment's own (built if needed).
    #[arg(long, env = "TORCHENV_IMAGE")]
    pub image: Option<String>,
    /// Weights of a model, MODEL=PATH (default: the locked weights).
    #[arg(long, value_parser = parse_weights)]
    pub weights: Vec<(String, PathBuf)>,
    /// Baselines folder (default: fixtures/baselines beside the spec).
    #[arg(long)]
    pub baselines: Option<PathBuf>,
    /// Use the environment's image only if this engine has it (built here
    /// or brought from elsewhere) or the team's registry (TORCHENV_REGISTRY, or
    /// the spec's `registry:`) does,
    /// never build it: what a Slurm task runs on its node. Without one the
    /// environment fails, naming the node.
    #[arg(long)]
    pub no_build: bool,
}

/// Parses `MODEL=PATH` (for `--weights`).
fn parse_weights(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (model, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected MODEL=PATH, got `{s}`"))?;
    Ok((model.to_string(), PathBuf::from(path)))
}

/// The gate's [`ci::Setup`] for one invocation.
pub struct Setup<'a> {
    ctx: &'a Ctx,
    spec: &'a Spec,
    sources: &'a Sources,
    device: Device,
    expect_gpus: u32,
    /// Keep each environment's report folders under `<reports>/<env>/`.
    reports: Option<PathBuf>,
    /// The first typed error of a preparation (e.g. GPUs unavailable), so
    /// the command exits with its code rather than a generic failure.
    typed: Option<Error>,
}

impl<'a> Setup<'a> {
    pub fn new(
        ctx: &'a Ctx,
        spec: &'a Spec,
        sources: &'a Sources,
        device: Option<Device>,
        expect_gpus: u32,
    ) -> Self {
        Setup {
            ctx,
            spec,
            sources,
            device: device.unwrap_or(Device::default_for(expect_gpus)),
            expect_gpus,
            reports: None,
            typed: None,
        }
    }

    /// Keeps each environment's report folders under `<dir>/<env>/`
    /// (absolute: the folder is bind-mounted into the container).
    pub fn keep_reports(mut self, dir: &std::path::Path) -> Self {
        self.reports = Some(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
        self
    }

    /// The container runner of `env`: GPUs and limits resolved first (they
    /// can refuse the check before a long image build), then the image.
    async fn container(&mut self, env: &Env) -> Result<Runner> {
        let docker = self.ctx.docker().await?;
        let resources =
            check::container_resources(&docker, env, self.device, self.expect_gpus).await?;
        let image = match &self.sources.image {
            Some(i) => i.clone(),
            None if self.sources.no_build => {
                let lock = self.ctx.lock()?;
                let mut found = find_env_image(&docker, self.spec, &lock, env).await?;
                // Not on this node: the team's registry, if one is set.
                if let (None, Some(reg)) = (&found, registry::configured(self.spec)?) {
                    let progress = Progress::new();
                    found = pull_env_image(&docker, self.spec, &lock, env, &reg, &progress).await?;
                }
                let found = found.ok_or_else(|| BuildError::ImageAbsent {
                    env: env.name.clone(),
                    engine: docker.host.clone(),
                    host: host_name(),
                })?;
                with_harness(env, found)?.tag
            }
            None => {
                let lock = self.ctx.lock()?;
                let progress = Progress::new();
                let image =
                    ensure_env_image(&docker, self.spec, &lock, env, None, &progress).await?;
                with_harness(env, image)?.tag
            }
        };
        Ok(Runner::Container {
            docker,
            image,
            resources,
        })
    }

    /// The locked weights file of `model`, fetched into the cache on first use.
    fn weights_path(&self, model: &str) -> Result<PathBuf> {
        Ok(weights::weights_path(&self.ctx.lock()?, model)?)
    }

    /// Prints what each environment's checks found.
    pub fn print(&self, result: &ci::CiResult) {
        print_all(result);
    }

    /// The run as the command's exit status (see [`verdict`]).
    pub fn finish(self, result: &ci::CiResult) -> Result<()> {
        verdict(result, self.typed)
    }
}

/// `image`, when it has a harness to check with (an image built with
/// `ensure_image` and no harness has none).
fn with_harness(env: &Env, image: ImageRef) -> Result<ImageRef> {
    if image.labels.get(LABEL_HARNESS).map(String::as_str) != Some(HARNESS_ABSENT) {
        return Ok(image);
    }
    Err(BuildError::Failed {
        message: format!(
            "{}: the image {} was built without the harness, so there is nothing to check with",
            env.name, image.tag
        ),
        help: Some(format!("build it again: cargo xtask build {}", env.name)),
    }
    .into())
}

impl ci::Setup for Setup<'_> {
    async fn prepare(&mut self, env: &Env) -> std::result::Result<(Runner, CheckOptions), String> {
        let store = match &self.sources.baselines {
            Some(dir) => Store::new(dir),
            None => Store::for_spec(self.ctx.spec_path()),
        };
        let mut weights: BTreeMap<String, PathBuf> = self.sources.weights.iter().cloned().collect();
        let runner = if let Some(h) = &self.sources.host_harness {
            // The host venv torch of this environment, for a binary that no
            // longer sits where its relative rpath finds it.
            let lock = self.ctx.lock().map_err(|e| e.to_string())?;
            let env_vars = lock
                .environments
                .get(&env.name)
                .map(|l| {
                    let venv = crate::cache::torch_venv(&l.torch);
                    let lib = harness::venv_torch_lib(&venv, &l.python);
                    vec![("LD_LIBRARY_PATH".to_string(), lib.display().to_string())]
                })
                .unwrap_or_default();
            Runner::Host {
                harness: h.clone(),
                env: env_vars,
            }
        } else {
            match self.container(env).await {
                Ok(r) => r,
                Err(e) => {
                    let mut shown = String::new();
                    let _ = miette::GraphicalReportHandler::new_themed(
                        miette::GraphicalTheme::unicode_nocolor(),
                    )
                    .render_report(&mut shown, &e);
                    // First line: the message itself (the report starts
                    // with the diagnostic code).
                    let shown = format!("{e}\n{shown}");
                    if matches!(e, Error::Launch(_)) && self.typed.is_none() {
                        self.typed = Some(e);
                    }
                    return Err(shown);
                }
            }
        };
        for model in &env.harness.models {
            if !weights.contains_key(model) {
                let path = self
                    .weights_path(model)
                    .map_err(|e| format!("{:?}", miette::Report::new(e)))?;
                weights.insert(model.clone(), path);
            }
        }
        Ok((
            runner,
            CheckOptions {
                device: self.device,
                expect_gpus: self.expect_gpus,
                weights,
                store,
                reports: self.reports.as_ref().map(|d| d.join(&env.name)),
            },
        ))
    }
}

/// Prints what each environment's checks found.
pub fn print_all(result: &ci::CiResult) {
    for e in &result.envs {
        print(e);
    }
}

/// This machine's host name, for messages (`localhost` when unreadable).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The exit status of a finished gate: 8 when a check found a regression
/// (or a missing baseline), else the code of a typed preparation error
/// (`typed`: e.g. 6 for GPUs the engine cannot serve), else 1 when a check
/// could not run.
pub fn verdict(result: &ci::CiResult, typed: Option<Error>) -> Result<()> {
    let cases = result
        .envs
        .iter()
        .flat_map(|e| e.cases.iter())
        .chain(result.pairs.iter().map(|p| &p.case));
    let (mut failed, mut errors) = (Vec::new(), Vec::new());
    for c in cases {
        match c.outcome {
            Outcome::Pass => {}
            Outcome::Fail => failed.push(c.name.clone()),
            Outcome::Error => errors.push(c.name.clone()),
        }
    }
    if !failed.is_empty() {
        Err(Error::Regression {
            summary: format!("the gate failed: {}", failed.join(", ")),
        })
    } else if let Some(e) = typed {
        Err(e)
    } else if !errors.is_empty() {
        Err(Error::Failed {
            message: format!("the gate could not run: {}", errors.join(", ")),
            help: Some("see the messages above".into()),
        })
    } else {
        Ok(())
    }
}

/// Prints what a check found: each case, its diff, the notices.
fn print(result: &EnvResult) {
    for c in &result.cases {
        let status = match c.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Error => "ERROR",
        };
        println!("{} {}: {status} — {}", result.env, c.name, c.message);
        if c.name.starts_with("eval ") || !c.passed() {
            for line in c.detail.lines().filter(|l| !l.trim().is_empty()) {
                println!("    {line}");
            }
        }
    }
    for n in &result.notices {
        println!("{} notice: {n}", result.env);
    }
}
