//! The eval report from an evaluation's raw outcome: metrics, per-class
//! table, confusions and per-sample results as `report::EvalReport` (the
//! layout shared with the gate, which reads it), and the readable table
//! printed on stdout.
//!
//! Uses the report crate's types and class table, the dataset's samples and
//! [`crate::eval::EvalOutcome`]; no libtorch.
//!
//! May use: `dataset`, `eval`, `models`.

use crate::dataset::Sample;
use crate::eval::EvalOutcome;
use crate::models::ModelKind;
use report::imagenet::{self, Class};
use report::{
    ClassAccuracy, ConfusionEntry, DatasetInfo, EvalReport, FailedSample, Metrics, Performance,
    Prediction, SampleResult, Settings, Versions, WeightsInfo,
};
use std::collections::BTreeMap;

/// Inputs to [`build_report`] that are not per-sample results.
pub struct ReportContext {
    pub model: ModelKind,
    pub weights: WeightsInfo,
    pub dataset_root: String,
    pub labels_file: Option<String>,
    pub layout: String,
    pub settings: Settings,
    pub versions: Versions,
    pub gpu: report::GpuMonitor,
}

/// Per-sample results and the counts the summary tables are made of.
#[derive(Default)]
struct Tally {
    results: Vec<SampleResult>,
    misclassified: Vec<String>,
    /// Class index → (evaluated, top-1 correct).
    per_class: BTreeMap<usize, (usize, usize)>,
    /// (true, predicted) → count, top-1 wrong only.
    confusion: BTreeMap<(usize, usize), usize>,
    correct_top1: usize,
    correct_top5: usize,
    /// `[k-1]`: images whose label is among the k most probable classes
    /// (the curve runs k = 1 ..= [`crate::eval::TOP`]).
    correct_topk: [usize; crate::eval::TOP],
}

/// The synset of a class index, "" when out of range.
fn synset_of(classes: &[Class], i: usize) -> String {
    classes
        .get(i)
        .map_or(String::new(), |c| c.synset.to_string())
}

fn tally(samples: &[Sample], ranked: &[Option<Vec<(usize, f32)>>], classes: &[Class]) -> Tally {
    let mut t = Tally::default();
    for (s, r) in samples.iter().zip(ranked) {
        let Some(r) = r else { continue };
        let top: Vec<usize> = r.iter().map(|&(c, _)| c).collect();
        let correct = top[0] == s.label;
        t.correct_top1 += usize::from(correct);
        t.correct_top5 += usize::from(top.iter().take(5).any(|&c| c == s.label));
        if let Some(rank) = top.iter().position(|&c| c == s.label) {
            for c in &mut t.correct_topk[rank..] {
                *c += 1;
            }
        }
        let e = t.per_class.entry(s.label).or_default();
        e.0 += 1;
        e.1 += usize::from(correct);
        if !correct {
            *t.confusion.entry((s.label, top[0])).or_default() += 1;
            t.misclassified.push(s.rel_path.clone());
        }
        t.results.push(SampleResult {
            path: s.rel_path.clone(),
            label: s.label,
            label_synset: classes[s.label].synset.to_string(),
            top5: r
                .iter()
                .take(5)
                .map(|&(i, p)| Prediction {
                    index: i,
                    synset: synset_of(classes, i),
                    probability: f64::from(p),
                })
                .collect(),
            correct,
            thumbnail: None,
        });
    }
    t
}

/// Sorted by count descending, then true index, then predicted index.
fn confusion_entries(
    counts: BTreeMap<(usize, usize), usize>,
    classes: &[Class],
) -> Vec<ConfusionEntry> {
    let mut confusion: Vec<ConfusionEntry> = counts
        .into_iter()
        .map(|((t, p), count)| ConfusionEntry {
            true_index: t,
            true_synset: classes[t].synset.into(),
            predicted_index: p,
            predicted_synset: synset_of(classes, p),
            count,
        })
        .collect();
    confusion.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.true_index.cmp(&b.true_index))
            .then(a.predicted_index.cmp(&b.predicted_index))
    });
    confusion
}

fn class_accuracies(
    counts: BTreeMap<usize, (usize, usize)>,
    classes: &[Class],
) -> Vec<ClassAccuracy> {
    counts
        .into_iter()
        .map(|(i, (n, c))| ClassAccuracy {
            index: i,
            synset: classes[i].synset.into(),
            name: classes[i].name.into(),
            n,
            correct: c,
            accuracy: c as f64 / n as f64,
        })
        .collect()
}

fn performance(outcome: &EvalOutcome, evaluated: usize) -> Performance {
    let wall = outcome.wall_seconds;
    Performance {
        wall_seconds: wall,
        images_per_second: if wall > 0.0 {
            evaluated as f64 / wall
        } else {
            0.0
        },
        preprocess_seconds: outcome.preprocess_seconds,
        inference_seconds: outcome.inference_seconds,
        peak_host_rss_bytes: peak_rss_bytes(),
        peak_gpu_memory_bytes: outcome.peak_gpu_memory_bytes,
        timeline: outcome
            .timeline
            .iter()
            .map(|&(seconds, images)| report::TimelinePoint { seconds, images })
            .collect(),
    }
}

