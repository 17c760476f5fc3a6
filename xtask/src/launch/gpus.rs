//! `gpus:` → the engine's `DeviceRequest`s, checked against what the daemon
//! offers *before* anything is created. The only mapping of `gpus:`: `up`
//! and the gate both get their requests from [`plan`] (through
//! `plan::Resources::resolve`).
//!
//! May use: `docker`, `launch`, `spec`.

use bollard::models::DeviceRequest;

use super::LaunchError;
use crate::docker::containers::GpuSupport;
use crate::spec::Gpus;

/// What `up` asks the engine for, and a notice to print when `auto`
/// resolved to no GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuPlan {
    pub requests: Vec<DeviceRequest>,
    pub notice: Option<String>,
}

fn nvidia(count: Option<i64>, ids: Option<Vec<String>>) -> DeviceRequest {
    DeviceRequest {
        driver: Some("nvidia".into()),
        count,
        device_ids: ids,
        capabilities: Some(vec![vec!["gpu".into()]]),
        options: None,
    }
}

fn cdi(names: Vec<String>) -> DeviceRequest {
    DeviceRequest {
        driver: Some("cdi".into()),
        count: None,
        device_ids: Some(names),
        capabilities: None,
        options: None,
    }
}

/// NVIDIA's CDI name of a GPU by index or UUID.
fn cdi_name(id: &str) -> String {
    format!("nvidia.com/gpu={id}")
}

/// The request bodies for `gpus`, assuming the daemon can serve them (the
/// NVIDIA runtime for all/count/ids, CDI for CDI names).
pub fn device_requests(gpus: &Gpus) -> Vec<DeviceRequest> {
    match gpus {
        Gpus::None | Gpus::Auto => vec![],
        Gpus::All => vec![nvidia(Some(-1), None)],
        Gpus::Count(n) => vec![nvidia(Some(i64::from(*n)), None)],
        Gpus::Ids(ids) => vec![nvidia(None, Some(ids.clone()))],
        Gpus::Cdi(names) => vec![cdi(names.clone())],
    }
}

/// `gpus:` as written in the spec, for messages.
pub fn describe(gpus: &Gpus) -> String {
    match gpus {
        Gpus::All => "all".into(),
        Gpus::None => "none".into(),
        Gpus::Auto => "auto".into(),
        Gpus::Count(n) => n.to_string(),
        Gpus::Ids(ids) | Gpus::Cdi(ids) => format!("[{}]", ids.join(", ")),
    }
}

/// What the engine has for GPUs, for messages ("no NVIDIA runtime and no
/// CDI devices", or why it would drop a request).
pub fn found(support: &GpuSupport) -> String {
    if let Some(dropped) = &support.dropped {
        dropped.clone()
    } else if !support.nvidia_runtime && support.cdi_devices.is_empty() {
        if support.cdi_spec_dirs.is_empty() {
            "no NVIDIA runtime and no CDI devices".into()
        } else {
            format!(
                "no NVIDIA runtime and no CDI devices in {}",
                support.cdi_spec_dirs.join(", ")
            )
        }
    } else if support.nvidia_runtime {
        "the NVIDIA runtime but no CDI devices".into()
    } else {
        format!(
            "CDI devices {} but no NVIDIA runtime",
            support.cdi_devices.join(", ")
        )
    }
}

