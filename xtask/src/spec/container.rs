//! What the image and the kernel fix for a spec: the paths a mount must not
//! shadow, the Linux capability names `security.cap_add` may use, and the
//! default process limit. [`mount_target`] and [`capability`] say why a
//! value is refused; `resolve` turns that into a located [`super::SpecError`].
//!
//! May use: nothing else of the crate.

/// Where the workspace is mounted (the image's WORKDIR, Jupyter's root).
pub const WORKSPACE_TARGET: &str = "/workspace";

/// `security.pids_limit` when the spec sets none: processes + threads of
/// one container (a fork bomb stops here, not at the host's limit).
pub const DEFAULT_PIDS_LIMIT: u32 = 32768;

/// Every Linux capability, as `<linux/capability.h>` names them without the
/// `CAP_` prefix (0 = CHOWN … 40 = CHECKPOINT_RESTORE, Linux 5.9+).
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A path of the image that a mount would shadow.
struct ImagePath {
    path: &'static str,
    /// What lives there (for the message).
    what: &'static str,
    /// Whether a mount below it is refused too (else only the path itself
    /// and the folders above it are).
    below: bool,
}

/// The paths the image needs. A mount at one of them, or at a folder above
/// one (`/home` hides `/home/dev`), replaces what the image put there; one
/// below a system folder (`/etc/profile.d`, `/usr/bin`) would let what is
/// mounted there change what root runs.
const IMAGE_PATHS: &[ImagePath] = &[
    ImagePath {
        path: "/opt/venv",
        what: "the Python environment with torch",
        below: true,
    },
    ImagePath {
        path: "/usr",
        what: "the system's programs and libraries",
        below: true,
    },
    ImagePath {
        path: "/etc",
        what: "the system configuration (users, sshd)",
        below: true,
    },
    ImagePath {
        path: "/bin",
        what: "the system's programs",
        below: true,
    },
    ImagePath {
        path: "/sbin",
        what: "the system's programs",
        below: true,
    },
    ImagePath {
        path: "/lib",
        what: "the system's libraries",
        below: true,
    },
    ImagePath {
        path: "/lib64",
        what: "the system's libraries",
        below: true,
    },
    ImagePath {
        path: "/proc",
        what: "the kernel's process interface",
        below: true,
    },
    ImagePath {
        path: "/sys",
        what: "the kernel's device interface",
        below: true,
    },
    ImagePath {
        path: "/dev",
        what: "the device nodes (GPUs, /dev/shm)",
        below: true,
    },
    ImagePath {
        path: "/run",
        what: "run-time state (sshd, torchenv's own mounts: Jupyter token, SSH keys)",
        below: true,
    },
    ImagePath {
        path: "/var/run",
        what: "run-time state (a link to /run)",
        below: true,
    },
    ImagePath {
        path: "/root",
        what: "root's home",
        below: true,
    },
    ImagePath {
        path: "/home/dev",
        what: "the home of the container user `dev`",
        below: false,
    },
];

/// Why a value is refused: the parts of a located spec error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub label: &'static str,
    pub help: Option<String>,
}

/// The volume target `target`, normalized (no `.`, no repeated or trailing
/// `/`), or why no mount may go there.
pub fn mount_target(target: &str) -> Result<String, Refusal> {
    let refuse = |message: String, label: &'static str, help: Option<String>| Refusal {
        message,
        label,
        help,
    };
    if !target.starts_with('/') {
        return Err(refuse(
            format!("volume target `{target}` is not an absolute path"),
            "expected /path inside the container",
            None,
        ));
    }
    let parts: Vec<&str> = target
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(refuse(
            format!("volume target `{target}` contains `..`"),
            "write the path without `..`",
            None,
        ));
    }
    let normalized = format!("/{}", parts.join("/"));
    let own_path = Some("mount at a path of your own, e.g. /data, or below /workspace".to_string());
    if normalized == "/" {
        return Err(refuse(
            format!("volume target `{target}` would shadow the container's whole file system"),
            "not /",
            own_path,
        ));
    }
    if normalized == WORKSPACE_TARGET {
        return Err(refuse(
            format!("volume target `{target}` is where the workspace is mounted"),
            "the workspace's own target",
            Some(format!(
                "set `workspace:` to mount another host folder at {WORKSPACE_TARGET}, or mount below it (e.g. {WORKSPACE_TARGET}/data)"
            )),
        ));
    }
    let shadowed = IMAGE_PATHS.iter().find(|p| {
        p.path == normalized
            || is_below(p.path, &normalized)
            || (p.below && is_below(&normalized, p.path))
    });
    if let Some(p) = shadowed {
        return Err(refuse(
            format!(
                "volume target `{target}` would shadow {}: {}, which the image needs",
                p.path, p.what
            ),
            "a path of the image",
            own_path,
        ));
    }
    Ok(normalized)
}

