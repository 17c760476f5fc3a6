//! `cargo xtask bench harness`: the Rust harness against PyTorch-Python,
//! one run, same images, same libtorch (the environment's host venv), CPU.
//!
//! - end to end: images/s of the decode → preprocess → batched inference
//!   loop, the harness's `eval` vs a `DataLoader` with as many workers
//!   feeding two PyTorch models: the eager one (PIL + torchvision
//!   transforms + eager model under `no_grad`), and PyTorch's best CPU path
//!   as a careful user runs it (model and input channels_last,
//!   `inference_mode`, `torch.jit.freeze(torch.jit.script(model))` with
//!   BatchNorm folded into the convolutions). Both PyTorch models get one
//!   untimed warm-up batch; the harness's time includes its first batch;
//! - preprocessing per core: the harness's single-threaded `preprocess`
//!   vs a single-threaded PIL + transforms loop, both timed inside their
//!   process around decode + preprocessing only.
//!
//! The model is torchvision's EfficientNet-B0 with seeded random weights:
//! speed does not depend on the weights.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::data::replicate;
use crate::build::harness;
use crate::commands::{Ctx, Run};
use crate::error::{Error, Result};
use crate::lock;
use crate::process::{run_captured, run_logged};

/// End-to-end eval and per-core preprocessing speed of the harness
/// against PyTorch-Python, one run, same images, same libtorch, CPU.
///
/// End to end, PyTorch runs twice over the same DataLoader: the eager
/// model (no_grad) and PyTorch's best CPU path (channels_last,
/// inference_mode, TorchScript frozen with BatchNorm folded), each after
/// one warm-up batch; the ratios are harness ÷ each.
#[derive(clap::Args)]
pub struct BenchHarness {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Copies of each dataset image.
    #[arg(long, default_value_t = 10)]
    copies: usize,
    /// Decode workers on both sides.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

/// Images per second of the harness.
struct Speeds {
    eval: f64,
    preprocess: f64,
}

/// Images per second of PyTorch-Python.
struct Reference {
    torch: String,
    /// End to end, eager model.
    eager: f64,
    /// End to end, the best CPU path.
    best: f64,
    preprocess: f64,
}

impl Run for BenchHarness {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let env = spec.env(self.env.as_deref())?;
        let locked = lock::check_fresh(&spec, &lock, env)?;
        let build = harness::build(locked)?;
        let python = build.torch.python()?;

        let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch dir"))?;
        let data = scratch.path().join("data");
        let images = replicate(&env.harness.dataset, &data, self.copies)?;
        let weights = scratch.path().join("b0.pth");
        let mut cmd = Command::new(&python);
        cmd.arg("-c").arg(format!(
            "import torch; from torchvision.models import efficientnet_b0; torch.manual_seed(0); \
             torch.save(efficientnet_b0().state_dict(), {:?})",
            weights.display().to_string()
        ));
        run_logged(cmd, "writing seeded EfficientNet-B0 weights")?;
        eprintln!(
            "bench: {} images, {} workers, batch {}",
            images.len(),
            self.workers,
            self.batch_size
        );
        let py = self.python_reference(&python, &weights, &images)?;
        let rs = Speeds {
            eval: self.harness_eval(&build.binary, &weights, &data, scratch.path())?,
            preprocess: harness_preprocess(&build.binary, &images, scratch.path())?,
        };
        self.print(images.len(), &rs, &py);
        Ok(())
    }
}

impl BenchHarness {
    fn print(&self, images: usize, rs: &Speeds, py: &Reference) {
        println!("bench harness ({images} images, CPU, torch {}):", py.torch);
        println!(
            "  {:<44} {:>10} {:>10} {:>7}",
            "", "harness", "PyTorch", "ratio"
        );
        let row = |what: &str, rs: f64, py: f64| {
            println!("  {what:<44} {rs:>10.1} {py:>10.1} {:>7.2}", rs / py);
        };
        let workers = self.workers;
        row(
            &format!("end-to-end img/s, eager ({workers} workers)"),
            rs.eval,
            py.eager,
        );
        row(
            &format!("end-to-end img/s, best CPU path ({workers} workers)"),
            rs.eval,
            py.best,
        );
        row("preprocessing img/s per core", rs.preprocess, py.preprocess);
        println!(
            "  best CPU path: channels_last + inference_mode + jit.freeze(jit.script) (BN folded)"
        );
        println!("  goals: end-to-end vs eager >= 1.3, preprocessing per core >= 2");
    }

