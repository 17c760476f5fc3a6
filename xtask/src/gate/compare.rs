//! Numeric comparison of a run with its baseline, within the environment's
//! tolerances (`harness.tolerances` in environments.yaml), and the readable
//! diff the gate prints.
//!
//! May use: `gate::baseline`, `spec`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::baseline::{Accuracy, Sample};
use crate::spec::Tolerances;

/// Slack for float comparisons of already-rounded numbers.
const EPS: f64 = 1e-9;

/// How many offending samples the diff lists per category.
const LIST_LIMIT: usize = 20;

/// `n01443537 goldfish` (the synset alone when it is not an ImageNet class).
fn class(synset: &str) -> String {
    match ::report::imagenet::class_name(synset) {
        "" => synset.to_string(),
        name => format!("{synset} {name}"),
    }
}

/// A sample whose top-1 class changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flip {
    pub path: String,
    pub label: String,
    pub old: (String, f64),
    pub new: (String, f64),
}

/// A probability difference of one class on one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbDelta {
    pub path: String,
    pub synset: String,
    /// `None` when the class was not in that side's top-5 (then its
    /// probability is at most that side's 5th).
    pub old: Option<f64>,
    pub new: Option<f64>,
    pub delta: f64,
}

/// The outcome of comparing a run with its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub env: String,
    pub model: String,
    pub gpu: bool,
    pub tolerances: Tolerances,
    /// Percent.
    pub top1: (f64, f64),
    pub top5: (f64, f64),
    pub counts_top1: ((usize, usize), (usize, usize)),
    pub flips: Vec<Flip>,
    /// Deltas beyond the probability tolerance, largest first.
    pub prob_violations: Vec<ProbDelta>,
    /// The largest delta overall.
    pub max_prob: Option<ProbDelta>,
    /// In the baseline, not in the run.
    pub missing_samples: Vec<String>,
    /// In the run, not in the baseline.
    pub new_samples: Vec<String>,
    /// Failed to decode now, not before.
    pub newly_failed: Vec<String>,
    /// Failed before, not now.
    pub no_longer_failed: Vec<String>,
    /// One line per reason the comparison fails; empty = pass.
    pub failures: Vec<String>,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn prob_tolerance(&self) -> f64 {
        if self.gpu {
            self.tolerances.prob_abs_gpu
        } else {
            self.tolerances.prob_abs_cpu
        }
    }
}

/// Compares `run` with `base`. `gpu`: either side ran on a GPU, so the
/// GPU probability tolerance applies.
pub fn compare(base: &Accuracy, run: &Accuracy, tolerances: &Tolerances, gpu: bool) -> Comparison {
    let (flips, deltas) = flips_and_deltas(base, run);
    let mut c = Comparison {
        env: run.env.clone(),
        model: run.model.clone(),
        gpu,
        tolerances: *tolerances,
        top1: (base.metrics.top1_pct(), run.metrics.top1_pct()),
        top5: (base.metrics.top5_pct(), run.metrics.top5_pct()),
        counts_top1: (
            (base.metrics.correct_top1, base.metrics.evaluated),
            (run.metrics.correct_top1, run.metrics.evaluated),
        ),
        flips,
        prob_violations: Vec::new(),
        max_prob: deltas.first().cloned(),
        missing_samples: samples_only_in(base, run),
        new_samples: samples_only_in(run, base),
        newly_failed: failed_only_in(run, base),
        no_longer_failed: failed_only_in(base, run),
        failures: Vec::new(),
    };
    let prob_tol = c.prob_tolerance();
    c.prob_violations = deltas
        .into_iter()
        .filter(|d| d.delta > prob_tol + EPS)
        .collect();
    c.failures = failures(&c);
    c
}

/// The samples of both whose top-1 class changed (baseline order), and the
/// largest probability difference of each sample of both, largest first.
fn flips_and_deltas(base: &Accuracy, run: &Accuracy) -> (Vec<Flip>, Vec<ProbDelta>) {
    let run_by_path: BTreeMap<&str, &Sample> =
        run.samples.iter().map(|s| (s.path.as_str(), s)).collect();
    let mut flips = Vec::new();
    let mut deltas = Vec::new();
    for b in &base.samples {
        let Some(r) = run_by_path.get(b.path.as_str()) else {
            continue;
        };
        if let (Some(old), Some(new)) = (b.top1(), r.top1()) {
            if old.synset != new.synset {
                flips.push(Flip {
                    path: b.path.clone(),
                    label: b.label.clone(),
                    old: (old.synset.clone(), old.p),
                    new: (new.synset.clone(), new.p),
                });
            }
        }
        if let Some(d) = max_delta(b, r) {
            deltas.push(d);
        }
    }
    deltas.sort_by(|a, b| b.delta.total_cmp(&a.delta).then(a.path.cmp(&b.path)));
    (flips, deltas)
}

