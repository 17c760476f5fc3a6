//! The report folder people look at: from an [`EvalReport`] and the folder
//! the harness wrote it into (`report.json`, `thumbs/*.png`), write
//! `summary.md` ([`summary`]), the PNG plots ([`plots`], numbers from
//! [`stats`]) and a self-contained `index.html` ([`html`]) into the same
//! folder. Also the environments comparison of `cargo xtask ci`
//! ([`env_comparison`]).
//!
//! Every file is written atomically ([`files`]): a failure leaves the
//! previous file or none, never half of one, and is a [`ReportViewError`]
//! naming the path.
//!
//! May use: nothing else of the crate.

pub mod files;
pub mod html;
pub mod plots;
pub mod stats;
pub mod summary;

use std::path::{Path, PathBuf};

use report::EvalReport;

pub use files::ReportViewError;
pub use plots::envs::EnvRow;

/// A plot of the folder: file name, title, and how it is drawn.
struct PlotSpec {
    file: &'static str,
    title: &'static str,
    draw: fn(&plots::Area, &EvalReport) -> plots::DrawResult,
    gpu_only: bool,
}

const PLOTS: &[PlotSpec] = &[
    PlotSpec {
        file: "topk.png",
        title: "Top-k accuracy, k = 1…10",
        draw: plots::accuracy::topk,
        gpu_only: false,
    },
    PlotSpec {
        file: "per_class.png",
        title: "Per-class accuracy, sorted, worst classes named",
        draw: plots::accuracy::per_class,
        gpu_only: false,
    },
    PlotSpec {
        file: "confused_pairs.png",
        title: "Most-confused pairs (true → predicted)",
        draw: plots::accuracy::confused_pairs,
        gpu_only: false,
    },
    PlotSpec {
        file: "confusion.png",
        title: "Confusion matrix of the classes with the most errors",
        draw: plots::accuracy::confusion,
        gpu_only: false,
    },
    PlotSpec {
        file: "reliability.png",
        title: "Reliability diagram and expected calibration error",
        draw: plots::accuracy::reliability,
        gpu_only: false,
    },
    PlotSpec {
        file: "coverage.png",
        title: "Accuracy vs coverage",
        draw: plots::accuracy::coverage,
        gpu_only: false,
    },
    PlotSpec {
        file: "throughput.png",
        title: "Images per second over time",
        draw: plots::run::throughput,
        gpu_only: false,
    },
    PlotSpec {
        file: "gpu_memory.png",
        title: "GPU memory in use",
        draw: plots::run::gpu_memory,
        gpu_only: true,
    },
    PlotSpec {
        file: "gpu_utilization.png",
        title: "GPU utilization",
        draw: plots::run::gpu_utilization,
        gpu_only: true,
    },
    PlotSpec {
        file: "gpu_power_temp.png",
        title: "GPU power draw and temperature",
        draw: plots::run::gpu_power_temp,
        gpu_only: true,
    },
];

/// What [`write_folder`] wrote, each a full path inside the folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    pub summary: PathBuf,
    /// Every PNG plot, in page order.
    pub plots: Vec<PathBuf>,
    pub index: PathBuf,
}

impl Written {
    /// Every file written.
    pub fn files(&self) -> Vec<&Path> {
        let mut all = vec![self.summary.as_path()];
        all.extend(self.plots.iter().map(PathBuf::as_path));
        all.push(&self.index);
        all
    }
}

/// Writes `summary.md`, the plots (the GPU ones when `report.gpu.available`)
/// and `index.html` into `dir`, which must exist (the harness's thumbnails
/// are expected in it at the paths the report gives).
pub fn write_folder(report: &EvalReport, dir: &Path) -> Result<Written, ReportViewError> {
    let summary = dir.join("summary.md");
    files::write_atomic(&summary, summary::markdown(report).as_bytes())?;
    let mut written = Written {
        summary,
        ..Written::default()
    };
    let mut shown = Vec::new();
    for spec in PLOTS.iter().filter(|p| !p.gpu_only || report.gpu.available) {
        let path = dir.join(spec.file);
        plots::png(&path, |area| (spec.draw)(area, report))?;
        written.plots.push(path);
        shown.push((spec.file, spec.title));
    }
    let exists = |rel: &str| html::relative_url(rel).is_some() && dir.join(rel).is_file();
    let index = dir.join("index.html");
    files::write_atomic(&index, html::page(report, &shown, &exists).as_bytes())?;
    written.index = index;
    Ok(written)
}

/// Draws top-1 accuracy and images per second of each environment (one
/// horizontal bar each, labelled with name and versions) into the PNG at
/// `path`: [`plots::WIDTH`] wide, two panels, taller with many rows.
pub fn env_comparison(rows: &[EnvRow], path: &Path) -> Result<(), ReportViewError> {
    let size = (plots::WIDTH, plots::envs::height(rows.len()));
    plots::png_sized(path, size, |area| plots::envs::draw(area, rows))
}

#[cfg(test)]
mod tests;
