//! `cargo xtask bench eval`: what the report folder and the dataset listing
//! cost next to an eval, one run, CPU, the host harness (the environment's
//! libtorch from its host venv), EfficientNet-Lite0 with its locked weights.
//!
//! - report overhead: `harness eval --out` on the fixture photos
//!   replicated (30 × 100 = 3,000 images); the eval time is the harness's
//!   own `performance.wall_seconds`, the report time is
//!   `report_view::write_folder` on that folder, timed in this process (the
//!   work `cargo xtask eval` does after the harness, in this same build of
//!   xtask). Goal: report ≤ 10 % of eval (informational).
//! - listing: seconds from starting `harness eval --limit 32 --progress` to
//!   its `start` progress event (listing + label matching + model load), on
//!   a flat Kaggle-style folder of 50,000 hard links and on the 30-photo
//!   ImageFolder; the difference is the cost of listing and labelling
//!   50,000 files. Medians of a few runs, the two folders taking turns.
//!
//! The scratch data lives in a temporary folder removed at the end.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use report::ProgressEvent;

use super::data::{kaggle_folder, photos, replicate};
use super::median;
use crate::build::{harness, weights};
use crate::commands::{Ctx, Run};
use crate::error::{Error, Result};
use crate::eval::EvalError;
use crate::lock;
use crate::process::{run_captured, run_lines};
use crate::report_view;

/// The model both benches run (its weights come from the lock).
const MODEL: &str = "efficientnet_lite0";
/// Images evaluated in a listing run (enough to start, few to wait for).
const LISTING_LIMIT: usize = 32;
/// The report-overhead goal: report folder time ÷ eval time.
const REPORT_GOAL: f64 = 0.10;

/// Report-folder time against eval time (3,000 images), and the listing
/// time of a 50,000-image flat folder against a 30-image ImageFolder;
/// one run, CPU, host harness.
#[derive(clap::Args)]
pub struct BenchEval {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Copies of each fixture photo for the report-overhead eval.
    #[arg(long, default_value_t = 100)]
    copies: usize,
    /// Images in the flat folder of the listing bench.
    #[arg(long, default_value_t = 50_000)]
    files: usize,
    /// Runs of each listing measurement (the median is shown).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Decode workers of the harness.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

/// `harness eval` on the CPU with the run's settings.
struct HarnessEval<'a> {
    binary: &'a Path,
    weights: &'a Path,
    workers: usize,
    batch_size: usize,
}

impl HarnessEval<'_> {
    fn command(&self, data: &Path) -> Command {
        let mut cmd = Command::new(self.binary);
        cmd.args(["eval", "--model", MODEL, "--device", "cpu", "--progress"])
            .arg("--weights")
            .arg(self.weights)
            .arg("--data")
            .arg(data)
            .args(["--workers", &self.workers.to_string()])
            .args(["--batch-size", &self.batch_size.to_string()]);
        cmd
    }
}

/// The report-overhead measurement.
struct Overhead {
    images: usize,
    /// The harness's `performance.wall_seconds`.
    eval: f64,
    /// The harness process, start to exit.
    process: Duration,
    /// `write_folder`.
    report: Duration,
    files: usize,
}

/// The listing measurement: spawn to `start`, medians.
struct Listing {
    folder_images: usize,
    folder: Duration,
    flat_images: usize,
    flat: Duration,
    linked: bool,
}

impl Run for BenchEval {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let env = spec.env(self.env.as_deref())?;
        let locked = lock::check_fresh(&spec, &lock, env)?;
        let build = harness::build(locked)?;
        let weights = weights::weights_path(&lock, MODEL)?;
        let eval = HarnessEval {
            binary: &build.binary,
            weights: &weights,
            workers: self.workers,
            batch_size: self.batch_size,
        };
        let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch dir"))?;
        let overhead = self.report_overhead(&eval, &env.harness.dataset, scratch.path())?;
        let listing = self.listing(&eval, &env.harness.dataset, scratch.path())?;
        println!(
            "bench eval (CPU, {MODEL}, torch {}, {} workers, batch {}; xtask {} build):",
            locked.torch,
            self.workers,
            self.batch_size,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        print_overhead(&overhead);
        print_listing(&listing, self.reps.max(1));
        Ok(())
    }
}