/// Paths of the samples of `a` that `b` lacks, in `a`'s order.
fn samples_only_in(a: &Accuracy, b: &Accuracy) -> Vec<String> {
    let in_b: BTreeSet<&str> = b.samples.iter().map(|s| s.path.as_str()).collect();
    a.samples
        .iter()
        .filter(|s| !in_b.contains(s.path.as_str()))
        .map(|s| s.path.clone())
        .collect()
}

/// Paths that failed to decode in `a` but not in `b`, sorted.
fn failed_only_in(a: &Accuracy, b: &Accuracy) -> Vec<String> {
    let set =
        |x: &Accuracy| -> BTreeSet<String> { x.failed.iter().map(|f| f.path.clone()).collect() };
    set(a).difference(&set(b)).cloned().collect()
}

/// One line per tolerance the comparison exceeds.
fn failures(c: &Comparison) -> Vec<String> {
    let t = &c.tolerances;
    let mut failures = Vec::new();
    let drop = c.top1.0 - c.top1.1;
    if drop > t.top1_drop + EPS {
        failures.push(format!(
            "top-1 dropped {drop:.2} pp ({:.2}% → {:.2}%), more than top1_drop {}",
            c.top1.0, c.top1.1, t.top1_drop
        ));
    }
    if c.flips.len() > t.max_flips as usize {
        failures.push(format!(
            "{} image(s) changed their top-1 class, more than max_flips {}",
            c.flips.len(),
            t.max_flips
        ));
    }
    if !c.prob_violations.is_empty() {
        failures.push(format!(
            "{} image(s) moved a probability by more than {} ({})",
            c.prob_violations.len(),
            c.prob_tolerance(),
            if c.gpu {
                "prob_abs_gpu"
            } else {
                "prob_abs_cpu"
            }
        ));
    }
    if !c.missing_samples.is_empty() || !c.new_samples.is_empty() {
        failures.push(format!(
            "the evaluated images changed ({} missing, {} new)",
            c.missing_samples.len(),
            c.new_samples.len()
        ));
    }
    if !c.newly_failed.is_empty() || !c.no_longer_failed.is_empty() {
        failures.push(format!(
            "the images that fail to decode changed ({} newly failing, {} no longer failing)",
            c.newly_failed.len(),
            c.no_longer_failed.len()
        ));
    }
    failures
}

/// The largest probability difference of one sample over the classes in
/// either top-5. A class in only one top-5 is at most the other side's 5th
/// probability there, so the difference is at least `p - p5` (a lower
/// bound: only differences that certainly exist are reported).
fn max_delta(base: &Sample, run: &Sample) -> Option<ProbDelta> {
    let floor = |s: &Sample| s.top5.iter().map(|p| p.p).fold(f64::INFINITY, f64::min);
    let (base_floor, run_floor) = (floor(base), floor(run));
    let lookup = |s: &Sample, synset: &str| s.top5.iter().find(|p| p.synset == synset).map(|p| p.p);
    let synsets: BTreeSet<&str> = base
        .top5
        .iter()
        .chain(&run.top5)
        .map(|p| p.synset.as_str())
        .collect();
    synsets
        .into_iter()
        .map(|synset| {
            let (old, new) = (lookup(base, synset), lookup(run, synset));
            let delta = match (old, new) {
                (Some(a), Some(b)) => (a - b).abs(),
                (Some(a), None) => (a - run_floor).max(0.0),
                (None, Some(b)) => (b - base_floor).max(0.0),
                (None, None) => 0.0,
            };
            ProbDelta {
                path: base.path.clone(),
                synset: synset.to_string(),
                old,
                new,
                delta,
            }
        })
        .max_by(|a, b| a.delta.total_cmp(&b.delta).then(b.synset.cmp(&a.synset)))
}

fn p(x: Option<f64>) -> String {
    x.map_or("<not in top-5>".into(), |v| format!("{v:.4}"))
}

/// The readable diff: verdict, accuracy deltas, flipped images, largest
/// probability differences.
pub fn render(c: &Comparison) -> String {
    let mut s = String::new();
    render_verdict(&mut s, c);
    render_flips(&mut s, c);
    render_prob_violations(&mut s, c);
    for (what, list) in [
        (
            "missing images (in the baseline, not evaluated now)",
            &c.missing_samples,
        ),
        (
            "new images (evaluated now, not in the baseline)",
            &c.new_samples,
        ),
        ("newly failing to decode", &c.newly_failed),
        ("no longer failing to decode", &c.no_longer_failed),
    ] {
        if !list.is_empty() {
            let _ = writeln!(s, "  {what} ({}):", list.len());
            for path in list.iter().take(LIST_LIMIT) {
                let _ = writeln!(s, "    {path}");
            }
            more(&mut s, list.len());
        }
    }
    s
}

