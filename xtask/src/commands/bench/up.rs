//! `cargo xtask bench up [ENV]`: how much `up` costs over a raw container
//! start. Both run in this process, warm (the image exists), with the same
//! readiness probe (Jupyter `/api/status` with token + SSH login); each
//! repetition starts from no container; the medians are compared.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::time::{Duration, Instant};

use super::median;
use crate::commands::{Ctx, Run};
use crate::docker::Docker;
use crate::error::{Error, Result};
use crate::launch::gpus::GpuPlan;
use crate::launch::plan::{ContainerPlan, Resources, Service};
use crate::launch::ports::{self, Purpose};
use crate::launch::ready::{self, WaitFor};
use crate::launch::up::Up;
use crate::launch::{container_name, down::Down, jupyter, ssh, Identity};
use crate::spec::Spec;

/// Warm `up`-to-ready time against a raw container start of the same
/// image with the same readiness probe (medians).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchUp {
    /// Environment name (default: the spec's `default:`).
    env: Option<String>,
    /// Repetitions.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Use this image instead of the environment's own.
    #[arg(long, env = "TORCHENV_IMAGE")]
    image: Option<String>,
}

/// Medians of one bench.
#[derive(Debug, Clone, Copy)]
pub struct BenchResult {
    pub up: Duration,
    pub raw: Duration,
}

impl Run for BenchUp {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let spec = ctx.spec()?;
        let r = ctx.block_on(async {
            let docker = ctx.docker().await?;
            self.bench(&docker, &spec, ctx).await
        })?;
        println!(
            "up to ready (median of {}):      {:.2} s",
            self.reps,
            r.up.as_secs_f64()
        );
        println!(
            "raw docker run to ready (median): {:.2} s",
            r.raw.as_secs_f64()
        );
        println!(
            "ratio up / raw:                   {:.2}",
            r.up.as_secs_f64() / r.raw.as_secs_f64()
        );
        Ok(())
    }
}

impl BenchUp {
    pub async fn bench(&self, docker: &Docker, spec: &Spec, ctx: &Ctx) -> Result<BenchResult> {
        let env = spec.env(self.env.as_deref())?.clone();
        let up = Up {
            env: Some(env.name.clone()),
            auto_ports: false,
            timeout: crate::launch::up::DEFAULT_TIMEOUT,
            image: self.image.clone(),
        };
        let down = Down {
            env: Some(env.name.clone()),
            ..Default::default()
        };
        // Warm-up: builds the image if needed, checks everything works.
        let ready = up.up(docker, spec, ctx.lock_path()).await?;
        let started = docker
            .inspect_container(&ready.container)
            .await?
            .ok_or_else(|| Error::failed("the started container vanished"))?;
        let image = started
            .config
            .and_then(|c| c.image)
            .ok_or_else(|| Error::failed("no image on the started container"))?;
        // The raw run uses the ulimits `up` ended up with.
        let ulimits = started
            .host_config
            .and_then(|h| h.ulimits)
            .unwrap_or_default();
        down.down(docker, ctx.spec_path()).await?;

        let mut ups = Vec::new();
        let mut raws = Vec::new();
        for _ in 0..self.reps.max(1) {
            let t = Instant::now();
            up.up(docker, spec, ctx.lock_path()).await?;
            ups.push(t.elapsed());
            down.down(docker, ctx.spec_path()).await?;
            raws.push(self.raw(docker, &env, &image, &ulimits).await?);
        }
        Ok(BenchResult {
            up: median(ups),
            raw: median(raws),
        })
    }

    /// A plain create + start of the same image with the runtime inputs the
    /// image needs (token file, key, uid) and the same probes; none of
    /// `up`'s checks.
    async fn raw(
        &self,
        docker: &Docker,
        env: &crate::spec::Env,
        image: &str,
        ulimits: &[bollard::models::ResourcesUlimits],
    ) -> Result<Duration> {
        let who = Identity::current()?;
        let name = format!("{}-rawbench", container_name(&env.name, &who));
        let state = crate::launch::ensure_state_dir(&env.name)?;
        let token = jupyter::read_token(&state).ok_or_else(|| Error::failed("no token file"))?;
        let key = env
            .ssh
            .as_ref()
            .and_then(|s| ssh::find_key(s).ok().flatten());
        let keys_file = match &key {
            Some(k) => Some(
                ssh::write_authorized_keys(&state, &k.public)
                    .map_err(Error::io("write the SSH key file"))?,
            ),
            None => None,
        };
        let network = crate::launch::network::ensure(docker, &env.name, &who).await?;
        let service = Service {
            ports: ports::published(env, key.is_some()),
            who,
            ssh_pubkey: key.as_ref().map(|k| k.public.clone()),
            keys_file,
            network,
            token_file: Some(state.join(jupyter::TOKEN_FILE)),
            hash: "bench".into(),
        };
        let mut plan = ContainerPlan::service(
            name.clone(),
            image.to_string(),
            env.clone(),
            &Resources {
                engine_id: docker.host.clone(),
                gpu: GpuPlan {
                    requests: vec![],
                    notice: None,
                },
                ulimits: Vec::new(),
            },
            service,
        );
        plan.ulimits = ulimits.to_vec();
        let t = Instant::now();
        docker.create_container(&name, plan.body()).await?;
        docker.start_container(&name).await?;
        let mut waits = vec![WaitFor::Running];
        for p in plan.ports() {
            match p.purpose {
                Purpose::Jupyter => waits.push(WaitFor::JupyterApi {
                    host: p.connect_ip().to_string(),
                    port: p.host_port,
                    token: token.clone(),
                }),
                Purpose::Ssh => waits.push(WaitFor::Ssh {
                    host: p.connect_ip().to_string(),
                    port: p.host_port,
                    aliases: Vec::new(),
                    identity: key.as_ref().and_then(|k| k.identity.clone()),
                    state_dir: state.clone(),
                }),
                Purpose::Extra => {}
            }
        }
        let result = ready::wait(
            docker,
            &env.name,
            &name,
            &waits,
            crate::launch::up::DEFAULT_TIMEOUT,
        )
        .await;
        let elapsed = t.elapsed();
        docker.remove_container(&name).await?;
        result?;
        Ok(elapsed)
    }
}