impl BenchEval {
    /// `harness eval --out` on the replicated photos, then the report
    /// folder written from its `report.json` here.
    fn report_overhead(
        &self,
        eval: &HarnessEval,
        dataset: &Path,
        scratch: &Path,
    ) -> Result<Overhead> {
        let data = scratch.join("replicated");
        let images = replicate(dataset, &data, self.copies)?.len();
        eprintln!("bench: report overhead, {images} images");
        let out = scratch.join("report");
        let mut cmd = eval.command(&data);
        cmd.arg("--out").arg(&out);
        let t = Instant::now();
        run_captured(cmd, "harness eval (report overhead)")?;
        let process = t.elapsed();
        let path = out.join("report.json");
        let text = std::fs::read_to_string(&path)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        let report = report::parse_eval(&text)
            .map_err(|e| Error::failed(format!("{}: {e}", path.display())))?;
        let t = Instant::now();
        let written = report_view::write_folder(&report, &out).map_err(EvalError::View)?;
        let report_time = t.elapsed();
        Ok(Overhead {
            images: report.dataset.num_evaluated,
            eval: report.performance.wall_seconds,
            process,
            report: report_time,
            files: written.files().len(),
        })
    }

    /// Spawn-to-start of the fixture ImageFolder and of a flat folder of
    /// `files` links, taking turns, medians of `reps` runs each.
    fn listing(&self, eval: &HarnessEval, dataset: &Path, scratch: &Path) -> Result<Listing> {
        let flat = scratch.join("flat");
        eprintln!("bench: listing, making {} links", self.files);
        let made = kaggle_folder(dataset, &flat, self.files)?;
        let folder_images = photos(dataset)?.len();
        let (mut folder, mut flats) = (Vec::new(), Vec::new());
        for _ in 0..self.reps.max(1) {
            folder.push(time_to_start(eval, dataset)?);
            flats.push(time_to_start(eval, &flat)?);
        }
        Ok(Listing {
            folder_images,
            folder: median(folder),
            flat_images: made.images,
            flat: median(flats),
            linked: made.linked,
        })
    }
}

/// Seconds from spawning `harness eval --limit 32` on `data` to its
/// `start` event; the run is then finished (its exit status checked).
fn time_to_start(eval: &HarnessEval, data: &Path) -> Result<Duration> {
    let mut cmd = eval.command(data);
    cmd.args(["--limit", &LISTING_LIMIT.to_string()]);
    let mut started = None;
    let t = Instant::now();
    run_lines(cmd, "harness eval (listing)", |line| {
        if started.is_none()
            && matches!(
                ProgressEvent::parse(line),
                Some(ProgressEvent::Start { .. })
            )
        {
            started = Some(t.elapsed());
        }
    })?;
    started.ok_or_else(|| {
        Error::failed(format!(
            "harness eval on {} printed no start event",
            data.display()
        ))
    })
}

fn print_overhead(o: &Overhead) {
    let ratio = o.report.as_secs_f64() / o.eval;
    println!("  report overhead ({} images):", o.images);
    println!(
        "    {:<46} {:>8.2} s  (process start to exit {:.2} s)",
        "eval (harness performance.wall_seconds)",
        o.eval,
        o.process.as_secs_f64()
    );
    println!(
        "    {:<46} {:>8.2} s",
        format!("report folder (write_folder, {} files)", o.files),
        o.report.as_secs_f64()
    );
    println!(
        "    {:<46} {:>8.1} %  goal <= {:.0} %: {}",
        "report / eval",
        100.0 * ratio,
        100.0 * REPORT_GOAL,
        if ratio <= REPORT_GOAL { "PASS" } else { "over" }
    );
}

fn print_listing(l: &Listing, reps: usize) {
    println!(
        "  listing (spawn to `start` event: listing + labels + model load; median of {reps}):"
    );
    let row = |what: String, d: Duration| println!("    {what:<46} {:>8.3} s", d.as_secs_f64());
    row(format!("ImageFolder, {} images", l.folder_images), l.folder);
    row(
        format!(
            "flat Kaggle folder, {} {}",
            l.flat_images,
            if l.linked { "hard links" } else { "copies" }
        ),
        l.flat,
    );
    println!(
        "    {:<46} {:>8.3} s",
        format!("difference (listing {} files)", l.flat_images),
        l.flat.as_secs_f64() - l.folder.as_secs_f64()
    );
}