/// Metrics, per-class table, confusions and per-sample results.
pub fn build_report(ctx: ReportContext, samples: &[Sample], outcome: &EvalOutcome) -> EvalReport {
    let classes = imagenet::classes();
    let t = tally(samples, &outcome.top, classes);
    let n = t.results.len();
    let frac = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
    EvalReport {
        schema_version: report::SCHEMA_VERSION,
        model: ctx.model.name().into(),
        weights: ctx.weights,
        dataset: DatasetInfo {
            root: ctx.dataset_root,
            labels_file: ctx.labels_file,
            layout: ctx.layout,
            num_images: samples.len(),
            num_evaluated: n,
            num_failed: outcome.failed.len(),
        },
        settings: ctx.settings,
        metrics: Metrics {
            top1: frac(t.correct_top1),
            top5: frac(t.correct_top5),
            correct_top1: t.correct_top1,
            correct_top5: t.correct_top5,
            evaluated: n,
            topk: t.correct_topk.iter().map(|&c| frac(c)).collect(),
        },
        per_class: class_accuracies(t.per_class, classes),
        confusion: confusion_entries(t.confusion, classes),
        samples: t.results,
        misclassified: t.misclassified,
        failed: outcome
            .failed
            .iter()
            .map(|(i, e)| FailedSample {
                path: samples[*i].rel_path.clone(),
                error: e.clone(),
            })
            .collect(),
        performance: performance(outcome, n),
        versions: ctx.versions,
        gpu: ctx.gpu,
        export: None,
    }
}

/// Peak RSS (`VmHWM` of /proc/self/status) in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// One line per sampled GPU, or why none was sampled.
fn render_gpu(gpu: &report::GpuMonitor) -> String {
    let mut s = String::new();
    match gpu.why_unavailable() {
        Some(why) => s += &format!("gpu monitor  {why}\n"),
        None => {
            for d in &gpu.devices {
                s += &format!(
                    "gpu {}        {}: peak memory {:.0} MiB, mean utilization {:.0}%\n",
                    d.index,
                    d.name,
                    d.summary.peak_memory_bytes.unwrap_or(0) as f64 / 1048576.0,
                    d.summary.mean_utilization_percent.unwrap_or(0.0)
                );
            }
        }
    }
    s
}

/// The readable summary printed on stdout.
pub fn render(r: &EvalReport) -> String {
    let mut s = String::new();
    s += &format!("model        {}\n", r.model);
    s += &format!(
        "weights      {} ({}, sha256 {})\n",
        r.weights.source, r.weights.format, r.weights.sha256
    );
    s += &format!(
        "dataset      {} ({} images, {} evaluated, {} failed)\n",
        r.dataset.root, r.dataset.num_images, r.dataset.num_evaluated, r.dataset.num_failed
    );
    s += &format!(
        "settings     device={} batch={} workers={} dtype={} autocast={} channels_last={} deterministic={}\n",
        r.settings.device,
        r.settings.batch_size,
        r.settings.workers,
        r.settings.dtype,
        r.settings.autocast.as_deref().unwrap_or("off"),
        r.settings.channels_last,
        r.settings.deterministic
    );
    s += &format!(
        "versions     harness {} torch {} (built for CUDA {}) cuda runtime {} cudnn {} driver {} on {}\n",
        r.versions.harness,
        r.versions.torch,
        r.versions.cuda_build.as_deref().unwrap_or("-"),
        r.versions.cuda_runtime.as_deref().unwrap_or("-"),
        r.versions.cudnn.as_deref().unwrap_or("-"),
        r.versions.driver.as_deref().unwrap_or("-"),
        r.versions.device_name
    );
    s += &render_gpu(&r.gpu);
    s += &format!(
        "top-1        {:.2}% ({}/{})\ntop-5        {:.2}% ({}/{})\n",
        100.0 * r.metrics.top1,
        r.metrics.correct_top1,
        r.metrics.evaluated,
        100.0 * r.metrics.top5,
        r.metrics.correct_top5,
        r.metrics.evaluated
    );
    let p = &r.performance;
    s += &format!(
        "throughput   {:.1} img/s (wall {:.2}s, preprocess {:.2}s, inference {:.2}s)\n",
        p.images_per_second, p.wall_seconds, p.preprocess_seconds, p.inference_seconds
    );
    s += &format!(
        "memory       peak RSS {:.0} MiB{}\n",
        p.peak_host_rss_bytes.unwrap_or(0) as f64 / 1048576.0,
        p.peak_gpu_memory_bytes.map_or(String::new(), |b| format!(
            ", peak GPU {:.0} MiB",
            b as f64 / 1048576.0
        ))
    );
    s += "\nper class\n  synset     n  correct  acc%    name\n";
    for c in &r.per_class {
        s += &format!(
            "  {} {:>3} {:>8} {:>6.1}  {}\n",
            c.synset,
            c.n,
            c.correct,
            100.0 * c.accuracy,
            c.name
        );
    }
    if !r.confusion.is_empty() {
        s += "\nconfusions (true -> predicted: count)\n";
        for c in r.confusion.iter().take(20) {
            s += &format!(
                "  {} -> {}: {}\n",
                c.true_synset, c.predicted_synset, c.count
            );
        }
    }
    if !r.misclassified.is_empty() {
        s += &format!("\nmisclassified ({})\n", r.misclassified.len());
        for m in &r.misclassified {
            s += &format!("  {m}\n");
        }
    }
    if !r.failed.is_empty() {
        s += &format!("\nfailed ({})\n", r.failed.len());
        for f in &r.failed {
            s += &format!("  {}: {}\n", f.path, f.error);
        }
    }
    s
}
