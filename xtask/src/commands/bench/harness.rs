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

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::harness::{self, venv_python};
use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::lock;

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

impl BenchHarness {
    pub fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let env = spec.env(self.env.as_deref())?;
        let locked = lock::check_fresh(&spec, &lock, env)?;
        let build = harness::build(locked)?;
        let python = venv_python(&build.venv);

        let scratch = tempfile::tempdir().map_err(Error::io("creating a scratch dir"))?;
        let images = replicate(
            &env.harness.dataset,
            &scratch.path().join("data"),
            self.copies,
        )?;
        let weights = scratch.path().join("b0.pth");
        let mut cmd = Command::new(&python);
        cmd.arg("-c").arg(format!(
            "import torch; from torchvision.models import efficientnet_b0; torch.manual_seed(0); \
             torch.save(efficientnet_b0().state_dict(), {:?})",
            weights.display().to_string()
        ));
        crate::process::run_logged(cmd, "writing seeded EfficientNet-B0 weights")?;
        eprintln!(
            "bench: {} images, {} workers, batch {}",
            images.len(),
            self.workers,
            self.batch_size
        );

        // PyTorch-Python.
        let mut cmd = Command::new(&python);
        cmd.arg(harness::crate_dir().join("python/bench_reference.py"))
            .arg(&weights)
            .arg(self.workers.to_string())
            .arg(self.batch_size.to_string())
            .args(&images);
        let out = output(cmd, "PyTorch-Python reference")?;
        let py: serde_json::Value = serde_json::from_slice(&out)
            .map_err(|e| Error::failed(format!("reference output is not JSON: {e}")))?;
        let py_eval =
            py["images"].as_f64().unwrap_or(0.0) / py["eval_seconds"].as_f64().unwrap_or(f64::NAN);
        let py_pre = images.len() as f64 / py["preprocess_seconds"].as_f64().unwrap_or(f64::NAN);

        // Rust harness, end to end.
        let report_path = scratch.path().join("report.json");
        let mut cmd = Command::new(&build.binary);
        cmd.args([
            "eval",
            "--model",
            "efficientnet_b0",
            "--device",
            "cpu",
            "--weights",
        ])
        .arg(&weights)
        .arg("--data")
        .arg(scratch.path().join("data"))
        .args([
            "--workers",
            &self.workers.to_string(),
            "--batch-size",
            &self.batch_size.to_string(),
        ])
        .arg("--json")
        .arg(&report_path);
        output(cmd, "harness eval")?;
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&report_path)
                .map_err(Error::io(format!("reading {}", report_path.display())))?,
        )
        .map_err(|e| Error::failed(format!("harness report: {e}")))?;
        let rs_n = report["dataset"]["num_evaluated"].as_f64().unwrap_or(0.0);
        let rs_eval = rs_n
            / report["performance"]["wall_seconds"]
                .as_f64()
                .unwrap_or(f64::NAN);

        // Rust preprocessing, one core, timed inside the process like the
        // PIL loop (decode + preprocess only: no start-up, no .npy writes).
        let mut cmd = Command::new(&build.binary);
        cmd.args(["preprocess", "--model", "efficientnet_b0", "--out"])
            .arg(scratch.path().join("x.npy"))
            .args(&images);
        let out = run_checked(cmd, "harness preprocess")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let rs_pre_seconds = preprocess_seconds(&stderr).ok_or_else(|| {
            Error::failed(format!(
                "harness preprocess did not report its time: {stderr}"
            ))
        })?;
        let rs_pre = images.len() as f64 / rs_pre_seconds;

        println!(
            "bench harness ({} images, CPU, torch {}):",
            images.len(),
            py["torch"].as_str().unwrap_or("?")
        );
        println!(
            "  {:<34} {:>10} {:>10} {:>7}",
            "", "harness", "PyTorch", "ratio"
        );
        println!(
            "  {:<34} {:>10.1} {:>10.1} {:>7.2}",
            format!("end-to-end eval img/s ({} workers)", self.workers),
            rs_eval,
            py_eval,
            rs_eval / py_eval
        );
        println!(
            "  {:<34} {:>10.1} {:>10.1} {:>7.2}",
            "preprocessing img/s per core",
            rs_pre,
            py_pre,
            rs_pre / py_pre
        );
        println!("  goals: end-to-end >= 1.3, preprocessing per core >= 2");
        Ok(())
    }
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

/// Runs `cmd` (logged), failing with its stderr unless it succeeds.
fn run_checked(mut cmd: Command, what: &str) -> Result<std::process::Output> {
    eprintln!("  $ {}", crate::process::describe_short(&cmd));
    let out = cmd.output().map_err(Error::io(format!("running {what}")))?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

/// [`run_checked`]'s standard output.
fn output(cmd: Command, what: &str) -> Result<Vec<u8>> {
    Ok(run_checked(cmd, what)?.stdout)
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
