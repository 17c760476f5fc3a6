//! One container path, against the real Docker engine (no mocks): the
//! gate's one-shot containers are `up`'s container in one-shot mode.
//!
//! - `cargo xtask check` on an environment with `gpus: none` creates a
//!   container without DeviceRequests, with the same ShmSize, Ulimits and
//!   IpcMode as the container `cargo xtask up` creates for that environment
//!   (both inspected on the engine while they exist), and leaves no
//!   container behind;
//! - `gpus:` is resolved against the daemon as in `up`: a CUDA check in an
//!   environment that gets no GPU is a typed error (exit 2 for `gpus: none`,
//!   6 when the engine cannot serve the request), never "all GPUs";
//! - a one-shot run whose start fails leaves no container.
//!
//! The image: any image with a shell does. Each test imports a tiny one
//! (`docker import`) made of this host's `/bin/sh`, `/bin/sleep` and libc,
//! with a fake `/usr/local/bin/harness` that sleeps a few seconds (so the
//! container can be inspected while it runs) and prints no report. It is
//! labelled as torchenv's, tagged uniquely and removed by a Drop guard, like
//! the containers, state dirs and temp specs of the test. Never skipped.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::models::HostConfig;
use xtask::docker::run::LABEL_ONE_SHOT;
use xtask::docker::{Docker, LABEL_ENV, LABEL_MANAGED_BY, MANAGED_BY};
use xtask::gate::check::{container_resources, Device};
use xtask::launch::plan::{ContainerPlan, OneShot, Resources};
use xtask::spec::Spec;

mod common;
use common::tiny_image::TinyImage;

const USER: &str = "tcpath";

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "cp{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn docker() -> Docker {
    rt().block_on(Docker::connect()).expect("a Docker engine")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// A tiny image labelled as torchenv's, whose `harness` sleeps 4 s and
/// writes no report.
fn shell_image() -> TinyImage {
    TinyImage::new(
        format!("torchenv-test/shell:{}", unique("img")),
        &[(
            "usr/local/bin/harness",
            b"#!/bin/sh\nsleep 4\necho 'fake harness: no report'\n",
            0o755,
        )],
        &[format!("LABEL {LABEL_MANAGED_BY}={MANAGED_BY}")],
    )
}

/// A temporary spec with one environment (no Jupyter, no SSH, so any image
/// that keeps running is ready); its containers and state are removed on
/// drop.
struct TestEnv {
    dir: tempfile::TempDir,
    name: String,
}

impl TestEnv {
    fn new(tag: &str, gpus: &str) -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let name = unique(tag);
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("weights.pth"), b"not weights").unwrap();
        let spec = format!(
            "version: 1\ndefault: {name}\nenvironments:\n  {name}:\n    torch: 2.6.0\n    torchvision: 0.21.0\n    workspace: ./ws\n    shm_size: 1g\n    ipc: private\n    gpus: {gpus}\n    jupyter: {{ enabled: false }}\n    ssh: {{ enabled: false }}\n    harness: {{ dataset: ./data }}\n"
        );
        std::fs::write(dir.path().join("environments.yaml"), spec).unwrap();
        TestEnv { dir, name }
    }

    fn spec_path(&self) -> PathBuf {
        self.dir.path().join("environments.yaml")
    }

    fn spec(&self) -> Spec {
        Spec::load(&self.spec_path()).unwrap()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.arg("--spec")
            .arg(self.spec_path())
            .args(args)
            .env("USER", USER)
            // The name comes from USER only for a uid without a passwd
            // entry (root's is `root`), as in the launch tests.
            .env("TORCHENV_UID", "1234")
            .env("TORCHENV_GID", "1234")
            .env("XDG_STATE_HOME", self.state())
            .env_remove("TORCHENV_IMAGE")
            .env_remove("TORCHENV_HOST_HARNESS");
        c
    }

    fn up_container(&self) -> String {
        format!("torchenv-{}-{USER}", self.name)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let d = docker();
        let name = self.name.clone();
        rt().block_on(async {
            for c in d
                .list_managed_containers(&[(LABEL_ENV, &name)])
                .await
                .unwrap_or_default()
            {
                if let Some(id) = c.id {
                    let _ = d.remove_container(&id).await;
                }
            }
            // `up`'s own network (named like its container).
            let _ = d.remove_network(&format!("torchenv-{name}-{USER}")).await;
        });
    }
}

fn host_config(d: &Docker, container: &str) -> HostConfig {
    rt().block_on(d.inspect_container(container))
        .unwrap()
        .unwrap_or_else(|| panic!("no container {container}"))
        .host_config
        .unwrap()
}

/// The one-shot containers of `env` now on the engine.
fn one_shots(d: &Docker, env: &str) -> Vec<String> {
    rt().block_on(d.list_managed_containers(&[(LABEL_ONE_SHOT, "gate"), (LABEL_ENV, env)]))
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

fn is_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_none_or(Vec::is_empty)
}

