//! A temporary environment for the launch tests against the real engine:
//! the built `xtask` binary run as a subprocess on a temporary spec with a
//! unique environment name and free ports, as a fixed test user
//! (`USER=tlaunch`, `TORCHENV_UID/GID=1234`), with state in a temp
//! `XDG_STATE_HOME` and its own SSH key. `down --volumes` on drop, also
//! when the test fails.
//!
//! The image: `TORCHENV_TEST_IMAGE` when set (the suite's runner builds it
//! first); otherwise the default environment's image of the repository's
//! spec + lock via `image::ensure_image` (may take minutes). Never skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const USER: &str = "tlaunch";
pub const UID: u32 = 1234;

pub fn test_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Ok(tag) = std::env::var("TORCHENV_TEST_IMAGE") {
            return tag;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let spec = xtask::spec::Spec::load(&root.join(xtask::spec::SPEC_FILE)).unwrap();
        let lock = xtask::lock::Lock::read(&root.join(xtask::lock::LOCK_FILE)).unwrap();
        let env = spec.env(None).unwrap().clone();
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let docker = xtask::docker::Docker::connect().await.unwrap();
            xtask::build::ensure_image(&docker, &spec, &lock, &env, None)
                .await
                .unwrap()
                .tag
        })
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "lt{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// One temporary spec with one environment; `down --volumes` on drop.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub jupyter: u16,
    pub ssh: u16,
    pub workspace: PathBuf,
}

/// What a [`TestEnv`]'s environment has besides the basics.
#[derive(Default)]
pub struct Opts {
    /// The workspace (default: `<dir>/ws`).
    pub workspace: Option<PathBuf>,
    /// A named volume `<env>-data` at /data ([`TestEnv::volume`]).
    pub volume: bool,
    /// More YAML of the environment (indented by four spaces).
    pub extra: String,
    /// Jupyter and SSH host ports (default: free ones).
    pub ports: Option<(u16, u16)>,
}

impl TestEnv {
    pub fn new(tag: &str, extra: &str) -> TestEnv {
        Self::with(
            tag,
            Opts {
                extra: extra.into(),
                ..Opts::default()
            },
        )
    }

    pub fn with_ports(tag: &str, extra: &str, jupyter: u16, ssh: u16) -> TestEnv {
        Self::with(
            tag,
            Opts {
                extra: extra.into(),
                ports: Some((jupyter, ssh)),
                ..Opts::default()
            },
        )
    }

    pub fn with(tag: &str, opts: Opts) -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let name = unique(tag);
        let key = dir.path().join("id_ed25519");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "torchenv-test", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen (openssh-client) is needed");
        assert!(st.success());
        let workspace = opts.workspace.unwrap_or_else(|| dir.path().join("ws"));
        let (jupyter, ssh) = opts.ports.unwrap_or_else(|| (free_port(), free_port()));
        let mut spec = format!(
            "version: 1\ndefault: {name}\nenvironments:\n  {name}:\n    torch: 2.6.0\n    torchvision: 0.21.0\n    workspace: {}\n    shm_size: 1g\n    jupyter: {{ port: {jupyter} }}\n    ssh: {{ port: {ssh}, public_key: ./id_ed25519.pub }}\n{}",
            workspace.display(),
            opts.extra
        );
        if opts.volume {
            spec += &format!("    volumes:\n      - {{ source: {name}-data, target: /data }}\n");
        }
        std::fs::write(dir.path().join("environments.yaml"), spec).unwrap();
        TestEnv {
            dir,
            name,
            jupyter,
            ssh,
            workspace,
        }
    }

    /// The Docker volume of the named volume `<env>-data` of an environment
    /// made with [`Opts::volume`] (per uid).
    pub fn volume(&self) -> String {
        xtask::launch::mounts::volume_name(&format!("{}-data", self.name), &who())
    }

    pub fn spec(&self) -> PathBuf {
        self.dir.path().join("environments.yaml")
    }

    pub fn state(&self) -> PathBuf {
        self.dir
            .path()
            .join("state")
            .join("torchenv")
            .join(&self.name)
    }

    pub fn workspace(&self) -> PathBuf {
        self.workspace.clone()
    }

    pub fn container(&self) -> String {
        format!("torchenv-{}-{USER}", self.name)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.arg("--spec")
            .arg(self.spec())
            .args(args)
            .env("USER", USER)
            .env("TORCHENV_UID", UID.to_string())
            .env("TORCHENV_GID", UID.to_string())
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("TORCHENV_LOCK", lock_path())
            .env_remove("TORCHENV_IMAGE")
            .env_remove("TORCHENV_HOST_HARNESS");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        eprintln!(
            "$ xtask {}\n-> {:?}\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn up(&self) -> Output {
        self.run(&["up", "--image", test_image(), "--timeout", "180"])
    }

    /// `ssh` to the environment as `user` with the test key and the
    /// state dir's known_hosts, `extra` options before the destination; no
    /// remote command yet.
    pub fn ssh_command(&self, user: &str, extra: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args([
            "-p",
            &self.ssh.to_string(),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            self.state().join("known_hosts").display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(self.dir.path().join("id_ed25519"))
        .args(extra)
        .arg(format!("{user}@127.0.0.1"))
        .stdin(std::process::Stdio::null());
        c
    }

    /// Runs `command` over [`TestEnv::ssh_command`].
    pub fn ssh(&self, user: &str, extra: &[&str], command: &str) -> Output {
        self.ssh_command(user, extra).arg(command).output().unwrap()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state().join("jupyter_token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn container_exists(&self) -> bool {
        let name = self.container();
        rt().block_on(async {
            let docker = xtask::docker::Docker::connect().await.unwrap();
            docker.inspect_container(&name).await.unwrap().is_some()
        })
    }
}

/// `down --volumes`, then whatever of the environment is left (one-shot
/// containers, its named volume, its network), by label and name.
impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", &self.name, "--volumes"]).output();
        let label = format!("label=dev.torchenv.env={}", self.name);
        if let Ok(o) = Command::new("docker")
            .args(["ps", "-a", "-q", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume()])
            .output();
        let _ = Command::new("docker")
            .args(["network", "rm", &self.container()])
            .output();
    }
}

/// The repository's lock (`TORCHENV_LOCK` when set), for commands that
/// build or check: the temporary spec has none beside it.
pub fn lock_path() -> PathBuf {
    std::env::var_os("TORCHENV_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../environments.lock"))
}

/// The test user as torchenv sees it.
pub fn who() -> xtask::launch::Identity {
    xtask::launch::Identity {
        user: USER.into(),
        uid: UID,
        gid: UID,
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
