//! `cargo xtask status [--json] [--gpu]`: this user's torchenv containers
//! (those of this uid, [`super::owner::own_containers`]; no other user's):
//! env, state, image, ports, GPUs, uptime; with `--gpu`, the host's GPUs as
//! NVML reads them now (`gpumon`) and which running environment has each.
//!
//! May use: `clock`, `docker`, `launch`, `launch::owner`, `launch::up`, `spec` (tests); the `gpumon` crate.

use bollard::models::DeviceRequest;
use serde::Serialize;

use super::Result;
use super::{owner, Identity};
use crate::docker::{Docker, LABEL_ENV};

#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    pub env: String,
    pub container: String,
    pub state: String,
    pub image: String,
    /// `127.0.0.1:8888->8888/tcp`.
    pub ports: Vec<String>,
    /// `all`, a count, device ids, or `none`.
    pub gpus: String,
    /// The same, to match against the host's GPUs.
    #[serde(skip)]
    pub gpu_grant: GpuGrant,
    /// Seconds since start, when running.
    pub uptime_s: Option<u64>,
}

/// The status of every torchenv container of the current user.
pub async fn collect(docker: &Docker) -> Result<Vec<EnvStatus>> {
    let who = Identity::current()?;
    let mut out = Vec::new();
    for own in owner::own_containers(docker, &who).await? {
        let name = own.name;
        let Some(c) = docker.inspect_container(&name).await? else {
            continue;
        };
        let state = c.state.clone().unwrap_or_default();
        let ports = super::up::published_of(&c)
            .iter()
            .map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container.key()))
            .collect();
        let requests = c
            .host_config
            .as_ref()
            .and_then(|h| h.device_requests.clone());
        let gpu_grant = GpuGrant::of(requests.as_deref().unwrap_or_default());
        let gpus = match requests {
            None => "none".to_string(),
            Some(reqs) if reqs.is_empty() => "none".to_string(),
            Some(reqs) => reqs
                .iter()
                .map(|r| match (&r.device_ids, r.count) {
                    (Some(ids), _) => ids.join(","),
                    (None, Some(-1)) => "all".into(),
                    (None, Some(n)) => n.to_string(),
                    (None, None) => "?".into(),
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        let running = state.running.unwrap_or(false);
        let uptime_s = running
            .then(|| {
                state
                    .started_at
                    .as_deref()
                    .and_then(crate::clock::parse_rfc3339)
            })
            .flatten()
            .map(|start| now_s().saturating_sub(start));
        out.push(EnvStatus {
            env: super::up::label(&c, LABEL_ENV).unwrap_or("?").to_string(),
            container: name,
            state: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            image: c
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            ports,
            gpus,
            gpu_grant,
            uptime_s,
        });
    }
    out.sort_by(|a, b| a.env.cmp(&b.env));
    Ok(out)
}

fn now_s() -> u64 {
    crate::clock::now_unix()
}

pub fn human(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The GPUs a container was given, from its device requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum GpuGrant {
    #[default]
    None,
    All,
    /// The first n (the NVIDIA runtime numbers a count `0..n`).
    Count(u32),
    /// NVIDIA runtime ids (index or UUID) or CDI names
    /// (`nvidia.com/gpu=0`, `…=GPU-uuid`, `…=all`).
    Ids(Vec<String>),
}

impl GpuGrant {
    pub fn of(requests: &[DeviceRequest]) -> GpuGrant {
        let mut ids = Vec::new();
        let mut count = 0u32;
        for r in requests {
            match (&r.device_ids, r.count) {
                (Some(i), _) => ids.extend(i.iter().cloned()),
                (None, Some(-1)) => return GpuGrant::All,
                (None, Some(n)) => count = count.max(u32::try_from(n).unwrap_or(0)),
                (None, None) => {}
            }
        }
        if !ids.is_empty() {
            GpuGrant::Ids(ids)
        } else if count > 0 {
            GpuGrant::Count(count)
        } else {
            GpuGrant::None
        }
    }

    /// Whether the host GPU with this NVML index and UUID is among them.
    pub fn has(&self, index: u32, uuid: &str) -> bool {
        match self {
            GpuGrant::None => false,
            GpuGrant::All => true,
            GpuGrant::Count(n) => index < *n,
            GpuGrant::Ids(ids) => ids.iter().any(|id| {
                let id = id.rsplit_once('=').map_or(id.as_str(), |(_, d)| d);
                id == "all" || id == index.to_string() || (!uuid.is_empty() && id == uuid)
            }),
        }
    }
}

/// The host's GPUs as NVML read them (`snapshot`), one line each after a
/// header, with the running environments that have each.
pub fn gpu_table(snapshot: &gpumon::Snapshot, envs: &[EnvStatus]) -> Vec<String> {
    let driver = snapshot.driver_version.as_deref().unwrap_or("?");
    let mut out = vec![
        format!("host GPUs (NVML, driver {driver}):"),
        format!(
            "{:<4} {:<28} {:<18} {:>5} {:>6} {:>8} {:>9}  ENVS",
            "GPU", "NAME", "MEMORY", "UTIL", "TEMP", "POWER", "SM CLOCK"
        ),
    ];
    for r in &snapshot.devices {
        let (d, s) = (&r.device, &r.sample);
        let users: Vec<&str> = envs
            .iter()
            .filter(|e| e.state == "running" && e.gpu_grant.has(d.index, &d.uuid))
            .map(|e| e.env.as_str())
            .collect();
        out.push(format!(
            "{:<4} {:<28} {:<18} {:>5} {:>6} {:>8} {:>9}  {}",
            d.index,
            d.name,
            memory(s.memory_used_bytes, d.memory_total_bytes),
            figure(s.utilization_percent, |u| format!("{u}%")),
            figure(s.temperature_c, |t| format!("{t}°C")),
            figure(s.power_watts, |p| format!("{p:.0} W")),
            figure(s.sm_clock_mhz, |c| format!("{c} MHz")),
            if users.is_empty() {
                "-".to_string()
            } else {
                users.join(", ")
            },
        ));
    }
    out
}

/// A figure NVML gave, or `-` for one the device does not report.
fn figure<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "-".to_string(), show)
}