#[test]
fn check_with_gpus_none_runs_ups_container_without_device_requests() {
    let d = docker();
    let image = shell_image();
    let env = TestEnv::new("none", "none");

    // `up`'s container.
    let up = env
        .cmd(&["up", "--image", &image.tag, "--timeout", "60"])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let up_hc = host_config(&d, &env.up_container());

    // The gate's container, inspected while the fake harness sleeps.
    let weights = format!(
        "efficientnet_lite0={}",
        env.dir.path().join("weights.pth").display()
    );
    let baselines = env.dir.path().join("baselines");
    let mut check = env
        .cmd(&["check", "--image", &image.tag, "--weights", &weights])
        .arg("--baselines")
        .arg(&baselines)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // A one-shot container may end between the listing and the inspection
    // (the fake harness's first run is `cuda`); the next one is taken then.
    let gate_hc = loop {
        let found = one_shots(&d, &env.name)
            .into_iter()
            .find_map(|id| rt().block_on(d.inspect_container(&id)).ok().flatten());
        if let Some(c) = found {
            break c.host_config.unwrap();
        }
        if started.elapsed() > Duration::from_secs(60) || check.try_wait().unwrap().is_some() {
            let out = check.wait_with_output().unwrap();
            panic!(
                "no gate container appeared:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = check.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    // (a) no GPUs asked for.
    assert!(is_empty(&gate_hc.device_requests), "{gate_hc:?}");
    assert!(is_empty(&up_hc.device_requests), "{up_hc:?}");
    // (b) the same shared memory, IPC and ulimits as `up`'s container.
    assert_eq!(gate_hc.shm_size, up_hc.shm_size);
    assert_eq!(gate_hc.shm_size, Some(1 << 30));
    assert_eq!(gate_hc.ipc_mode, up_hc.ipc_mode);
    assert_eq!(gate_hc.ulimits, up_hc.ulimits);
    // One-shot: no network, no published ports, inputs read-only.
    assert_eq!(gate_hc.network_mode.as_deref(), Some("none"));
    assert!(gate_hc.port_bindings.as_ref().is_none_or(|p| p.is_empty()));
    let mounts = gate_hc.mounts.unwrap();
    let ro = |target: &str| {
        mounts
            .iter()
            .find(|m| m.target.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("no mount at {target}: {mounts:?}"))
            .read_only
            .unwrap_or(false) // the engine omits `false`
    };
    assert!(ro("/data"));
    assert!(!ro("/out"));

    // The fake harness ran (and printed no report); nothing is left behind.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("without a report"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("harness cuda exited 0"),
        "{stdout}\n{stderr}"
    );
    assert!(one_shots(&d, &env.name).is_empty());
}

#[test]
fn cuda_check_without_gpus_is_a_typed_error() {
    let d = docker();
    let support = rt().block_on(d.gpu_support()).unwrap();
    // `gpus: none` and a CUDA check contradict each other: exit 2, naming
    // the environment and its `gpus:`.
    let env = TestEnv::new("cuda-none", "none");
    let out = env
        .cmd(&[
            "check",
            "--image",
            "torchenv-test/never-used:x",
            "--device",
            "cuda",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&env.name) && stderr.contains("gpus: none"),
        "{stderr}"
    );
    assert!(one_shots(&d, &env.name).is_empty());

    if support.any() {
        return; // the rest needs an engine without GPUs
    }
    // `auto` resolves to none on this engine: exit 6 for a CUDA check.
    let spec = TestEnv::new("cuda-auto", "auto");
    let e = rt()
        .block_on(container_resources(
            &d,
            spec.spec().env(None).unwrap(),
            Device::Cuda,
            1,
        ))
        .unwrap_err();
    assert_eq!(e.exit_code(), 6, "{e}");
    // An explicit request the engine cannot serve: the same error as `up`
    // (exit 6), even for a CPU check.
    let all = TestEnv::new("cuda-all", "all");
    let out = all
        .cmd(&["check", "--image", "torchenv-test/never-used:x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    let up = all.cmd(&["up", "--image", "x"]).output().unwrap();
    assert_eq!(up.status.code(), Some(6));
}

#[test]
fn failed_one_shot_start_leaves_no_container() {
    let d = docker();
    let image = shell_image();
    let env = TestEnv::new("nostart", "none");
    let spec = env.spec();
    let e = spec.env(None).unwrap();
    let out = tempfile::tempdir().unwrap();
    let plan = |resources: &Resources| {
        ContainerPlan::one_shot(
            image.tag.clone(),
            e,
            resources,
            OneShot {
                cmd: vec!["/no/such/command".into()],
                inputs: vec![(e.harness.dataset.clone(), "/data".into())],
                output: (out.path().to_path_buf(), "/out".into()),
                user: None,
                purpose: "gate".into(),
            },
        )
    };
    let runtime = rt();
    let resources = runtime
        .block_on(container_resources(&d, e, Device::Cpu, 0))
        .unwrap();
    let p = plan(&resources);
    let name = p.name.clone();
    let r = runtime.block_on(xtask::launch::oneshot::run(&d, p, &resources.engine_id));
    assert!(r.is_err(), "{r:?}");
    assert!(runtime
        .block_on(d.inspect_container(&name))
        .unwrap()
        .is_none());
    assert!(one_shots(&d, &env.name).is_empty());
}

#[test]
fn one_shot_runs_without_a_ulimit_the_engine_refuses() {
    let d = docker();
    let image = shell_image();
    let env = TestEnv::new("ulimit", "none");
    let spec = env.spec();
    let e = spec.env(None).unwrap();
    let out = tempfile::tempdir().unwrap();
    // A made-up engine id: no refusal remembered yet, so every ulimit is
    // asked for; its memory file is removed at the end.
    let engine_id = unique("engine");
    let resources = Resources {
        engine_id: engine_id.clone(),
        gpu: xtask::launch::gpus::GpuPlan {
            requests: vec![],
            notice: None,
        },
        ulimits: xtask::launch::plan::ulimits_for(&engine_id),
    };
    assert_eq!(resources.ulimits, xtask::launch::plan::nvidia_ulimits());
    let plan = ContainerPlan::one_shot(
        image.tag.clone(),
        e,
        &resources,
        OneShot {
            cmd: vec!["/bin/sh".into(), "-c".into(), "echo ran".into()],
            inputs: vec![],
            output: (out.path().to_path_buf(), "/out".into()),
            user: Some("1234:1234".into()),
            purpose: "gate".into(),
        },
    );
    let r = rt().block_on(xtask::launch::oneshot::run(&d, plan, &engine_id));
    let memory = xtask::cache::root()
        .join("engines")
        .join(format!("{}.refused-ulimits", engine_id.replace('-', "_")));
    let refused = std::fs::read_to_string(&memory).unwrap_or_default();
    let _ = std::fs::remove_file(&memory);
    let r = r.expect("the one-shot run");
    assert_eq!((r.exit_code, r.stdout.trim()), (0, "ran"));
    // Whatever this engine refused was dropped and remembered.
    for name in refused.lines() {
        assert!(["memlock", "stack"].contains(&name), "{refused}");
    }
    eprintln!("engine refused: {:?}", refused.lines().collect::<Vec<_>>());
    assert!(one_shots(&d, &env.name).is_empty());
}

/// The engine's own answers, classified once in `docker::classify`: a taken
/// name, a start of a running container, a host port held by another
/// process.
#[test]
fn engine_refusals_are_typed_variants() {
    use xtask::docker::{Conflict, DockerError};
    use xtask::launch::plan::Service;
    use xtask::launch::ports::{ContainerPort, Published, Purpose};

    let d = docker();
    let image = shell_image();
    let env = TestEnv::new("refusals", "none");
    let spec = env.spec();
    let e = spec.env(None).unwrap().clone();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let runtime = rt();
    let resources = runtime
        .block_on(container_resources(&d, &e, Device::Cpu, 0))
        .unwrap();
    let who = xtask::launch::Identity {
        user: USER.into(),
        uid: 1234,
        gid: 1234,
    };
    let service = |ports: Vec<Published>| Service {
        who: who.clone(),
        ports,
        ssh_pubkey: None,
        keys_file: None,
        network: "bridge".into(),
        token_file: None,
        hash: "test".into(),
    };
    std::fs::create_dir_all(&e.workspace).unwrap();
    runtime.block_on(async {
        // A free container: created, started; a second start is NotModified,
        // a second create of the name a NameInUse conflict.
        let name = format!("torchenv-{}-a", env.name);
        let plan = ContainerPlan::service(
            name.clone(),
            image.tag.clone(),
            e.clone(),
            &resources,
            service(vec![]),
        );
        d.create_container(&name, plan.body()).await.unwrap();
        let started = d.start_container(&name).await;
        // (a refused ulimit here would be the engine's; `up` drops it)
        if !matches!(started, Err(DockerError::UlimitRefused { .. })) {
            started.unwrap();
            // bollard answers 304 (already running) as Ok; either is fine.
            let again = d.start_container(&name).await;
            assert!(
                matches!(again, Ok(()) | Err(DockerError::NotModified { .. })),
                "{again:?}"
            );
        }
        assert!(matches!(
            d.create_container(&name, plan.body()).await,
            Err(DockerError::Conflict {
                reason: Conflict::NameInUse,
                ..
            })
        ));
        d.remove_container(&name).await.unwrap();
        assert!(d.inspect_container(&name).await.unwrap().is_none());

        // A host port another process holds.
        let name = format!("torchenv-{}-b", env.name);
        let published = Published {
            host_ip: "127.0.0.1".parse().unwrap(),
            host_port: port,
            container: ContainerPort::JUPYTER,
            purpose: Purpose::Jupyter,
        };
        let mut plan = ContainerPlan::service(
            name.clone(),
            image.tag.clone(),
            e.clone(),
            &resources,
            service(vec![published]),
        );
        plan.ulimits.clear(); // only the port may be refused
        d.create_container(&name, plan.body()).await.unwrap();
        let r = d.start_container(&name).await;
        d.remove_container(&name).await.unwrap();
        match r {
            Err(DockerError::PortTaken { port: p, .. }) => assert_eq!(p, Some(port)),
            other => panic!("expected PortTaken, got {other:?}"),
        }
    });
    drop(held);
}