/// `path` is strictly below the folder `dir` (both normalized).
fn is_below(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// What `security.cap_add` may add: capabilities whose system calls a
/// profiler, debugger or NUMA tool needs and that cannot reach the host
/// (not SYS_MODULE, SYS_RAWIO, BPF, NET_ADMIN, DAC_READ_SEARCH, …).
pub const ADDABLE_CAPABILITIES: [&str; 5] =
    ["IPC_LOCK", "NET_RAW", "PERFMON", "SYS_NICE", "SYS_PTRACE"];

/// The capability `name` of `security.cap_add` (`SYS_PTRACE`, also
/// `CAP_SYS_PTRACE` or lower case, as Docker takes them) in its canonical
/// form, or why it is refused: one of [`ADDABLE_CAPABILITIES`] only.
pub fn capability(name: &str) -> Result<String, Refusal> {
    let upper = name.to_ascii_uppercase();
    let canonical = upper.strip_prefix("CAP_").unwrap_or(&upper);
    match canonical {
        "ALL" => Err(Refusal {
            message: format!("`security.cap_add` entry `{name}` would grant every capability"),
            label: "ALL is refused",
            help: Some(
                "ALL includes SYS_ADMIN and SYS_MODULE: on a shared server that is root on the host; name the capabilities the tool needs (e.g. SYS_PTRACE for py-spy/gdb)"
                    .into(),
            ),
        }),
        "SYS_ADMIN" => Err(Refusal {
            message: format!("`security.cap_add` entry `{name}` is refused"),
            label: "SYS_ADMIN is refused",
            help: Some(
                "SYS_ADMIN allows mounts, namespaces and most kernel administration: a container with it can take over the host it shares with others; py-spy and gdb need only SYS_PTRACE"
                    .into(),
            ),
        }),
        c if ADDABLE_CAPABILITIES.contains(&c) => Ok(c.to_string()),
        c if CAPABILITIES.contains(&c) => Err(Refusal {
            message: format!("`security.cap_add` entry `{name}` is refused"),
            label: "not an addable capability",
            help: Some(format!(
                "on a shared server an environment may add only {}; {c} could reach the host or other users",
                ADDABLE_CAPABILITIES.join(", ")
            )),
        }),
        _ => Err(Refusal {
            message: format!("`security.cap_add` entry `{name}` is not a Linux capability"),
            label: "unknown capability",
            help: Some(format!("capabilities: {}", CAPABILITIES.join(", "))),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_targets() {
        assert_eq!(mount_target("/data").unwrap(), "/data");
        assert_eq!(mount_target("/data//x/./").unwrap(), "/data/x");
        assert_eq!(mount_target("/workspace/data").unwrap(), "/workspace/data");
        // Below the home (a cache).
        assert_eq!(
            mount_target("/home/dev/.cache/huggingface").unwrap(),
            "/home/dev/.cache/huggingface"
        );
        // Beside a protected path, not above it.
        assert_eq!(mount_target("/opt/venvs").unwrap(), "/opt/venvs");
        assert_eq!(mount_target("/devices").unwrap(), "/devices");
        for bad in [
            "/",
            "//",
            "data",
            "/data/../etc",
            "/workspace",
            "/workspace/",
            "/opt",
            "/opt/venv",
            "/opt/venv/lib",
            "/usr",
            "/etc",
            "/bin",
            "/sbin",
            "/lib",
            "/lib64",
            "/proc",
            "/proc/sys",
            "/sys",
            "/dev",
            "/dev/shm",
            "/run",
            "/run/torchenv",
            "/run/torchenv/jupyter_token",
            "/home",
            "/home/dev",
            "/home/dev/",
            // Below a system folder: what is mounted there would run as root.
            "/usr/local/data",
            "/usr/bin",
            "/etc/profile.d",
            "/etc/ssh",
            "/var/run/torchenv",
            "/root/.ssh",
        ] {
            assert!(mount_target(bad).is_err(), "`{bad}` was allowed");
        }
    }

    #[test]
    fn capabilities() {
        assert_eq!(CAPABILITIES.len(), 41);
        assert_eq!(CAPABILITIES[19], "SYS_PTRACE");
        assert_eq!(capability("SYS_PTRACE").unwrap(), "SYS_PTRACE");
        assert_eq!(capability("cap_sys_ptrace").unwrap(), "SYS_PTRACE");
        assert_eq!(capability("PERFMON").unwrap(), "PERFMON");
        assert!(capability("ALL")
            .unwrap_err()
            .help
            .unwrap()
            .contains("SYS_ADMIN"));
        assert!(capability("CAP_SYS_ADMIN").is_err());
        for host_reaching in [
            "SYS_MODULE",
            "SYS_RAWIO",
            "BPF",
            "NET_ADMIN",
            "DAC_READ_SEARCH",
            "SYS_BOOT",
        ] {
            assert!(
                capability(host_reaching).is_err(),
                "{host_reaching} was allowed"
            );
        }
        assert!(capability("SYS_PTRAC").is_err());
        assert!(capability("").is_err());
    }
}
