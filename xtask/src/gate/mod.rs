//! The regression gate: `cargo xtask check` and `cargo xtask ci`.
//!
//! The harness evaluates each model of an environment on the fixture images
//! ([`check`]); [`compare`] judges the run against the baselines in
//! `fixtures/baselines` ([`baseline`]) within the environment's tolerances;
//! [`ci`] does that for several environments, compares them with each
//! other and writes `summary.md` ([`summary`]) and `junit.xml` ([`junit`]).
//!
//! The harness runs in the environment's container as `up` would create it,
//! in one-shot mode (`launch::plan`); its GPUs are `gpus:` resolved against
//! the daemon as in `up`. A typed failure of that resolution (GPUs the
//! engine cannot serve, a CUDA check in an environment without GPUs) keeps
//! its exit code.

pub mod baseline;
pub mod check;
pub mod ci;
pub mod compare;
pub mod junit;
pub mod report;
pub mod summary;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use check::{CheckOptions, Device, EnvResult, Outcome, Runner};

use crate::docker::Docker;
use crate::error::{Error, Result};
use crate::spec::{Env, Spec};
use baseline::Store;

/// Where the harness comes from, shared by `check` and `ci`.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Run this harness binary on the host instead of in the container
    /// (tests and debugging; the product path is the container).
    pub host_harness: Option<PathBuf>,
    /// Check this image instead of building/finding the environment's own.
    pub image: Option<String>,
    /// `MODEL=PATH` overrides of the locked weights.
    pub weights: Vec<(String, PathBuf)>,
    /// Baselines folder (default: `fixtures/baselines` beside the spec).
    pub baselines: Option<PathBuf>,
}

/// Parses `MODEL=PATH` (for `--weights`).
pub fn parse_weights(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (model, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected MODEL=PATH, got `{s}`"))?;
    Ok((model.to_string(), PathBuf::from(path)))
}

/// The [`ci::Setup`] of the command line.
struct CliSetup<'a> {
    spec: &'a Spec,
    sources: &'a Sources,
    device: Device,
    expect_gpus: u32,
    docker: Option<Docker>,
    /// The first typed error of a preparation (e.g. GPUs unavailable), so
    /// the command exits with its code rather than a generic failure.
    typed: Option<Error>,
}

impl CliSetup<'_> {
    /// The container runner of `env`: GPUs and limits resolved first (they
    /// can refuse the check before a long image build), then the image.
    async fn container(&mut self, env: &Env) -> Result<Runner> {
        if self.docker.is_none() {
            self.docker = Some(Docker::connect().await?);
        }
        let docker = self.docker.clone().expect("connected above");
        let resources =
            check::container_resources(&docker, env, self.device, self.expect_gpus).await?;
        let image = match &self.sources.image {
            Some(i) => i.clone(),
            None => wire::ensure_image(&docker, self.spec, env).await?,
        };
        Ok(Runner::Container {
            docker,
            image,
            resources,
        })
    }
}

impl ci::Setup for CliSetup<'_> {
    async fn prepare(&mut self, env: &Env) -> std::result::Result<(Runner, CheckOptions), String> {
        let store = match &self.sources.baselines {
            Some(dir) => Store::new(dir),
            None => Store::for_spec(&self.spec.path),
        };
        let mut weights: BTreeMap<String, PathBuf> = self.sources.weights.iter().cloned().collect();
        let runner = if let Some(h) = &self.sources.host_harness {
            Runner::Host {
                harness: h.clone(),
                env: Vec::new(),
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
                let path = wire::weights_path(self.spec, model)
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
            },
        ))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the async runtime"))
}

/// The exit status of a finished gate: 8 when a check found a regression
/// (or a missing baseline), else the code of a typed preparation error
/// (`typed`: e.g. 6 for GPUs the engine cannot serve), else 1 when a check
/// could not run.
fn verdict(result: &ci::CiResult, typed: Option<Error>) -> Result<()> {
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

/// `cargo xtask check [ENV] [--device cpu|cuda] [--expect-gpus N]`.
pub struct Check {
    pub env: Option<String>,
    pub device: Option<Device>,
    pub expect_gpus: u32,
    pub sources: Sources,
}

impl Check {
    pub fn run(self, spec_path: &Path) -> Result<()> {
        let spec = Spec::load(spec_path)?;
        let env = spec.env(self.env.as_deref())?;
        let mut setup = CliSetup {
            spec: &spec,
            sources: &self.sources,
            device: self.device.unwrap_or(Device::default_for(self.expect_gpus)),
            expect_gpus: self.expect_gpus,
            docker: None,
            typed: None,
        };
        let result = runtime()?.block_on(ci::run(&[env], &mut setup));
        for e in &result.envs {
            print(e);
        }
        verdict(&result, setup.typed)
    }
}

/// `cargo xtask ci [--envs a,b] [--expect-gpus N] [--out DIR]`.
pub struct Ci {
    /// Default: every environment of the spec.
    pub envs: Vec<String>,
    pub device: Option<Device>,
    pub expect_gpus: u32,
    pub out: PathBuf,
    pub sources: Sources,
}

impl Ci {
    pub fn run(self, spec_path: &Path) -> Result<()> {
        let spec = Spec::load(spec_path)?;
        let envs: Vec<&Env> = if self.envs.is_empty() {
            spec.environments.values().collect()
        } else {
            self.envs
                .iter()
                .map(|n| spec.env(Some(n)))
                .collect::<std::result::Result<_, _>>()?
        };
        let mut setup = CliSetup {
            spec: &spec,
            sources: &self.sources,
            device: self.device.unwrap_or(Device::default_for(self.expect_gpus)),
            expect_gpus: self.expect_gpus,
            docker: None,
            typed: None,
        };
        let result = runtime()?.block_on(ci::run(&envs, &mut setup));
        for e in &result.envs {
            print(e);
        }
        for p in &result.pairs {
            println!("{}: {}", p.case.name, p.case.message);
        }
        result
            .write(&self.out)
            .map_err(Error::io(format!("writing {}", self.out.display())))?;
        println!(
            "wrote {} and {}",
            self.out.join("summary.md").display(),
            self.out.join("junit.xml").display()
        );
        verdict(&result, setup.typed)
    }
}
