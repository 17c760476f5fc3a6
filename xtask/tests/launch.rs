//! The launch lifecycle against the real Docker engine (no mocks), on
//! temporary environments (`common::testenv`).

use std::net::TcpListener;

use xtask::launch::ready::http_status;

mod common;
use common::testenv::{free_port, rt, stderr, test_image, TestEnv, UID};

#[test]
fn up_jupyter_ssh_workspace_and_restart() {
    let t = TestEnv::new("main", "");
    let out = t.up();
    assert!(out.status.success(), "up failed: {}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = t.token();
    assert_eq!(token.len(), 64, "token is 32 random bytes, hex");
    assert!(stdout.contains(&format!("http://127.0.0.1:{}/lab?token={token}", t.jupyter)));
    assert!(
        stdout.contains("Host torchenv-"),
        "prints an ~/.ssh/config block"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(t.state().join("jupyter_token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Jupyter: 200 with the token, 403 without.
    rt().block_on(async {
        assert_eq!(
            http_status("127.0.0.1", t.jupyter, "/api/status", Some(&token))
                .await
                .unwrap(),
            200
        );
        assert_eq!(
            http_status("127.0.0.1", t.jupyter, "/api/status", None)
                .await
                .unwrap(),
            403
        );
    });
    // The token is not in the container's inspect-visible environment.
    let inspect = rt().block_on(async {
        let docker = xtask::docker::Docker::connect().await.unwrap();
        docker
            .inspect_container(&t.container())
            .await
            .unwrap()
            .unwrap()
    });
    let env_vars = inspect.config.unwrap().env.unwrap_or_default().join("\n");
    assert!(!env_vars.contains(&token));

    // SSH with the key runs torch; writes into the workspace as the host user.
    let o = t.ssh(
        "dev",
        &[],
        "python -c 'import torch' && id -u && echo data > /workspace/from-ssh.txt",
    );
    assert!(o.status.success(), "ssh: {}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), UID.to_string());
    let file = t.workspace().join("from-ssh.txt");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), UID);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), UID);

    // Passwords and root are refused.
    let o = t.ssh(
        "dev",
        &[
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ],
        "true",
    );
    assert!(!o.status.success());
    let o = t.ssh("root", &[], "true");
    assert!(!o.status.success(), "root login must be refused");

    // exec propagates the exit code; status lists the env.
    let o = t.run(&["exec", &t.name, "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = t.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(status
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["env"] == t.name.as_str() && s["state"] == "running"));

    // Idempotent: same spec, running → left alone.
    let o = t.up();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("already running"));

    // down, then up: the workspace file survives.
    let o = t.run(&["down", &t.name]);
    assert!(o.status.success());
    assert!(!t.container_exists());
    let o = t.up();
    assert!(o.status.success(), "second up: {}", stderr(&o));
    let o = t.ssh("dev", &[], "cat /workspace/from-ssh.txt");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "data");
}

#[test]
fn changed_spec_recreates_and_concurrent_ups_leave_one() {
    let t = TestEnv::new("conc", "");
    let image = test_image();
    let children: Vec<_> = (0..2)
        .map(|_| {
            t.cmd(&["up", "--image", image, "--timeout", "180"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut actions = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent up failed ({}): {}",
            out.status,
            stderr(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        actions.push(if stdout.contains("(created,") {
            "created"
        } else if stdout.contains("(already running,") {
            "already running"
        } else {
            panic!("neither created nor found running: {stdout}")
        });
    }
    // They took turns: one created it, the other found it running.
    actions.sort();
    assert_eq!(actions, ["already running", "created"]);
    let count = rt().block_on(async {
        let docker = xtask::docker::Docker::connect().await.unwrap();
        docker
            .list_managed_containers(&[("dev.torchenv.env", &t.name)])
            .await
            .unwrap()
            .len()
    });
    assert_eq!(count, 1);
    // A changed spec is recreated.
    let spec = std::fs::read_to_string(t.spec())
        .unwrap()
        .replace("shm_size: 1g", "shm_size: 2g");
    std::fs::write(t.spec(), spec).unwrap();
    let o = t.up();
    assert!(o.status.success());
    assert!(stderr(&o).contains("changed"), "says the spec changed");
}

#[test]
fn two_containers_have_different_host_keys() {
    let a = TestEnv::new("keya", "");
    let b = TestEnv::new("keyb", "");
    assert!(a.up().status.success());
    assert!(b.up().status.success());
    let keys = |t: &TestEnv| -> String {
        let kh = std::fs::read_to_string(t.state().join("known_hosts")).unwrap();
        kh.lines()
            .filter(|l| l.contains("ssh-ed25519"))
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
            .collect()
    };
    let (ka, kb) = (keys(&a), keys(&b));
    assert!(!ka.is_empty());
    assert_ne!(ka, kb);
}

#[test]
fn gpus_all_without_runtime_exits_6_and_leaves_nothing() {
    let support = rt().block_on(async {
        let docker = xtask::docker::Docker::connect().await.unwrap();
        docker.gpu_support().await.unwrap()
    });
    assert!(
        !support.any(),
        "this test checks the no-GPU path; the engine has GPU support ({support:?})"
    );
    let t = TestEnv::new("gpu", "    gpus: all\n");
    let o = t.up();
    assert_eq!(o.status.code(), Some(6));
    let e = stderr(&o);
    assert!(e.contains("nvidia-container-toolkit"), "{e}");
    assert!(e.contains("cargo xtask doctor"), "{e}");
    assert!(!t.container_exists());
}

#[test]
fn port_taken_exits_4() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = TestEnv::with_ports("port", "", port, free_port());
    let o = t.up();
    assert_eq!(o.status.code(), Some(4));
    let e = stderr(&o);
    assert!(e.contains(&port.to_string()), "{e}");
    assert!(e.contains("--auto-ports"), "{e}");
    assert!(!t.container_exists());
}

#[test]
fn daemon_unreachable_exits_3() {
    let t = TestEnv::new("unreach", "");
    let o = t
        .cmd(&["up"])
        .env("DOCKER_HOST", "unix:///nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent"));
}

#[test]
fn unknown_env_exits_2() {
    let t = TestEnv::new("unknown", "");
    let o = t.run(&["up", "no-such-env"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no-such-env"));
}

#[test]
fn missing_volume_source_exits_5_and_creates_nothing() {
    let t = TestEnv::new(
        "vol",
        "    volumes:\n      - { source: ./no-such-data, target: /data, read_only: true }\n",
    );
    let o = t.up();
    assert_eq!(o.status.code(), Some(5));
    assert!(stderr(&o).contains("no-such-data"));
    assert!(
        !t.dir.path().join("no-such-data").exists(),
        "never auto-created"
    );
    assert!(!t.container_exists());
}

#[test]
fn auto_ports_replaces_a_taken_port() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = TestEnv::with_ports("auto", "", port, free_port());
    let o = t.run(&[
        "up",
        "--image",
        test_image(),
        "--auto-ports",
        "--timeout",
        "180",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("host port {port} is taken")));
}
