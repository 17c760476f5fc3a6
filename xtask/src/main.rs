//! `cargo xtask`: dispatches to one module per task.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// torchenv: reproducible PyTorch-CUDA environments from environments.yaml.
#[derive(Parser)]
#[command(bin_name = "cargo xtask", version, about)]
struct Cli {
    /// The environment spec.
    #[arg(long, global = true, default_value = xtask::spec::SPEC_FILE, env = "TORCHENV_SPEC")]
    spec: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the harness in an environment's container (`harness cuda`, then
    /// `harness eval` per model) and compare with fixtures/baselines.
    /// Exit 0 pass, 8 regression or missing baseline (a `.snap.new` is
    /// written; accept with `cargo insta review`).
    Check {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
        /// Device for `harness eval` (default: cuda with --expect-gpus > 0, else cpu).
        #[arg(long, value_enum)]
        device: Option<xtask::gate::Device>,
        /// Fail unless this many GPUs pass `harness cuda`.
        #[arg(long, default_value_t = 0)]
        expect_gpus: u32,
        #[command(flatten)]
        sources: GateSources,
    },
    /// Build and check environments, compare them with each other, write
    /// DIR/summary.md and DIR/junit.xml. Exit 0 only if every env passes.
    Ci {
        /// Environments, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        envs: Vec<String>,
        /// Device for `harness eval` (default: cuda with --expect-gpus > 0, else cpu).
        #[arg(long, value_enum)]
        device: Option<xtask::gate::Device>,
        /// Fail unless this many GPUs pass `harness cuda` in each env.
        #[arg(long, default_value_t = 0)]
        expect_gpus: u32,
        /// Where summary.md and junit.xml go.
        #[arg(long, default_value = "ci-out")]
        out: PathBuf,
        #[command(flatten)]
        sources: GateSources,
    },
    /// Run the whole test suite (what CI runs): lint, harness build and
    /// tests, the default image, the xtask tests against Docker, the gate.
    Test {
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
    },
    /// List the environments of the spec.
    List,
    /// Print one environment with every default resolved.
    Show {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
    /// Resolve wheels (with sha256) and the base's Debian packages into
    /// environments.lock. Unchanged environments keep their entries.
    Lock {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
        /// Lock every environment.
        #[arg(long, conflicts_with = "env")]
        all: bool,
        /// Resolve again even when the spec did not change (newer wheels).
        #[arg(long)]
        upgrade: bool,
    },
    /// Build an environment's image from spec + lock, with no network in
    /// the build; does nothing when the image for these inputs exists.
    Build {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
        /// Build every environment.
        #[arg(long, conflicts_with = "env")]
        all: bool,
        /// Harness binary to put at /usr/local/bin/harness (last layer).
        #[arg(long)]
        harness: Option<PathBuf>,
        /// The lock (default: environments.lock beside the spec).
        #[arg(long, env = "TORCHENV_LOCK")]
        lock: Option<PathBuf>,
    },
    /// Start an environment (building its image if needed) and wait until
    /// Jupyter and SSH answer; prints how to connect. Idempotent.
    Up {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
        /// Replace taken host ports by free ones (and report them).
        #[arg(long)]
        auto_ports: bool,
        /// Seconds to wait for readiness before giving up (exit 7).
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Start this image instead of the environment's own.
        #[arg(long, env = "TORCHENV_IMAGE")]
        image: Option<String>,
    },
    /// Remove an environment's container (volumes and workspace are kept).
    Down {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
        /// Every torchenv container of this user.
        #[arg(long, conflicts_with = "env")]
        all: bool,
        /// Also remove the environment's torchenv-created named volumes.
        #[arg(long)]
        volumes: bool,
    },
    /// This user's environments: state, image, ports, GPUs, uptime.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// An interactive shell in a running environment.
    Shell {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
    },
    /// Run a command in a running environment; its exit code is ours.
    Exec {
        /// Environment name.
        env: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Print (or follow) an environment's container log.
    Logs {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
        /// Keep following.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Check this machine: Docker, NVIDIA runtime/CDI, driver vs CUDA,
    /// disk, bootstrap tools, apt sources.
    Doctor,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// Remove torchenv images and cache entries the spec + lock no longer use.
    Prune {
        /// Remove every torchenv image and cached wheel and rootfs.
        #[arg(long)]
        all: bool,
        /// Print what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// The lock (default: environments.lock beside the spec).
        #[arg(long, env = "TORCHENV_LOCK")]
        lock: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// End-to-end eval and per-core preprocessing speed of the harness
    /// against PyTorch-Python (PIL + torchvision + eager model), one run,
    /// same images, same libtorch, CPU.
    Harness {
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
    },
    /// Warm `up`-to-ready time against a raw container start of the same
    /// image with the same readiness probe (medians).
    Up {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
        /// Repetitions.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Use this image instead of the environment's own.
        #[arg(long, env = "TORCHENV_IMAGE")]
        image: Option<String>,
    },
}

/// Where `check`/`ci` get the harness, image, weights and baselines.
#[derive(clap::Args)]
struct GateSources {
    /// Run this harness binary on the host instead of in the container.
    #[arg(long, env = "TORCHENV_HOST_HARNESS")]
    host_harness: Option<PathBuf>,
    /// Check this image instead of the environment's own (built if needed).
    #[arg(long, env = "TORCHENV_IMAGE")]
    image: Option<String>,
    /// Weights of a model, MODEL=PATH (default: the locked weights).
    #[arg(long, value_parser = xtask::gate::parse_weights)]
    weights: Vec<(String, PathBuf)>,
    /// Baselines folder (default: fixtures/baselines beside the spec).
    #[arg(long)]
    baselines: Option<PathBuf>,
}

impl From<GateSources> for xtask::gate::Sources {
    fn from(s: GateSources) -> Self {
        xtask::gate::Sources {
            host_harness: s.host_harness,
            image: s.image,
            weights: s.weights,
            baselines: s.baselines,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up {
            env,
            auto_ports,
            timeout,
            image,
        } => xtask::launch::up::Up {
            env,
            auto_ports,
            timeout: std::time::Duration::from_secs(timeout),
            image,
        }
        .run(&cli.spec),
        Command::Down { env, all, volumes } => {
            xtask::launch::down::Down { env, all, volumes }.run(&cli.spec)
        }
        Command::Status { json } => xtask::launch::status::run(json),
        Command::Shell { env } => match xtask::launch::session::shell(&cli.spec, env.as_deref()) {
            Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => Err(e),
        },
        Command::Exec { env, cmd } => {
            match xtask::launch::session::exec(&cli.spec, Some(&env), &cmd) {
                Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => Err(e),
            }
        }
        Command::Logs { env, follow, tail } => {
            xtask::launch::session::logs(&cli.spec, env.as_deref(), follow, tail)
        }
        Command::Test { no_lint } => xtask::suite::Suite { no_lint }.run(&cli.spec),
        Command::Doctor => xtask::doctor::run(&cli.spec),
        Command::Bench {
            bench:
                Bench::Harness {
                    env,
                    copies,
                    workers,
                    batch_size,
                },
        } => xtask::bench_harness::BenchHarness {
            env,
            copies,
            workers,
            batch_size,
        }
        .run(&cli.spec),
        Command::Bench {
            bench: Bench::Up { env, reps, image },
        } => xtask::bench_up::BenchUp { env, reps, image }.run(&cli.spec),
        Command::Check {
            env,
            device,
            expect_gpus,
            sources,
        } => xtask::gate::Check {
            env,
            device,
            expect_gpus,
            sources: sources.into(),
        }
        .run(&cli.spec),
        Command::Ci {
            envs,
            device,
            expect_gpus,
            out,
            sources,
        } => xtask::gate::Ci {
            envs,
            device,
            expect_gpus,
            out,
            sources: sources.into(),
        }
        .run(&cli.spec),
        Command::List => xtask::tasks::list(&cli.spec),
        Command::Show { env, json } => xtask::tasks::show(&cli.spec, env.as_deref(), json),
        Command::Lock { env, all, upgrade } => {
            xtask::tasks::lock(&cli.spec, env.as_deref(), all, upgrade)
        }
        Command::Build {
            env,
            all,
            harness,
            lock,
        } => xtask::image::Build {
            spec: &cli.spec,
            lock: &lock.unwrap_or_else(|| cli.spec.with_file_name(xtask::lock::LOCK_FILE)),
            env: env.as_deref(),
            all,
            harness: harness.as_deref(),
        }
        .run(),
        Command::Prune { all, dry_run, lock } => xtask::prune::Prune {
            spec: &cli.spec,
            lock: &lock.unwrap_or_else(|| cli.spec.with_file_name(xtask::lock::LOCK_FILE)),
            all,
            dry_run,
        }
        .run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::from(code)
        }
    }
}
