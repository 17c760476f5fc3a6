//! The one place an engine failure is read: a bollard error (status code and
//! message text) becomes a typed [`DockerError`] variant. Nothing outside
//! this file looks at status codes or engine message text.
//!
//! May use: `docker`.

use bollard::errors::Error as BollardError;

use super::{Conflict, DockerError};

/// Classifies the failure of `op` on `target`.
pub fn classify(op: &'static str, target: String, source: BollardError) -> DockerError {
    let (status, message) = match &source {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => (*status_code, message.clone()),
        // An error in the middle of a streamed answer (a load, a push).
        BollardError::DockerStreamError { error } if is_disk_full(error) => {
            return DockerError::DiskFull { op, target, source }
        }
        _ => return DockerError::Api { op, target, source },
    };
    if is_disk_full(&message) {
        return DockerError::DiskFull { op, target, source };
    }
    match status {
        404 => DockerError::NotFound { op, target, source },
        304 => DockerError::NotModified { op, target },
        409 => DockerError::Conflict {
            op,
            target,
            reason: conflict(&message),
            source,
        },
        _ => {
            if let Some(name) = refused_ulimit(&message) {
                DockerError::UlimitRefused {
                    op,
                    target,
                    name,
                    source,
                }
            } else if is_gpu_error(&message) {
                DockerError::GpuRefused { op, target, source }
            } else if is_port_taken(&message) {
                DockerError::PortTaken {
                    op,
                    target,
                    port: taken_port(&message),
                    source,
                }
            } else {
                DockerError::Api { op, target, source }
            }
        }
    }
}

/// Classifies the failure of `op` on `target` on the engine at `host`: a
/// broken connection (or no answer in time) is [`DockerError::Lost`],
/// naming the engine; anything else as [`classify`] does.
pub fn classify_at(
    host: &str,
    op: &'static str,
    target: String,
    source: BollardError,
) -> DockerError {
    if is_transport(&source) {
        return DockerError::Lost {
            host: host.to_string(),
            op,
            target,
            source: Box::new(source),
        };
    }
    classify(op, target, source)
}

/// The engine's storage (or its temporary space) ran out of room.
fn is_disk_full(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no space left on device") || m.contains("disk quota exceeded")
}

/// True when `e` says nothing about the request but that the engine could
/// not be talked to: the connection could not be made, broke, or no answer
/// came in time.
pub fn is_transport(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_)
    )
}

/// Why the engine could not be reached, in words: the innermost cause
/// ("Connection refused (os error 111)", not the HTTP client's "client
/// error (Connect)"); a timeout says how long it waited, when known.
pub fn transport_reason(e: &BollardError, waited: Option<std::time::Duration>) -> String {
    if let BollardError::RequestTimeoutError = e {
        return match waited {
            Some(d) => format!("no answer within {} s (is the daemon hung?)", d.as_secs()),
            None => "no answer in time (is the daemon hung?)".to_string(),
        };
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

fn conflict(message: &str) -> Conflict {
    if message.contains("removal") {
        Conflict::BeingRemoved
    } else if message.contains("is already in use") {
        Conflict::NameInUse
    } else {
        Conflict::Other
    }
}

/// The ulimit an engine error "error setting rlimit type N" names (an
/// engine running without CAP_SYS_RESOURCE, e.g. rootless or nested).
pub fn refused_ulimit(message: &str) -> Option<&'static str> {
    let n: u32 = message
        .split("error setting rlimit type ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    match n {
        3 => Some("stack"),
        8 => Some("memlock"),
        _ => None,
    }
}

/// True when the engine's error on create/start is about GPUs.
pub fn is_gpu_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("could not select device driver")
        || m.contains("nvidia-container")
        || m.contains("cdi device")
        || m.contains("unresolvable cdi devices")
}

fn is_port_taken(message: &str) -> bool {
    message.contains("port is already allocated") || message.contains("address already in use")
}