    /// PyTorch-Python: a `DataLoader` end to end with the eager model and
    /// with the best CPU path, and a one-thread PIL loop timed around
    /// decode + preprocessing.
    fn python_reference(
        &self,
        python: &Path,
        weights: &Path,
        images: &[PathBuf],
    ) -> Result<Reference> {
        let mut cmd = Command::new(python);
        cmd.arg(harness::crate_dir().join("python/bench_reference.py"))
            .arg(weights)
            .arg(self.workers.to_string())
            .arg(self.batch_size.to_string())
            .args(images);
        let out = run_captured(cmd, "PyTorch-Python reference")?;
        let py: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::failed(format!("reference output is not JSON: {e}")))?;
        let number = |key: &str| py[key].as_f64().unwrap_or(f64::NAN);
        Ok(Reference {
            torch: py["torch"].as_str().unwrap_or("?").to_string(),
            eager: number("images") / number("eval_seconds"),
            best: number("best_images") / number("best_eval_seconds"),
            preprocess: images.len() as f64 / number("preprocess_seconds"),
        })
    }

    /// The harness's `eval`, end to end: images/s over its wall time.
    fn harness_eval(
        &self,
        binary: &Path,
        weights: &Path,
        data: &Path,
        scratch: &Path,
    ) -> Result<f64> {
        let report_path = scratch.join("report.json");
        let mut cmd = Command::new(binary);
        cmd.args(["eval", "--model", "efficientnet_b0", "--device", "cpu"])
            .arg("--weights")
            .arg(weights)
            .arg("--data")
            .arg(data)
            .args(["--workers", &self.workers.to_string()])
            .args(["--batch-size", &self.batch_size.to_string()])
            .arg("--json")
            .arg(&report_path);
        run_captured(cmd, "harness eval")?;
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&report_path)
                .map_err(Error::io(format!("reading {}", report_path.display())))?,
        )
        .map_err(|e| Error::failed(format!("harness report: {e}")))?;
        let evaluated = report["dataset"]["num_evaluated"].as_f64().unwrap_or(0.0);
        Ok(evaluated
            / report["performance"]["wall_seconds"]
                .as_f64()
                .unwrap_or(f64::NAN))
    }
}

/// The harness's preprocessing on one core, timed inside the process like
/// the PIL loop (decode + preprocess only: no start-up, no .npy writes).
fn harness_preprocess(binary: &Path, images: &[PathBuf], scratch: &Path) -> Result<f64> {
    let mut cmd = Command::new(binary);
    cmd.args(["preprocess", "--model", "efficientnet_b0", "--out"])
        .arg(scratch.join("x.npy"))
        .args(images);
    let out = run_captured(cmd, "harness preprocess")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seconds = preprocess_seconds(&stderr).ok_or_else(|| {
        Error::failed(format!(
            "harness preprocess did not report its time: {stderr}"
        ))
    })?;
    Ok(images.len() as f64 / seconds)
}

/// The seconds of `preprocessed N images in S s on one thread`.
fn preprocess_seconds(stderr: &str) -> Option<f64> {
    stderr.lines().find_map(|l| {
        l.strip_prefix("preprocessed ")?
            .split_once(" images in ")?
            .1
            .split_once(" s")?
            .0
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_harness_timing_line() {
        let err = "warming up\npreprocessed 300 images in 0.512345 s on one thread\n";
        assert_eq!(super::preprocess_seconds(err), Some(0.512345));
        assert_eq!(super::preprocess_seconds("error: no such file"), None);
    }
}
