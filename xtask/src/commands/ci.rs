//! `cargo xtask ci [--envs a,b] [--expect-gpus N] [--out DIR] [--slurm …]`.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::gate::{print_all, verdict, Setup, Sources};
use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::gate::{ci, Device};
use crate::progress::Progress;
use crate::slurm::array::{self, Follow, Variant};
use crate::slurm::script::ArrayJob;
use crate::slurm::Slurm;
use crate::spec::Env;

/// Build and check environments, compare them with each other, write
/// DIR/summary.md and DIR/junit.xml. Exit 0 only if every env passes.
/// With --slurm each environment's check is a task of a Slurm job array
/// (one per environment and GPU type), run on the cluster's nodes.
#[derive(clap::Args)]
pub struct Ci {
    /// Environments, comma-separated (default: all but those with
    /// `harness: { ci: false }`).
    #[arg(long, value_delimiter = ',')]
    envs: Vec<String>,
    /// Device for `harness eval` (default: cuda with --expect-gpus > 0, else cpu).
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// Fail unless this many GPUs pass `harness cuda` in each env.
    #[arg(long, default_value_t = 0)]
    expect_gpus: u32,
    /// Where summary.md and junit.xml go.
    #[arg(long, default_value = "ci-out")]
    out: PathBuf,
    #[command(flatten)]
    sources: Sources,
    #[command(flatten)]
    cluster: SlurmArgs,
}

/// `ci --slurm` and its options.
#[derive(clap::Args, Default)]
struct SlurmArgs {
    /// Run each environment's check as a Slurm array task (`check ENV
    /// --no-build` on the node: the image must be on the node's engine)
    /// and collect the results here. Slurm's commands must reach the
    /// cluster (`SLURM_CONF`); checkout, binary and --out on storage the
    /// nodes share.
    #[arg(long)]
    slurm: bool,
    /// Print the sbatch script and the sbatch command lines; submit nothing.
    #[arg(long, requires = "slurm")]
    dry_run: bool,
    /// sbatch --partition.
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// sbatch --account.
    #[arg(long, requires = "slurm")]
    account: Option<String>,
    /// sbatch --time per task (`30`, `1:00:00`): a task past it fails.
    #[arg(long, requires = "slurm")]
    time: Option<String>,
    /// sbatch --gres per task, e.g. `gpu:1`.
    #[arg(long, requires = "slurm")]
    gres: Option<String>,
    /// GPU types, comma-separated: one submission per type with
    /// `--gres=gpu:TYPE:N` (N from --gres gpu:N, default 1); results
    /// named ENV@TYPE.
    #[arg(long, requires = "slurm", value_delimiter = ',')]
    gpu_types: Vec<String>,
    /// A shell line each task runs before its check (`module load docker`);
    /// repeatable.
    #[arg(long, requires = "slurm")]
    setup: Vec<String>,
    /// Where the script, the tasks' logs and results go (default:
    /// OUT/slurm); the nodes must be able to write there.
    #[arg(long, requires = "slurm")]
    workdir: Option<PathBuf>,
    /// Cancel the tasks not ended after this many seconds (default: wait).
    #[arg(long, requires = "slurm")]
    max_wait: Option<u64>,
    /// Seconds between reads of the queue.
    #[arg(long, requires = "slurm", default_value_t = 2)]
    poll: u64,
}

impl Ci {
    /// Every environment of the spec `ci` runs by default (see `envs`) on
    /// `device`, results under `out`.
    pub fn every_env(device: Device, out: PathBuf) -> Ci {
        Ci {
            envs: Vec::new(),
            device: Some(device),
            expect_gpus: 0,
            out,
            sources: Sources::default(),
            cluster: SlurmArgs::default(),
        }
    }

    /// Checks here, one environment after the other.
    fn run_here(&self, ctx: &Ctx, spec: &crate::spec::Spec, envs: &[&Env]) -> Result<()> {
        let mut setup = Setup::new(ctx, spec, &self.sources, self.device, self.expect_gpus)
            .keep_reports(&self.out);
        let result = ctx.block_on(async { Ok(ci::run(envs, &mut setup).await) })?;
        setup.print(&result);
        self.write(&result)?;
        setup.finish(&result)
    }

    fn write(&self, result: &ci::CiResult) -> Result<()> {
        for p in &result.pairs {
            println!("{}: {}", p.case.name, p.case.message);
        }
        result
            .write(&self.out)
            .map_err(Error::io(format!("writing {}", self.out.display())))?;
        println!(
            "wrote {} and {}",
            self.out.join("summary.md").display(),
            self.out.join("junit.xml").display()
        );
        Ok(())
    }