/// Resolves `gpus` against the daemon: `auto` becomes all or none, and a
/// request the daemon cannot serve is [`LaunchError::GpuUnavailable`].
pub fn plan(
    env: &str,
    host: &str,
    gpus: &Gpus,
    support: &GpuSupport,
) -> Result<GpuPlan, LaunchError> {
    let unavailable = || LaunchError::GpuUnavailable {
        env: env.to_string(),
        requested: describe(gpus),
        host: host.to_string(),
        found: found(support),
    };
    let requests = match gpus {
        Gpus::None => vec![],
        // An engine that would drop the request silently is never asked.
        _ if support.dropped.is_some() && *gpus != Gpus::Auto => return Err(unavailable()),
        Gpus::Auto if support.dropped.is_some() => {
            return Ok(GpuPlan {
                requests: vec![],
                notice: Some(format!(
                    "gpus: auto: the engine has {}; starting without GPUs",
                    found(support)
                )),
            })
        }
        Gpus::Auto if support.nvidia_runtime => device_requests(&Gpus::All),
        Gpus::Auto if !support.cdi_devices.is_empty() => vec![cdi(vec!["nvidia.com/gpu=all".into()])],
        Gpus::Auto => {
            return Ok(GpuPlan {
                requests: vec![],
                notice: Some(format!(
                    "gpus: auto: the Docker engine has {}; starting without GPUs (`cargo xtask doctor` explains)",
                    found(support)
                )),
            })
        }
        Gpus::All if !support.nvidia_runtime && !support.cdi_devices.is_empty() => {
            vec![cdi(vec!["nvidia.com/gpu=all".into()])]
        }
        Gpus::All | Gpus::Count(_) | Gpus::Ids(_) if support.nvidia_runtime => device_requests(gpus),
        // Device ids (a Slurm allocation's) on an engine that has only CDI
        // (Podman): the same devices by their CDI names.
        Gpus::Ids(ids)
            if ids
                .iter()
                .all(|id| support.cdi_devices.contains(&cdi_name(id))) =>
        {
            vec![cdi(ids.iter().map(|id| cdi_name(id)).collect())]
        }
        Gpus::Cdi(names) if names.iter().all(|n| support.cdi_devices.contains(n)) => {
            device_requests(gpus)
        }
        _ => return Err(unavailable()),
    };
    Ok(GpuPlan {
        requests,
        notice: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(gpus: Gpus) -> Vec<DeviceRequest> {
        let support = GpuSupport {
            nvidia_runtime: true,
            cdi_spec_dirs: vec!["/etc/cdi".into()],
            cdi_devices: vec!["nvidia.com/gpu=0".into(), "nvidia.com/gpu=1".into()],
            dropped: None,
        };
        plan("e", "unix:///var/run/docker.sock", &gpus, &support)
            .unwrap()
            .requests
    }

    #[test]
    fn all() {
        insta::assert_json_snapshot!(snap(Gpus::All));
    }

    #[test]
    fn count() {
        insta::assert_json_snapshot!(snap(Gpus::Count(2)));
    }

    #[test]
    fn ids() {
        insta::assert_json_snapshot!(snap(Gpus::Ids(vec!["0".into(), "GPU-3f2a".into()])));
    }

    #[test]
    fn cdi_names() {
        insta::assert_json_snapshot!(snap(Gpus::Cdi(vec!["nvidia.com/gpu=1".into()])));
    }

    #[test]
    fn auto_without_runtime_is_none_with_notice() {
        let p = plan("e", "h", &Gpus::Auto, &GpuSupport::default()).unwrap();
        assert!(p.requests.is_empty());
        assert!(p.notice.unwrap().contains("without GPUs"));
    }

    #[test]
    fn auto_with_cdi_only_uses_cdi_all() {
        let support = GpuSupport {
            nvidia_runtime: false,
            cdi_spec_dirs: vec!["/etc/cdi".into()],
            cdi_devices: vec!["nvidia.com/gpu=0".into()],
            dropped: None,
        };
        let p = plan("e", "h", &Gpus::Auto, &support).unwrap();
        assert_eq!(p.requests[0].driver.as_deref(), Some("cdi"));
    }

    #[test]
    fn ids_on_a_cdi_only_engine_become_cdi_names() {
        let support = GpuSupport {
            nvidia_runtime: false,
            cdi_spec_dirs: vec!["/etc/cdi".into()],
            cdi_devices: vec!["nvidia.com/gpu=0".into(), "nvidia.com/gpu=1".into()],
            dropped: None,
        };
        let p = plan("e", "h", &Gpus::Ids(vec!["1".into()]), &support).unwrap();
        assert_eq!(p.requests[0].driver.as_deref(), Some("cdi"));
        assert_eq!(
            p.requests[0].device_ids.as_deref(),
            Some(&["nvidia.com/gpu=1".to_string()][..])
        );
        // A device the engine does not list is refused, not swapped.
        assert!(plan("e", "h", &Gpus::Ids(vec!["2".into()]), &support).is_err());
    }

    #[test]
    fn requested_without_runtime_fails() {
        for g in [
            Gpus::All,
            Gpus::Count(1),
            Gpus::Ids(vec!["0".into()]),
            Gpus::Cdi(vec!["nvidia.com/gpu=0".into()]),
        ] {
            let e = plan("e", "h", &g, &GpuSupport::default()).unwrap_err();
            assert_eq!(e.exit_code(), crate::exit::GPU_UNAVAILABLE);
        }
    }

    #[test]
    fn an_engine_that_drops_requests_is_never_asked() {
        let support = GpuSupport {
            nvidia_runtime: false,
            cdi_spec_dirs: vec!["/etc/cdi".into()],
            cdi_devices: vec!["nvidia.com/gpu=0".into(), "nvidia.com/gpu=all".into()],
            dropped: Some("Podman 4.3.1, whose API drops them".into()),
        };
        let p = plan("e", "h", &Gpus::Auto, &support).unwrap();
        assert!(p.requests.is_empty());
        assert!(p.notice.unwrap().contains("Podman 4.3.1"));
        for g in [
            Gpus::All,
            Gpus::Count(1),
            Gpus::Ids(vec!["0".into()]),
            Gpus::Cdi(vec!["nvidia.com/gpu=0".into()]),
        ] {
            let e = plan("e", "h", &g, &support).unwrap_err();
            assert_eq!(e.exit_code(), crate::exit::GPU_UNAVAILABLE);
            assert!(e.to_string().contains("Podman 4.3.1"), "{e}");
        }
    }
}
