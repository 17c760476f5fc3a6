//! `cargo xtask ci`: build and check every selected environment, compare
//! the environments with each other, and write `summary.md` and
//! `junit.xml`.
//!
//! May use: `gate::check`, `gate::compare`, `gate::junit`, `gate::summary`, `report_view`, `spec`.

use std::path::Path;
use std::time::Instant;

use super::check::{self, CaseResult, CheckOptions, EnvResult, Outcome, Runner};
use super::compare;
use super::junit::{self, Suite};
use super::summary;
use crate::report_view::{self, EnvRow};
use crate::spec::Env;

pub use super::summary::PairResult;

/// Makes an environment ready to check (builds or finds its image, finds
/// the weights); an error becomes the env's failed `build` check.
pub trait Setup {
    #[allow(async_fn_in_trait)]
    async fn prepare(&mut self, env: &Env) -> Result<(Runner, CheckOptions), String>;
}

/// Everything a `ci` run found.
#[derive(Debug, Clone)]
pub struct CiResult {
    pub envs: Vec<EnvResult>,
    pub pairs: Vec<PairResult>,
}

impl CiResult {
    pub fn passed(&self) -> bool {
        self.envs.iter().all(EnvResult::passed) && self.pairs.iter().all(|p| p.case.passed())
    }

    /// One testsuite per environment, plus `cross-env` when there are pairs.
    pub fn suites(&self) -> Vec<Suite> {
        let mut suites: Vec<Suite> = self
            .envs
            .iter()
            .map(|e| {
                let mut properties = Vec::new();
                if let Some(v) = &e.versions {
                    properties.push(("torch".into(), v.torch.clone()));
                    properties.push(("cuda".into(), v.cuda.clone().unwrap_or_default()));
                    properties.push(("cudnn".into(), v.cudnn.clone().unwrap_or_default()));
                    properties.push(("device".into(), v.device_name.clone()));
                }
                if let Some(p) = &e.placement {
                    properties.push((format!("{}.job", p.scheduler), p.job.clone()));
                    properties.push((format!("{}.node", p.scheduler), p.node.clone()));
                    properties.push((format!("{}.state", p.scheduler), p.state.clone()));
                }
                for (i, n) in e.notices.iter().enumerate() {
                    properties.push((format!("notice.{i}"), n.clone()));
                }
                Suite {
                    name: e.env.clone(),
                    properties,
                    cases: e.cases.clone(),
                }
            })
            .collect();
        if !self.pairs.is_empty() {
            suites.push(Suite {
                name: "cross-env".into(),
                properties: Vec::new(),
                cases: self.pairs.iter().map(|p| p.case.clone()).collect(),
            });
        }
        suites
    }

    pub fn junit(&self) -> String {
        junit::render(&self.suites())
    }

    pub fn summary(&self) -> String {
        summary::render(&self.envs, &self.pairs)
    }

