//! Published ports as types: which container port, on which host address
//! and port, for what. A taken host port is found by binding it before the
//! container is created, and by mapping the engine's refusal
//! (`DockerError::PortTaken`) when another process wins the race.
//!
//! May use: `launch`, `spec`.

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};

use super::LaunchError;
use crate::spec::{Env, Protocol};

/// A port inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerPort {
    pub port: u16,
    pub protocol: Protocol,
}

impl ContainerPort {
    pub const SSH: ContainerPort = ContainerPort::tcp(22);
    pub const JUPYTER: ContainerPort = ContainerPort::tcp(8888);

    pub const fn tcp(port: u16) -> ContainerPort {
        ContainerPort {
            port,
            protocol: Protocol::Tcp,
        }
    }

    /// The engine's key: `8888/tcp`.
    pub fn key(&self) -> String {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        format!("{}/{proto}", self.port)
    }
}

/// What a published port is for (in messages and `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Jupyter,
    Ssh,
    Extra,
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Purpose::Jupyter => "jupyter",
            Purpose::Ssh => "ssh",
            Purpose::Extra => "ports",
        })
    }
}

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container: ContainerPort,
    pub purpose: Purpose,
}

impl Published {
    /// The address a client on this host connects to.
    pub fn connect_ip(&self) -> IpAddr {
        if self.host_ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            self.host_ip
        }
    }
}

/// The environment's published ports: Jupyter and SSH when enabled (SSH only
/// when `with_ssh`), then `ports:`.
pub fn published(env: &Env, with_ssh: bool) -> Vec<Published> {
    let mut out = Vec::new();
    if let Some(j) = &env.jupyter {
        out.push(Published {
            host_ip: env.host_ip,
            host_port: j.port,
            container: ContainerPort::JUPYTER,
            purpose: Purpose::Jupyter,
        });
    }
    if let (Some(s), true) = (&env.ssh, with_ssh) {
        out.push(Published {
            host_ip: env.host_ip,
            host_port: s.port,
            container: ContainerPort::SSH,
            purpose: Purpose::Ssh,
        });
    }
    for p in &env.ports {
        out.push(Published {
            host_ip: env.host_ip,
            host_port: p.host,
            container: ContainerPort {
                port: p.container,
                protocol: p.protocol,
            },
            purpose: Purpose::Extra,
        });
    }
    out
}

fn bindable(ip: IpAddr, port: u16, protocol: Protocol) -> std::io::Result<u16> {
    match protocol {
        Protocol::Tcp => TcpListener::bind((ip, port)).and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind((ip, port)).and_then(|s| s.local_addr()),
    }
    .map(|a| a.port())
}

/// Fails with [`LaunchError::PortTaken`] for the first host port something
/// already listens on.
pub fn check_free(ports: &[Published]) -> Result<(), LaunchError> {
    for p in ports {
        if let Err(e) = bindable(p.host_ip, p.host_port, p.container.protocol) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                return Err(LaunchError::PortTaken {
                    port: p.host_port,
                    host_ip: p.host_ip.to_string(),
                    purpose: p.purpose.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// `--auto-ports`: keeps each spec port that is free and replaces each taken
/// one by a free port the kernel picks.
pub fn auto_assign(ports: &mut [Published]) -> std::io::Result<Vec<(Purpose, u16, u16)>> {
    let mut changed = Vec::new();
    for p in ports.iter_mut() {
        if bindable(p.host_ip, p.host_port, p.container.protocol).is_err() {
            let free = bindable(p.host_ip, 0, p.container.protocol)?;
            changed.push((p.purpose, p.host_port, free));
            p.host_port = free;
        }
    }
    Ok(changed)
}

/// The [`LaunchError::PortTaken`] of the engine's refusal to publish
/// `port` (as `DockerError::PortTaken` names it; the first port when it
/// names none of ours).
pub fn taken(port: Option<u16>, ports: &[Published]) -> Option<LaunchError> {
    let p = ports
        .iter()
        .find(|p| Some(p.host_port) == port)
        .or(ports.first())?;
    Some(LaunchError::PortTaken {
        port: p.host_port,
        host_ip: p.host_ip.to_string(),
        purpose: p.purpose.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_port_is_found() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut ports = vec![Published {
            host_ip: "127.0.0.1".parse().unwrap(),
            host_port: port,
            container: ContainerPort::JUPYTER,
            purpose: Purpose::Jupyter,
        }];
        let e = check_free(&ports).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::PORT_TAKEN);
        assert!(e.to_string().contains(&port.to_string()));
        let changed = auto_assign(&mut ports).unwrap();
        assert_eq!(changed.len(), 1);
        assert_ne!(ports[0].host_port, port);
        check_free(&ports).unwrap();
    }

    #[test]
    fn engine_refusal_maps_to_port() {
        let ports = vec![Published {
            host_ip: "127.0.0.1".parse().unwrap(),
            host_port: 18888,
            container: ContainerPort::JUPYTER,
            purpose: Purpose::Jupyter,
        }];
        assert!(matches!(
            taken(Some(18888), &ports),
            Some(LaunchError::PortTaken { port: 18888, .. })
        ));
        assert!(matches!(
            taken(None, &ports),
            Some(LaunchError::PortTaken { port: 18888, .. })
        ));
        assert!(taken(Some(1), &[]).is_none());
    }
}
