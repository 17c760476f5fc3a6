//! `cargo xtask bench harness`: the Rust harness against PyTorch-Python
//! (PIL + torchvision transforms + eager model), one run, same images,
//! same libtorch (the environment's host venv), CPU.
//!
//! - end to end: images/s of the decode → preprocess → batched inference
//!   loop, the harness's `eval` vs a `DataLoader` with as many workers;
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

use crate::build::harness::{self, venv_python};
use crate::commands::{Ctx, Run};
use crate::error::{Error, Result};
use crate::lock;
use crate::process::{run_captured, run_logged};

/// End-to-end eval and per-core preprocessing speed of the harness
/// against PyTorch-Python (PIL + torchvision + eager model), one run,
/// same images, same libtorch, CPU.
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

/// Images per second of one side.
struct Speeds {
    eval: f64,
    preprocess: f64,
}

impl Run for BenchHarness {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let env = spec.env(self.env.as_deref())?;
        let locked = lock::check_fresh(&spec, &lock, env)?;
        let build = harness::build(locked)?;
        let python = venv_python(&build.venv);

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
        let (torch, py) = self.python_reference(&python, &weights, &images)?;
        let rs = Speeds {
            eval: self.harness_eval(&build.binary, &weights, &data, scratch.path())?,
            preprocess: harness_preprocess(&build.binary, &images, scratch.path())?,
        };
        println!(
            "bench harness ({} images, CPU, torch {torch}):",
            images.len()
        );
        println!(
            "  {:<34} {:>10} {:>10} {:>7}",
            "", "harness", "PyTorch", "ratio"
        );
        let row = |what: &str, rs: f64, py: f64| {
            println!("  {what:<34} {rs:>10.1} {py:>10.1} {:>7.2}", rs / py);
        };
        row(
            &format!("end-to-end eval img/s ({} workers)", self.workers),
            rs.eval,
            py.eval,
        );
        row("preprocessing img/s per core", rs.preprocess, py.preprocess);
        println!("  goals: end-to-end >= 1.3, preprocessing per core >= 2");
        Ok(())
    }
}

impl BenchHarness {
    /// PyTorch-Python: a `DataLoader` end to end, and a one-thread PIL loop
    /// timed around decode + preprocessing. Returns torch's version too.
    fn python_reference(
        &self,
        python: &Path,
        weights: &Path,
        images: &[PathBuf],
    ) -> Result<(String, Speeds)> {
        let mut cmd = Command::new(python);
        cmd.arg(harness::crate_dir().join("python/bench_reference.py"))
            .arg(weights)
            .arg(self.workers.to_string())
            .arg(self.batch_size.to_string())
            .args(images);
        let out = run_captured(cmd, "PyTorch-Python reference")?;
        let py: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::failed(format!("reference output is not JSON: {e}")))?;
        let seconds = |key: &str| py[key].as_f64().unwrap_or(f64::NAN);
        let speeds = Speeds {
            eval: py["images"].as_f64().unwrap_or(0.0) / seconds("eval_seconds"),
            preprocess: images.len() as f64 / seconds("preprocess_seconds"),
        };
        Ok((py["torch"].as_str().unwrap_or("?").to_string(), speeds))
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

/// Copies every image of an ImageFolder `copies` times into `dest`
/// (same class folders), returning the paths in sorted order.
fn replicate(src: &Path, dest: &Path, copies: usize) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut classes: Vec<_> = std::fs::read_dir(src)
        .map_err(Error::io(format!("reading {}", src.display())))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    classes.sort_by_key(|e| e.file_name());
    for class in classes {
        let to = dest.join(class.file_name());
        std::fs::create_dir_all(&to).map_err(Error::io(format!("creating {}", to.display())))?;
        let mut files: Vec<_> = std::fs::read_dir(class.path())
            .map_err(Error::io(format!("reading {}", class.path().display())))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        files.sort();
        for file in files {
            for i in 0..copies {
                let target = to.join(format!(
                    "{i:03}_{}",
                    file.file_name().unwrap().to_string_lossy()
                ));
                std::fs::copy(&file, &target)
                    .map_err(Error::io(format!("copying {}", file.display())))?;
                out.push(target);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::failed(format!("no images under {}", src.display())));
    }
    Ok(out)
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