/// The host port of "Bind for 127.0.0.1:8888 failed: port is already
/// allocated" or "listen tcp4 0.0.0.0:8888: bind: address already in use".
pub fn taken_port(message: &str) -> Option<u16> {
    let address = if let Some(rest) = message.split("Bind for ").nth(1) {
        rest.split(" failed").next()?
    } else {
        let rest = message.split("listen ").nth(1)?;
        rest.split_whitespace().nth(1)?.trim_end_matches(':')
    };
    address.rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
    }

    fn of(status: u16, message: &str) -> DockerError {
        classify("start container", "c".into(), server(status, message))
    }

    #[test]
    fn status_codes() {
        assert!(matches!(
            of(404, "No such container: c"),
            DockerError::NotFound { .. }
        ));
        assert!(matches!(of(304, ""), DockerError::NotModified { .. }));
        assert!(matches!(
            of(
                409,
                "Conflict. The container name \"/c\" is already in use by container \"ab\""
            ),
            DockerError::Conflict {
                reason: Conflict::NameInUse,
                ..
            }
        ));
        assert!(matches!(
            of(409, "removal of container c is already in progress"),
            DockerError::Conflict {
                reason: Conflict::BeingRemoved,
                ..
            }
        ));
        assert!(matches!(of(500, "something else"), DockerError::Api { .. }));
    }

    #[test]
    fn refused_things() {
        let ulimit = "OCI runtime create failed: runc create failed: unable to start container process: error setting rlimit type 8: operation not permitted: unknown";
        assert!(matches!(
            of(500, ulimit),
            DockerError::UlimitRefused {
                name: "memlock",
                ..
            }
        ));
        assert!(matches!(
            of(
                500,
                "could not select device driver \"nvidia\" with capabilities: [[gpu]]"
            ),
            DockerError::GpuRefused { .. }
        ));
        let port = "driver failed programming external connectivity on endpoint x: Bind for 127.0.0.1:18888 failed: port is already allocated";
        assert!(matches!(
            of(500, port),
            DockerError::PortTaken {
                port: Some(18888),
                ..
            }
        ));
        let listen = "driver failed programming external connectivity on endpoint x: Error starting userland proxy: listen tcp4 0.0.0.0:2222: bind: address already in use";
        assert!(matches!(
            of(500, listen),
            DockerError::PortTaken {
                port: Some(2222),
                ..
            }
        ));
        assert_eq!(
            refused_ulimit("error setting rlimit type 3: x"),
            Some("stack")
        );
        assert_eq!(refused_ulimit("error setting rlimit type 7: x"), None);
    }

    #[test]
    fn a_full_disk_is_said_whatever_the_engine() {
        // Podman's compatible API: a 500 listing every format it tried.
        let podman = "failed to load image: payload does not match any of the supported image formats:\n * docker-archive: writing blob: adding layer with blob \"sha256:0de5\": ApplyLayer stdout:  stderr: write /lib/x86_64-linux-gnu/libc.so.6: no space left on device exit status 1";
        assert!(matches!(of(500, podman), DockerError::DiskFull { .. }));
        // Docker: an error in the load's JSON stream.
        let docker = BollardError::DockerStreamError {
            error: "write /var/lib/docker/tmp/x: no space left on device".into(),
        };
        let e = classify("image load", "t".into(), docker);
        assert!(matches!(e, DockerError::DiskFull { .. }), "{e}");
        assert!(e.to_string().contains("ran out of disk space"));
        assert!(matches!(of(500, "something else"), DockerError::Api { .. }));
    }

    #[test]
    fn transport_errors_stay_api() {
        let e = classify("info", "h".into(), BollardError::RequestTimeoutError);
        assert!(matches!(e, DockerError::Api { .. }));
    }

    #[test]
    fn transport_errors_on_an_engine_are_lost_connections() {
        let e = classify_at(
            "unix:///x.sock",
            "create container",
            "c".into(),
            BollardError::RequestTimeoutError,
        );
        assert!(matches!(e, DockerError::Lost { .. }), "{e:?}");
        assert!(e.is_unreachable());
        assert!(e.to_string().contains("unix:///x.sock"), "{e}");
        // An answer of the engine is never a lost connection.
        let e = classify_at(
            "unix:///x.sock",
            "start container",
            "c".into(),
            server(404, "gone"),
        );
        assert!(matches!(e, DockerError::NotFound { .. }));
    }
}