    /// Checks as Slurm array tasks, collected here.
    fn run_slurm(&self, ctx: &Ctx, envs: &[&Env]) -> Result<()> {
        if self.sources.host_harness.is_some() {
            return Err(Error::Usage {
                message: "--slurm runs the check in each node's containers; --host-harness cannot go with it".into(),
                help: None,
            });
        }
        let job = self.array_job(ctx, envs)?;
        let variants = self.variants()?;
        if self.cluster.dry_run {
            print!("{}", array::dry_run(&job, &variants));
            return Ok(());
        }
        clear_old_tasks(&job.workdir)?;
        let follow = Follow {
            poll: Duration::from_secs(self.cluster.poll.max(1)),
            max_wait: self.cluster.max_wait.map(Duration::from_secs),
        };
        let progress = Progress::new();
        let results = ctx.block_on(async {
            Ok(array::run(&Slurm, &job, &variants, &follow, &progress).await?)
        })?;
        // The environments under the names their results carry (ENV@TYPE
        // per GPU type), so that each pair is compared with its own
        // tolerances.
        let named: Vec<Env> = variants
            .iter()
            .flat_map(|v| {
                envs.iter().map(move |e| {
                    let mut e = (*e).clone();
                    if let Some(l) = &v.label {
                        e.name = array::labelled(&e.name, l);
                    }
                    e
                })
            })
            .collect();
        let named: Vec<&Env> = named.iter().collect();
        for r in &results {
            ci::log_cases(r);
        }
        let result = ci::CiResult::of(&named, results);
        print_all(&result);
        self.write(&result)?;
        verdict(&result, None)
    }

    /// The array's script inputs: this binary and checkout, absolute paths.
    fn array_job(&self, ctx: &Ctx, envs: &[&Env]) -> Result<ArrayJob> {
        let abs = |p: &Path| {
            std::path::absolute(p).map_err(Error::io(format!("resolving {}", p.display())))
        };
        let mut check_args = Vec::new();
        if let Some(d) = self.device {
            check_args.extend(["--device".to_string(), d.as_str().to_string()]);
        }
        if self.expect_gpus > 0 {
            check_args.extend(["--expect-gpus".to_string(), self.expect_gpus.to_string()]);
        }
        if let Some(b) = &self.sources.baselines {
            check_args.extend(["--baselines".to_string(), abs(b)?.display().to_string()]);
        }
        for (model, path) in &self.sources.weights {
            check_args.extend([
                "--weights".to_string(),
                format!("{model}={}", abs(path)?.display()),
            ]);
        }
        if let Some(i) = &self.sources.image {
            check_args.extend(["--image".to_string(), i.clone()]);
        }
        let out = abs(&self.out)?;
        Ok(ArrayJob {
            name: "torchenv-gate".into(),
            envs: envs.iter().map(|e| e.name.clone()).collect(),
            workdir: match &self.cluster.workdir {
                Some(w) => abs(w)?,
                None => out.join("slurm"),
            },
            checkout: std::env::current_dir().map_err(Error::io("reading the current folder"))?,
            program: std::env::current_exe().map_err(Error::io("finding this program"))?,
            spec: abs(ctx.spec_path())?,
            lock: abs(ctx.lock_path())?,
            check_args,
            partition: self.cluster.partition.clone(),
            account: self.cluster.account.clone(),
            time: self.cluster.time.clone(),
            gres: self.cluster.gres.clone(),
            setup: self.cluster.setup.clone(),
        })
    }

    /// One submission, or one per `--gpu-types` type.
    fn variants(&self) -> Result<Vec<Variant>> {
        if self.cluster.gpu_types.is_empty() {
            return Ok(vec![Variant {
                label: None,
                sbatch_args: Vec::new(),
            }]);
        }
        let count = match self.cluster.gres.as_deref() {
            None => "1".to_string(),
            Some(g) => match g.strip_prefix("gpu:") {
                Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => n.to_string(),
                _ => {
                    return Err(Error::Usage {
                        message: format!("--gres {g} with --gpu-types: expected gpu:N (the type comes from --gpu-types)"),
                        help: None,
                    })
                }
            },
        };
        Ok(self
            .cluster
            .gpu_types
            .iter()
            .map(|t| Variant {
                label: Some(t.clone()),
                sbatch_args: vec![format!("--gres=gpu:{t}:{count}")],
            })
            .collect())
    }
}

/// Removes the logs and results of earlier runs from the work folder.
fn clear_old_tasks(workdir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(workdir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.starts_with("task-") && name.ends_with(".log"))
            || (name.starts_with("result-") && name.ends_with(".json"))
        {
            std::fs::remove_file(e.path())
                .map_err(Error::io(format!("removing {}", e.path().display())))?;
        }
    }
    Ok(())
}

impl Run for Ci {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let envs: Vec<&Env> = if self.envs.is_empty() {
            spec.environments
                .values()
                .filter(|e| e.harness.ci)
                .collect()
        } else {
            self.envs
                .iter()
                .map(|n| spec.env(Some(n)))
                .collect::<std::result::Result<_, _>>()?
        };
        if self.cluster.slurm {
            self.run_slurm(ctx, &envs)
        } else {
            self.run_here(ctx, &spec, &envs)
        }
    }
}
