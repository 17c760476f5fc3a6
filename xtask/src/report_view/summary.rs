//! `summary.md`: the run in one Markdown table a PR can paste, then the
//! worst classes and the most-confused pairs. The table's rows
//! ([`rows`]) are also the summary of `index.html`.
//!
//! May use: `stats`.

use std::fmt::Write as _;

use report::EvalReport;

use super::stats;

/// How many classes and pairs the tables list.
pub const TOP: usize = 10;

/// The short name of a class (`goldfish`): by its synset when that is an
/// ImageNet-1k class, else by its index when no synset is given, else the
/// synset itself.
pub fn class_name(index: usize, synset: &str) -> String {
    let by_synset = report::imagenet::class_name(synset);
    if !by_synset.is_empty() {
        return by_synset.to_string();
    }
    match report::imagenet::classes().get(index) {
        Some(c) if synset.is_empty() => c.short_name().to_string(),
        _ => synset.to_string(),
    }
}

/// `0.7767` → `77.67 %`.
pub fn percent(fraction: f64) -> String {
    format!("{:.2} %", fraction * 100.0)
}

/// Bytes as GiB with two decimals.
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn or_dash(v: Option<&String>) -> String {
    v.filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| "—".to_string())
}

/// The run's figures as (label, value) rows, in table order.
pub fn rows(r: &EvalReport) -> Vec<(&'static str, String)> {
    let sha: String = r.weights.sha256.chars().take(12).collect();
    let d = &r.dataset;
    let m = &r.metrics;
    let mut rows = vec![
        ("model", r.model.clone()),
        (
            "weights sha256",
            if sha.is_empty() { "—".into() } else { sha },
        ),
        (
            "dataset",
            format!(
                "{} ({}): {} images evaluated, {} failed",
                d.root,
                if d.layout.is_empty() { "?" } else { &d.layout },
                m.evaluated,
                d.num_failed.max(r.failed.len())
            ),
        ),
        (
            "top-1",
            format!("{} ({}/{})", percent(m.top1), m.correct_top1, m.evaluated),
        ),
        (
            "top-5",
            format!("{} ({}/{})", percent(m.top5), m.correct_top5, m.evaluated),
        ),
        ("img/s", format!("{:.1}", r.performance.images_per_second)),
        (
            "device",
            format!("{} ({})", r.settings.device, r.versions.device_name),
        ),
        ("torch", r.versions.torch.clone()),
        (
            "CUDA build",
            r.versions
                .cuda_build
                .clone()
                .unwrap_or_else(|| "none (CPU-only torch)".into()),
        ),
        ("cuDNN", or_dash(r.versions.cudnn.as_ref())),
        (
            "driver",
            or_dash(r.versions.driver.as_ref().or(r.gpu.driver_version.as_ref())),
        ),
    ];
    if r.settings.runtime != "libtorch" {
        let version = r.versions.onnxruntime.as_deref().unwrap_or("?");
        rows.insert(
            1,
            (
                "runtime",
                format!(
                    "{} {version} — an exported {} file, not the harness's network",
                    r.settings.runtime, r.weights.format
                ),
            ),
        );
    }
    rows.extend(gpu_rows(r));
    rows.extend(export_rows(r));
    rows
}

/// `eval --export`: the file written beside the report and its parity.
fn export_rows(r: &EvalReport) -> Vec<(&'static str, String)> {
    let Some(e) = &r.export else {
        return Vec::new();
    };
    let sha: String = e.sha256.chars().take(12).collect();
    let opset = e.opset.map_or(String::new(), |o| format!(", opset {o}"));
    vec![
        (
            "export",
            format!(
                "{} ({}{opset}, {} bytes, sha256 {sha}); {} → {}",
                e.file,
                e.format,
                e.bytes,
                e.input.describe(),
                e.output.describe()
            ),
        ),
        ("export parity", e.parity.summary()),
    ]
}

fn gpu_rows(r: &EvalReport) -> Vec<(&'static str, String)> {
    if let Some(why) = r.gpu.why_unavailable() {
        return vec![("GPU monitoring", format!("unavailable: {why}"))];
    }
    let per_device = |f: &dyn Fn(&report::GpuSummary) -> Option<String>| {
        let parts: Vec<String> = r
            .gpu
            .devices
            .iter()
            .filter_map(|d| f(&d.summary).map(|v| format!("GPU {}: {v}", d.index)))
            .collect();
        if parts.is_empty() {
            "—".to_string()
        } else {
            parts.join(", ")
        }
    };
    vec![
        (
            "GPU peak memory",
            per_device(&|s| s.peak_memory_bytes.map(gib)),
        ),
        (
            "GPU mean utilization",
            per_device(&|s| s.mean_utilization_percent.map(|u| format!("{u:.1} %"))),
        ),
    ]
}

/// Text made safe for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace(['\n', '\r'], " ")
        .replace('<', "&lt;")
}

/// The whole `summary.md`.
pub fn markdown(r: &EvalReport) -> String {
    let mut out = format!("## {} — evaluation summary\n\n", cell(&r.model));
    out.push_str("| | |\n| --- | --- |\n");
    for (label, value) in rows(r) {
        let _ = writeln!(out, "| {label} | {} |", cell(&value));
    }
    let worst = stats::worst_classes(&r.per_class, TOP);
    let _ = write!(out, "\n### {} worst classes\n\n", worst.len());
    if worst.is_empty() {
        out.push_str("No per-class results.\n");
    } else {
        out.push_str("| # | class | synset | accuracy | correct / images |\n");
        out.push_str("| ---: | --- | --- | ---: | ---: |\n");
        for (i, c) in worst.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} / {} |",
                i + 1,
                cell(&class_name(c.index, &c.synset)),
                cell(&c.synset),
                percent(c.accuracy),
                c.correct,
                c.n
            );
        }
    }
    let pairs = stats::most_confused(&r.confusion, TOP);
    let _ = write!(out, "\n### {} most-confused pairs\n\n", pairs.len());
    if pairs.is_empty() {
        out.push_str("No confusions.\n");
    } else {
        out.push_str("| # | true | predicted | images |\n| ---: | --- | --- | ---: |\n");
        for (i, e) in pairs.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} ({}) | {} ({}) | {} |",
                i + 1,
                cell(&class_name(e.true_index, &e.true_synset)),
                cell(&e.true_synset),
                cell(&class_name(e.predicted_index, &e.predicted_synset)),
                cell(&e.predicted_synset),
                e.count
            );
        }
    }
    out
}