    /// Writes `summary.md` and `junit.xml` into `dir`, each model's report
    /// folder (plots, page; `<env>/<model>/`, which the summary links) and
    /// the chart of top-1 and images/s per environment.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        self.write_reports(dir)?;
        std::fs::write(dir.join("summary.md"), self.summary())?;
        std::fs::write(dir.join("junit.xml"), self.junit())?;
        Ok(())
    }

    fn write_reports(&self, dir: &Path) -> std::io::Result<()> {
        let mut rows = Vec::new();
        for env in &self.envs {
            for m in &env.models {
                let Some(r) = &m.report else { continue };
                let folder = dir.join(summary::report_folder(&env.env, &m.model));
                std::fs::create_dir_all(&folder)?;
                let json = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
                report_view::files::write_atomic(&folder.join("report.json"), &json)
                    .map_err(std::io::Error::other)?;
                report_view::write_folder(r, &folder).map_err(std::io::Error::other)?;
                let cuda = r
                    .versions
                    .cuda_runtime
                    .as_deref()
                    .or(r.versions.cuda_build.as_deref());
                rows.push(EnvRow {
                    name: format!("{} {}", env.env, m.model),
                    versions: format!(
                        "torch {}, CUDA {}, {}",
                        r.versions.torch,
                        cuda.unwrap_or("-"),
                        r.versions.device_name
                    ),
                    top1: r.metrics.top1,
                    images_per_second: r.performance.images_per_second,
                });
            }
        }
        if !rows.is_empty() {
            report_view::env_comparison(&rows, &dir.join(summary::ENV_CHART))
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

/// Checks each environment in turn (never stopping early), then compares
/// them pairwise.
pub async fn run(envs: &[&Env], setup: &mut impl Setup) -> CiResult {
    let mut results = Vec::new();
    for env in envs {
        eprintln!("gate: == {} ==", env.name);
        let started = Instant::now();
        let result = match setup.prepare(env).await {
            Ok((runner, opts)) => check::check_env(&runner, env, &opts).await,
            Err(e) => {
                EnvResult::not_checked(&env.name, "build", &e, started.elapsed().as_secs_f64())
            }
        };
        log_cases(&result);
        results.push(result);
    }
    CiResult::of(envs, results)
}

impl CiResult {
    /// The environments' results (checked here or elsewhere, e.g. by a
    /// scheduler's tasks) with their pairwise comparisons.
    pub fn of(envs: &[&Env], results: Vec<EnvResult>) -> CiResult {
        let pairs = cross_env(envs, &results);
        CiResult {
            envs: results,
            pairs,
        }
    }
}

/// One line per case of `result`, on standard error.
pub fn log_cases(result: &EnvResult) {
    for c in &result.cases {
        eprintln!(
            "gate: {} {}: {} — {}",
            result.env,
            c.name,
            match c.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::Error => "ERROR",
            },
            c.message
        );
    }
}

/// Every pair of environments that evaluated the same model. A pair fails
/// when more images change their top-1 class than the looser `max_flips`
/// of the two, or a probability moves more than the looser probability
/// tolerance (the GPU one when either ran on a GPU).
pub fn cross_env(envs: &[&Env], results: &[EnvResult]) -> Vec<PairResult> {
    let mut pairs = Vec::new();
    for (i, ra) in results.iter().enumerate() {
        for rb in &results[i + 1..] {
            let (Some(ea), Some(eb)) = (
                envs.iter().find(|e| e.name == ra.env),
                envs.iter().find(|e| e.name == rb.env),
            ) else {
                continue;
            };
            for ma in &ra.models {
                let Some(mb) = rb.models.iter().find(|m| m.model == ma.model) else {
                    continue;
                };
                let (Some(a), Some(b)) = (&ma.run, &mb.run) else {
                    continue;
                };
                let agreement = compare::agreement(a, b);
                let (ta, tb) = (&ea.harness.tolerances, &eb.harness.tolerances);
                let gpu = [ra, rb]
                    .iter()
                    .any(|r| r.versions.as_ref().is_some_and(|v| v.is_gpu()));
                let prob_tol = if gpu {
                    ta.prob_abs_gpu.max(tb.prob_abs_gpu)
                } else {
                    ta.prob_abs_cpu.max(tb.prob_abs_cpu)
                };
                let max_flips = ta.max_flips.max(tb.max_flips) as usize;
                let mut failures = Vec::new();
                if agreement.disagreements.len() > max_flips {
                    failures.push(format!(
                        "{} image(s) with a different top-1 (max_flips {max_flips})",
                        agreement.disagreements.len()
                    ));
                }
                if let Some(m) = &agreement.max_prob {
                    if m.delta > prob_tol + 1e-9 {
                        failures.push(format!(
                            "max |Δp| {:.4} at {} > {prob_tol}",
                            m.delta, m.path
                        ));
                    }
                }
                let summary = format!(
                    "top-1 agreement {:.2}%, max |Δp| {}",
                    agreement.percent(),
                    agreement
                        .max_prob
                        .as_ref()
                        .map_or("-".into(), |m| format!("{:.4}", m.delta))
                );
                let case = CaseResult {
                    name: format!("agreement {} {} vs {}", ma.model, ra.env, rb.env),
                    outcome: if failures.is_empty() {
                        Outcome::Pass
                    } else {
                        Outcome::Fail
                    },
                    message: if failures.is_empty() {
                        summary
                    } else {
                        failures.join("; ")
                    },
                    detail: agreement.render(&ra.env, &rb.env),
                    seconds: 0.0,
                };
                pairs.push(PairResult {
                    model: ma.model.clone(),
                    a: ra.env.clone(),
                    b: rb.env.clone(),
                    agreement,
                    case,
                });
            }
        }
    }
    pairs
}
