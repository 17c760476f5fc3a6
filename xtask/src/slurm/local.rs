//! A single-node Slurm on this machine, for trying `ci --slurm` and for
//! its tests: munged, slurmctld and slurmd started from one folder that
//! holds everything (munge key and socket, a generated `slurm.conf`, state,
//! spool, logs, pid files); no systemd, nothing under /etc. The node is
//! this machine under its host name, at 127.0.0.1, with all its CPUs and
//! its NVIDIA GPUs (`/dev/nvidiaN`) as `gpu` gres; one partition,
//! `torchenv`. Finished jobs stay known to the controller for an hour
//! (`MinJobAge`), since there is no accounting database.
//!
//! May use: `process`, `slurm`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::SlurmError;
use crate::process::{run_captured, run_quiet, ProcessError};

/// The daemons, in start order.
const DAEMONS: [&str; 3] = ["munged", "slurmctld", "slurmd"];
/// How long `start` waits for the node to be idle.
const READY: Duration = Duration::from_secs(60);

/// The cluster kept in `dir`.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    pub dir: PathBuf,
}

impl LocalCluster {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalCluster { dir: dir.into() }
    }

    /// The configuration Slurm's commands need (`SLURM_CONF`).
    pub fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    fn pid_file(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.pid"))
    }

    /// The daemon's pid when it is running.
    fn running(&self, daemon: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file(daemon))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// All three daemons run.
    pub fn is_up(&self) -> bool {
        DAEMONS.iter().all(|d| self.running(d).is_some())
    }

    /// Starts the daemons (nothing when they already run) and waits until
    /// the node is idle.
    pub fn start(&self) -> Result<(), SlurmError> {
        if self.is_up() {
            return Ok(());
        }
        // Whatever half of an earlier start is left goes first.
        self.stop_daemons()?;
        let [mungekey, munged, slurmctld, slurmd] =
            ["mungekey", "munged", "slurmctld", "slurmd"].map(tool);
        let (mungekey, munged, slurmctld, slurmd) = (mungekey?, munged?, slurmctld?, slurmd?);
        for sub in ["state", "spool", "log"] {
            let d = self.dir.join(sub);
            std::fs::create_dir_all(&d)
                .map_err(SlurmError::io(format!("creating {}", d.display())))?;
        }
        set_mode(&self.dir, 0o700)?;
        let key = self.dir.join("munge.key");
        if !key.exists() {
            let mut cmd = Command::new(mungekey);
            cmd.arg("--create")
                .arg(format!("--keyfile={}", key.display()));
            run(cmd, "creating the munge key")?;
        }
        let d = &self.dir;
        let mut munged = Command::new(munged);
        munged
            // munged refuses to run as root, or with its files in a
            // world-writable tree such as /tmp, unless forced.
            .arg("--force")
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--socket={}", d.join("munge.sock").display()))
            .arg(format!("--pid-file={}", self.pid_file("munged").display()))
            .arg(format!("--log-file={}", d.join("log/munged.log").display()))
            .arg(format!("--seed-file={}", d.join("munge.seed").display()));
        run(munged, "starting munged")?;
        let node = node_name();
        std::fs::write(self.conf(), self.render_conf(&node, free_ports()?, gpus()))
            .map_err(SlurmError::io(format!("writing {}", self.conf().display())))?;
        if gpus() > 0 {
            let gres = format!("Name=gpu File=/dev/nvidia[0-{}]\n", gpus() - 1);
            std::fs::write(d.join("gres.conf"), gres)
                .map_err(SlurmError::io("writing gres.conf"))?;
        }
        let conf = self.conf();
        let mut ctld = Command::new(slurmctld);
        // -i: start clean, ignoring any state an earlier run left.
        ctld.arg("-f").arg(&conf).arg("-i");
        run(ctld, "starting slurmctld")?;
        let mut slurmd = Command::new(slurmd);
        slurmd.arg("-f").arg(&conf).arg("-N").arg(&node);
        run(slurmd, "starting slurmd")?;
        self.wait_idle()
    }

    fn wait_idle(&self) -> Result<(), SlurmError> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < READY {
            let mut sinfo = Command::new("sinfo");
            sinfo
                .args(["-h", "-o", "%T"])
                .env("SLURM_CONF", self.conf());
            if let Ok(out) = run_quiet(sinfo, "asking for the node's state") {
                last = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if last == "idle" {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(SlurmError::LocalStart {
            why: format!(
                "the node is `{}` after {} s",
                if last.is_empty() { "unknown" } else { &last },
                READY.as_secs()
            ),
            dir: self.dir.display().to_string(),
        })
    }

    /// Stops the daemons and removes the folder.
    pub fn stop(&self) -> Result<(), SlurmError> {
        self.stop_daemons()?;
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SlurmError::Io {
                context: format!("removing {}", self.dir.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Stops the daemons that run, in reverse start order: SIGTERM, then
    /// SIGKILL after 10 s.
    fn stop_daemons(&self) -> Result<(), SlurmError> {
        for daemon in DAEMONS.iter().rev() {
            let Some(pid) = self.running(daemon) else {
                continue;
            };
            let _ = signal(pid, "TERM");
            let until = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                signal(pid, "KILL")?;
            }
        }
        Ok(())
    }

    /// `slurm.conf` for one node named `node`.
    pub fn render_conf(
        &self,
        node: &str,
        (ctld_port, slurmd_port): (u16, u16),
        gpus: u32,
    ) -> String {
        let d = self.dir.display();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (gres_types, gres) = if gpus > 0 {
            ("GresTypes=gpu\n".to_string(), format!(" Gres=gpu:{gpus}"))
        } else {
            (String::new(), String::new())
        };
        format!(
            "# Written by `cargo xtask slurm start`: a single-node cluster in {d}.\n\
             ClusterName=torchenv\n\
             SlurmctldHost={node}(127.0.0.1)\n\
             SlurmctldPort={ctld_port}\n\
             SlurmdPort={slurmd_port}\n\
             AuthType=auth/munge\n\
             AuthInfo=socket={d}/munge.sock\n\
             CredType=cred/munge\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             StateSaveLocation={d}/state\n\
             SlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\n\
             SlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\n\
             SchedulerType=sched/backfill\n\
             MpiDefault=none\n\
             ReturnToService=2\n\
             MinJobAge=3600\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             {gres_types}\
             NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus}{gres} State=UNKNOWN\n\
             PartitionName=torchenv Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        )
    }
}

fn run(cmd: Command, what: &str) -> Result<(), SlurmError> {
    run_captured(cmd, what)
        .map(|_| ())
        .map_err(|e| SlurmError::Command(Box::new(e)))
}

fn signal(pid: u32, sig: &str) -> Result<(), SlurmError> {
    let mut kill = Command::new("kill");
    kill.arg(format!("-{sig}")).arg(pid.to_string());
    match run_quiet(kill, "stopping a daemon") {
        Ok(_) => Ok(()),
        // Gone between the check and the signal.
        Err(ProcessError::Failed { .. }) if !Path::new(&format!("/proc/{pid}")).exists() => Ok(()),
        Err(e) => Err(SlurmError::Command(Box::new(e))),
    }
}

fn set_mode(dir: &Path, mode: u32) -> Result<(), SlurmError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(SlurmError::io(format!("chmod {}", dir.display())))
}

/// `program` on `PATH` or in the sbin folders (Debian puts the daemons
/// there, outside a user's `PATH`).
fn tool(program: &str) -> Result<PathBuf, SlurmError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| SlurmError::NotInstalled {
            tool: program.into(),
        })
}

/// This machine's short host name (`vm` of `vm.example.org`).
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| h.trim().split('.').next().map(str::to_string))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Two ports free on 127.0.0.1 now (the controller's and the node's).
fn free_ports() -> Result<(u16, u16), SlurmError> {
    let bind = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(SlurmError::io("finding a free port on 127.0.0.1"))
    };
    let (a, b) = (bind()?, bind()?);
    let port = |l: &std::net::TcpListener| {
        l.local_addr()
            .map(|a| a.port())
            .map_err(SlurmError::io("finding a free port on 127.0.0.1"))
    };
    Ok((port(&a)?, port(&b)?))
}

/// This machine's NVIDIA GPUs (`/dev/nvidia0`, `/dev/nvidia1`, …).
fn gpus() -> u32 {
    (0..)
        .take_while(|i| Path::new(&format!("/dev/nvidia{i}")).exists())
        .count() as u32
}