/// Verdict and tolerances, why it fails, accuracies, largest |Δp|.
fn render_verdict(s: &mut String, c: &Comparison) {
    let t = &c.tolerances;
    let _ = writeln!(
        s,
        "{} on {}: {} (tolerances: top1_drop {} pp, max_flips {}, |Δp| ≤ {} on {})",
        c.model,
        c.env,
        if c.passed() { "PASS" } else { "REGRESSION" },
        t.top1_drop,
        t.max_flips,
        c.prob_tolerance(),
        if c.gpu { "GPU" } else { "CPU" },
    );
    for f in &c.failures {
        let _ = writeln!(s, "  ✗ {f}");
    }
    let ((b1, bn), (r1, rn)) = c.counts_top1;
    let _ = writeln!(
        s,
        "  top-1 {:.2}% → {:.2}% ({:+.2} pp; {b1}/{bn} → {r1}/{rn})",
        c.top1.0,
        c.top1.1,
        c.top1.1 - c.top1.0
    );
    let _ = writeln!(
        s,
        "  top-5 {:.2}% → {:.2}% ({:+.2} pp)",
        c.top5.0,
        c.top5.1,
        c.top5.1 - c.top5.0
    );
    match &c.max_prob {
        Some(m) => {
            let _ = writeln!(
                s,
                "  max |Δp| {:.4} at {} ({}: {} → {})",
                m.delta,
                m.path,
                class(&m.synset),
                p(m.old),
                p(m.new)
            );
        }
        None => {
            let _ = writeln!(s, "  max |Δp| -: no images in common");
        }
    }
}

fn render_flips(s: &mut String, c: &Comparison) {
    if c.flips.is_empty() {
        return;
    }
    let _ = writeln!(s, "  flipped top-1 ({}):", c.flips.len());
    for f in c.flips.iter().take(LIST_LIMIT) {
        let _ = writeln!(
            s,
            "    {} [true {}]: {} {:.4} → {} {:.4}",
            f.path,
            class(&f.label),
            class(&f.old.0),
            f.old.1,
            class(&f.new.0),
            f.new.1
        );
    }
    more(s, c.flips.len());
}

fn render_prob_violations(s: &mut String, c: &Comparison) {
    if c.prob_violations.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "  probabilities beyond {} ({} image(s)):",
        c.prob_tolerance(),
        c.prob_violations.len()
    );
    for d in c.prob_violations.iter().take(LIST_LIMIT) {
        let _ = writeln!(
            s,
            "    {}: {} {} → {} (|Δ| {:.4})",
            d.path,
            class(&d.synset),
            p(d.old),
            p(d.new),
            d.delta
        );
    }
    more(s, c.prob_violations.len());
}

fn more(s: &mut String, n: usize) {
    if n > LIST_LIMIT {
        let _ = writeln!(s, "    … and {} more", n - LIST_LIMIT);
    }
}

/// Agreement of two runs of the same model (e.g. two environments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Images evaluated by both.
    pub common: usize,
    /// Of those, same top-1 class.
    pub same_top1: usize,
    pub max_prob: Option<ProbDelta>,
    /// Images whose top-1 differs: path, class in a, class in b.
    pub disagreements: Vec<(String, String, String)>,
}

impl Agreement {
    pub fn percent(&self) -> f64 {
        if self.common == 0 {
            0.0
        } else {
            100.0 * self.same_top1 as f64 / self.common as f64
        }
    }

    pub fn render(&self, a: &str, b: &str) -> String {
        let mut s = format!(
            "top-1 agreement {:.2}% ({}/{}); max |Δp| {}\n",
            self.percent(),
            self.same_top1,
            self.common,
            self.max_prob.as_ref().map_or("-".into(), |m| format!(
                "{:.4} at {} ({})",
                m.delta,
                m.path,
                class(&m.synset)
            ))
        );
        for (path, ca, cb) in self.disagreements.iter().take(LIST_LIMIT) {
            let _ = writeln!(s, "  {path}: {a} {} ≠ {b} {}", class(ca), class(cb));
        }
        more(&mut s, self.disagreements.len());
        s
    }
}

pub fn agreement(a: &Accuracy, b: &Accuracy) -> Agreement {
    let b_by_path: BTreeMap<&str, &Sample> =
        b.samples.iter().map(|s| (s.path.as_str(), s)).collect();
    let mut out = Agreement {
        common: 0,
        same_top1: 0,
        max_prob: None,
        disagreements: Vec::new(),
    };
    for sa in &a.samples {
        let Some(sb) = b_by_path.get(sa.path.as_str()) else {
            continue;
        };
        out.common += 1;
        match (sa.top1(), sb.top1()) {
            (Some(x), Some(y)) if x.synset == y.synset => out.same_top1 += 1,
            (x, y) => out.disagreements.push((
                sa.path.clone(),
                x.map_or("-".into(), |p| p.synset.clone()),
                y.map_or("-".into(), |p| p.synset.clone()),
            )),
        }
        if let Some(d) = max_delta(sa, sb) {
            if out.max_prob.as_ref().is_none_or(|m| d.delta > m.delta) {
                out.max_prob = Some(d);
            }
        }
    }
    out
}