/// `12.3/79.6 GiB`.
fn memory(used: Option<u64>, total: Option<u64>) -> String {
    let gib = |b: Option<u64>| figure(b, |b| format!("{:.1}", b as f64 / (1u64 << 30) as f64));
    format!("{}/{} GiB", gib(used), gib(total))
}

#[cfg(test)]
mod tests {

    fn env(name: &str, state: &str, grant: super::GpuGrant) -> super::EnvStatus {
        super::EnvStatus {
            env: name.into(),
            container: format!("torchenv-{name}-dev"),
            state: state.into(),
            image: String::new(),
            ports: vec![],
            gpus: String::new(),
            gpu_grant: grant,
            uptime_s: None,
        }
    }

    #[test]
    fn gpu_grants_from_device_requests() {
        use super::GpuGrant;
        use crate::launch::gpus::device_requests;
        use crate::spec::Gpus;
        let grant = |g: Gpus| GpuGrant::of(&device_requests(&g));
        assert_eq!(grant(Gpus::None), GpuGrant::None);
        assert_eq!(grant(Gpus::All), GpuGrant::All);
        assert_eq!(grant(Gpus::Count(2)), GpuGrant::Count(2));
        let ids = grant(Gpus::Ids(vec!["1".into(), "GPU-abc".into()]));
        assert!(!ids.has(0, "GPU-xyz") && ids.has(1, "GPU-xyz") && ids.has(3, "GPU-abc"));
        assert!(GpuGrant::Count(2).has(1, "") && !GpuGrant::Count(2).has(2, ""));
        let cdi = grant(Gpus::Cdi(vec!["nvidia.com/gpu=0".into()]));
        assert!(cdi.has(0, "GPU-a") && !cdi.has(1, "GPU-b"));
        assert!(grant(Gpus::Cdi(vec!["nvidia.com/gpu=all".into()])).has(5, ""));
        assert!(!GpuGrant::Ids(vec!["".into()]).has(0, ""));
    }

    #[test]
    fn the_gpu_table_shows_each_gpu_and_its_running_environments() {
        use super::GpuGrant;
        use gpumon::{DeviceInfo, DeviceReading, GpuSample, Snapshot};
        const GIB: u64 = 1 << 30;
        let h100 = |index: u32, sample: GpuSample| DeviceReading {
            device: DeviceInfo {
                index,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: format!("GPU-{index}"),
                memory_total_bytes: Some(80 * GIB),
            },
            sample,
        };
        let snapshot = Snapshot {
            driver_version: Some("550.54.15".into()),
            devices: vec![
                h100(
                    0,
                    GpuSample {
                        t: 0.0,
                        memory_used_bytes: Some(60 * GIB + GIB / 2),
                        utilization_percent: Some(98),
                        temperature_c: Some(71),
                        power_watts: Some(695.4),
                        sm_clock_mhz: Some(1980),
                    },
                ),
                // A board that reports no power (NotSupported) and no reading.
                h100(1, GpuSample::default()),
            ],
        };
        let envs = [
            env("cu121", "running", GpuGrant::All),
            env("cu124", "running", GpuGrant::Ids(vec!["GPU-1".into()])),
            env("old", "exited", GpuGrant::All),
        ];
        let table = super::gpu_table(&snapshot, &envs).join("\n");
        assert_eq!(
            table,
            "host GPUs (NVML, driver 550.54.15):\n\
             GPU  NAME                         MEMORY              UTIL   TEMP    POWER  SM CLOCK  ENVS\n\
             0    NVIDIA H100 80GB HBM3        60.5/80.0 GiB        98%   71°C    695 W  1980 MHz  cu121\n\
             1    NVIDIA H100 80GB HBM3        -/80.0 GiB             -      -        -         -  cu121, cu124"
        );
    }
}
