//! `summary.md`: one table row per environment and model, then the
//! cross-environment agreement and every diff.
//!
//! Reads check and compare results; defines [`PairResult`] (built by
//! `ci::cross_env`) so that it needs nothing from `ci`.
//!
//! May use: `gate::check`, `gate::compare`.

use std::fmt::Write as _;

use super::check::{CaseResult, EnvResult, Outcome};
use super::compare::Agreement;

/// The same model in two environments.
#[derive(Debug, Clone)]
pub struct PairResult {
    pub model: String,
    pub a: String,
    pub b: String,
    pub agreement: Agreement,
    pub case: CaseResult,
}

/// Where `ci` puts the report folder of `model` in `env`, relative to its
/// output folder (the summary links it).
pub fn report_folder(env: &str, model: &str) -> String {
    format!("{env}/{model}")
}

/// The per-environment chart `ci` draws beside the summary.
pub const ENV_CHART: &str = "envs.png";

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(envs: &[EnvResult], pairs: &[PairResult]) -> String {
    let mut s = String::from("# torchenv gate\n\n");
    let passed = envs.iter().all(EnvResult::passed) && pairs.iter().all(|p| p.case.passed());
    let _ = writeln!(
        s,
        "**{}** — {} environment(s)\n",
        if passed { "PASS" } else { "FAIL" },
        envs.len()
    );
    s.push_str(
        "| env | torch | CUDA | cuDNN | device | model | top-1 | top-5 | baseline | notes |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for env in envs {
        env_rows(&mut s, env);
    }
    if envs
        .iter()
        .any(|e| e.models.iter().any(|m| m.report.is_some()))
    {
        let _ = writeln!(
            s,
            "\n![top-1 and images/s per environment]({ENV_CHART})\n\nEach model links its report (plots, mistakes, versions)."
        );
    }
    if !pairs.is_empty() {
        agreement_table(&mut s, pairs);
    }
    placements(&mut s, envs);
    failures(&mut s, envs);
    s
}

/// Where a scheduler ran each environment (`ci --slurm`); nothing for a
/// local run.
fn placements(s: &mut String, envs: &[EnvResult]) {
    if envs.iter().all(|e| e.placement.is_none()) {
        return;
    }
    s.push_str("\n## Where each environment ran\n\n| env | scheduler | job | node | state |\n|---|---|---|---|---|\n");
    for e in envs {
        let Some(p) = &e.placement else { continue };
        let node = if p.node.is_empty() { "-" } else { &p.node };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            cell(&e.env),
            cell(&p.scheduler),
            cell(&p.job),
            cell(node),
            cell(&p.state)
        );
    }
}

/// The environment's torch, CUDA, cuDNN and device cells.
fn version_cells(env: &EnvResult) -> [String; 4] {
    let v = env.versions.as_ref();
    let torch = v.map_or("-".into(), |v| v.torch.clone());
    // On a CPU run there is no CUDA runtime: the CUDA the image's torch
    // was built with says which CUDA build ran.
    let cuda = v
        .and_then(|v| v.cuda.clone())
        .or_else(|| {
            env.cuda
                .as_ref()
                .and_then(|c| c.cuda_runtime_version.clone())
        })
        .or_else(|| {
            env.models
                .iter()
                .find_map(|m| m.report.as_ref()?.versions.cuda_build.clone())
                .map(|b| format!("{b} (build)"))
        })
        .unwrap_or_else(|| "-".into());
    let cudnn = v
        .and_then(|v| v.cudnn.clone())
        .or_else(|| env.cuda.as_ref().and_then(|c| c.cudnn_version.clone()))
        .unwrap_or_else(|| "-".into());
    let device = v.map_or("-".into(), |v| {
        if v.device_name == v.device {
            v.device.clone()
        } else {
            format!("{} ({})", v.device, v.device_name)
        }
    });
    [torch, cuda, cudnn, device]
}

/// (model, top-1, top-5, baseline verdict, note) per model of `env`, or one
/// row of dashes when it evaluated none.
fn model_cells(env: &EnvResult) -> Vec<(String, String, String, String, String)> {
    if env.models.is_empty() {
        return vec![(
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            String::new(),
        )];
    }
    env.models
        .iter()
        .map(|m| {
            let case = env
                .cases
                .iter()
                .find(|c| c.name == format!("eval {}", m.model));
            let note = case
                .filter(|c| c.outcome != Outcome::Pass)
                .map_or(String::new(), |c| c.message.clone());
            let (t1, t5) = m.run.as_ref().map_or(("-".into(), "-".into()), |r| {
                (
                    format!("{:.2}%", r.metrics.top1_pct()),
                    format!("{:.2}%", r.metrics.top5_pct()),
                )
            });
            let model = match &m.report {
                Some(_) => format!(
                    "[{}]({}/index.html)",
                    m.model,
                    report_folder(&env.env, &m.model)
                ),
                None => m.model.clone(),
            };
            (model, t1, t5, m.verdict.clone(), note)
        })
        .collect()
}

/// The rows of one environment.
fn env_rows(s: &mut String, env: &EnvResult) {
    let [torch, cuda, cudnn, device] = version_cells(env);
    let mut notes: Vec<String> = env
        .cases
        .iter()
        .filter(|c| !c.passed() && !c.name.starts_with("eval "))
        .map(|c| format!("{}: {}", c.name, c.message))
        .collect();
    notes.extend(env.notices.iter().cloned());
    for (model, t1, t5, verdict, note) in model_cells(env) {
        let mut all = notes.clone();
        if !note.is_empty() {
            all.insert(0, note);
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&env.env),
            cell(&torch),
            cell(&cuda),
            cell(&cudnn),
            cell(&device),
            cell(&model),
            t1,
            t5,
            cell(&verdict),
            cell(&all.join("; "))
        );
    }
}

fn agreement_table(s: &mut String, pairs: &[PairResult]) {
    s.push_str("\n## Agreement between environments\n\n");
    s.push_str("| model | env A | env B | top-1 agreement | max abs prob diff | verdict |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for p in pairs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2}% ({}/{}) | {} | {} |",
            cell(&p.model),
            cell(&p.a),
            cell(&p.b),
            p.agreement.percent(),
            p.agreement.same_top1,
            p.agreement.common,
            p.agreement
                .max_prob
                .as_ref()
                .map_or("-".into(), |m| format!(
                    "{:.4} ({})",
                    m.delta,
                    cell(&m.path)
                )),
            if p.case.passed() { "pass" } else { "FAIL" }
        );
    }
}

/// Every failed check with its message and detail.
fn failures(s: &mut String, envs: &[EnvResult]) {
    let details: Vec<_> = envs
        .iter()
        .flat_map(|e| e.cases.iter().map(move |c| (e.env.as_str(), c)))
        .filter(|(_, c)| !c.passed())
        .collect();
    if details.is_empty() {
        return;
    }
    s.push_str("\n## Failures\n");
    for (env, c) in details {
        let _ = write!(
            s,
            "\n### {env}: {}\n\n{}\n\n```\n{}\n```\n",
            c.name,
            c.message,
            c.detail.trim_end()
        );
    }
}
