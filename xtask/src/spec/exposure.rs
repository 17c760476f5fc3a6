//! Who can reach an environment's published ports, and the address users
//! put in URLs and `ssh` commands.
//!
//! A loopback `host_ip` (127.0.0.0/8, ::1) keeps the ports on this machine.
//! Any other address publishes them to the network — and Docker's published
//! ports are reachable from the network regardless of ufw/firewalld INPUT
//! rules (Docker's own iptables rules take the packets first) — so the spec
//! must say `expose: true` for it (checked in `resolve`), and `up` warns.
//!
//! May use: `spec`.

use std::net::IpAddr;

use super::Env;

/// Where the kernel keeps this machine's host name.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// The address keeps the ports on this machine (IPv4-mapped IPv6 included).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

impl Env {
    /// The published ports are reachable from other machines: `host_ip` is
    /// not a loopback address (the spec then has `expose: true`).
    pub fn is_exposed(&self) -> bool {
        !is_loopback(self.host_ip)
    }

    /// The host users put in `ssh` commands and `~/.ssh/config`: `host_ip`
    /// itself for a loopback or specific address (IPv6 bare, e.g. `::1`,
    /// as ssh takes it), this machine's host name for the unspecified
    /// `0.0.0.0` / `::` (`localhost` when it cannot be read). For URLs use
    /// [`Env::url_host`], which brackets IPv6.
    pub fn display_host(&self) -> String {
        self.display_host_named(|| std::fs::read_to_string(HOSTNAME_FILE).ok())
    }

    /// [`Env::display_host`] as the host part of a URL: IPv6 in brackets
    /// (`http://[::1]:8888/`), anything else unchanged.
    pub fn url_host(&self) -> String {
        let host = self.display_host();
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        }
    }

    /// [`Env::display_host`] with the host name read by `hostname`.
    fn display_host_named(&self, hostname: impl FnOnce() -> Option<String>) -> String {
        if !self.host_ip.is_unspecified() {
            return self.host_ip.to_string();
        }
        hostname()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    }

    /// When the ports are exposed (non-loopback `host_ip`) and there are
    /// any: one paragraph naming the published host ports and why the host
    /// firewall does not protect them.
    pub fn exposure_warning(&self) -> Option<String> {
        if !self.is_exposed() {
            return None;
        }
        let mut ports: Vec<String> = Vec::new();
        if let Some(j) = &self.jupyter {
            ports.push(format!("{} (Jupyter)", j.port));
        }
        if let Some(s) = &self.ssh {
            ports.push(format!("{} (SSH)", s.port));
        }
        for p in &self.ports {
            let proto = match p.protocol {
                super::Protocol::Tcp => "tcp",
                super::Protocol::Udp => "udp",
            };
            ports.push(format!("{}/{proto} (ports:)", p.host));
        }
        let list = match ports.as_slice() {
            [] => return None,
            [one] => one.clone(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        };
        let s = if ports.len() == 1 { "" } else { "s" };
        Some(format!(
            "`{name}` publishes host port{s} {list} on {ip} (`expose: true`): they are reachable from the network, and Docker's published ports are reachable regardless of ufw/firewalld INPUT rules (Docker's own iptables rules take the packets before those rules see them). Anyone who can reach this machine can try the Jupyter token and the SSH key; to keep the ports on this machine, set `host_ip: 127.0.0.1` and connect through an SSH tunnel.",
            name = self.name,
            ip = self.host_ip,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::Spec;

    fn env(host_ip: &str, expose: bool) -> Env {
        let text = format!(
            "version: 1\nenvironments:\n  a:\n    torch: 2.6.0\n    torchvision: 0.21.0\n    host_ip: \"{host_ip}\"\n    expose: {expose}\n    ports: [\"6006:6006\"]\n"
        );
        let spec = Spec::parse(Path::new("/repo/environments.yaml"), text).unwrap();
        spec.environments["a"].clone()
    }

    #[test]
    fn loopback_is_not_exposed() {
        for ip in ["127.0.0.1", "127.0.1.1", "::1", "::ffff:127.0.0.1"] {
            let e = env(ip, false);
            assert!(!e.is_exposed(), "{ip}");
            assert_eq!(e.exposure_warning(), None, "{ip}");
        }
        assert_eq!(env("127.0.0.1", false).display_host(), "127.0.0.1");
        assert_eq!(env("127.0.0.1", false).url_host(), "127.0.0.1");
        assert_eq!(env("::1", false).display_host(), "::1");
        assert_eq!(env("::1", false).url_host(), "[::1]");
    }

    #[test]
    fn specific_address_is_shown_as_is() {
        let e = env("192.168.1.20", true);
        assert!(e.is_exposed());
        assert_eq!(e.display_host(), "192.168.1.20");
        let v6 = env("fd00::20", true);
        assert_eq!(v6.display_host(), "fd00::20");
        assert_eq!(v6.url_host(), "[fd00::20]");
    }

    #[test]
    fn unspecified_address_shows_the_host_name() {
        for ip in ["0.0.0.0", "::"] {
            let e = env(ip, true);
            assert_eq!(e.display_host_named(|| Some("gpu-box\n".into())), "gpu-box");
            assert_eq!(e.display_host_named(|| None), "localhost");
            assert_eq!(e.display_host_named(|| Some(" \n".into())), "localhost");
            // The real one: whatever the kernel says, never an address to bind.
            let shown = e.display_host();
            assert!(!shown.is_empty() && shown != "0.0.0.0" && shown != "::");
            assert!(!e.url_host().starts_with('['));
        }
    }

    #[test]
    fn warning_names_the_ports_and_the_firewall() {
        let w = env("0.0.0.0", true).exposure_warning().unwrap();
        assert!(
            w.contains("host ports 8888 (Jupyter), 2222 (SSH) and 6006/tcp (ports:) on 0.0.0.0"),
            "{w}"
        );
        assert!(w.contains("ufw/firewalld"), "{w}");
        assert!(!w.contains('\n'), "one paragraph: {w}");
    }
}
