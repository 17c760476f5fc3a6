//! The Jupyter token: the spec's, else the one kept from the last `up`, else
//! 32 fresh random bytes (hex). It lives in a 0600 file in the state dir,
//! bind-mounted read-only into the container — never in the image or in the
//! container's `docker inspect`-visible environment.
//!
//! May use: `launch`.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{LaunchError, Result};

pub const TOKEN_FILE: &str = "jupyter_token";

/// 32 bytes from the kernel's CSPRNG, hex encoded (64 characters).
pub fn generate_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(LaunchError::io("read /dev/urandom"))?;
    Ok(hex::encode(bytes))
}

/// Writes (or keeps) the token file in `state_dir` and returns its path and
/// the token. The file is written in place (never replaced), since a
/// running container has it bind-mounted; concurrent `up`s agree on one
/// generated token (exclusive create, the loser reads the winner's).
pub fn ensure_token(state_dir: &Path, from_spec: Option<&str>) -> Result<(PathBuf, String)> {
    let path = state_dir.join(TOKEN_FILE);
    let existing = read_token(state_dir).filter(|t| t.len() >= 32);
    match (from_spec, existing) {
        (None, Some(t)) => Ok((path, t)),
        (Some(s), Some(t)) if s == t => Ok((path, t)),
        (Some(s), _) => {
            write(&path, s, false)?;
            Ok((path, s.to_string()))
        }
        (None, None) => {
            let token = generate_token()?;
            match write(&path, &token, true) {
                Ok(()) => Ok((path, token)),
                Err(LaunchError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    // Another `up` is writing it; wait for its content.
                    for _ in 0..50 {
                        if let Some(t) = read_token(state_dir).filter(|t| t.len() >= 32) {
                            return Ok((path, t));
                        }
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    // An empty or short file left behind: take it over.
                    write(&path, &token, false)?;
                    Ok((path, token))
                }
                Err(e) => Err(e),
            }
        }
    }
}

fn write(path: &Path, token: &str, exclusive: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if exclusive {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut f = options
        .open(path)
        .map_err(LaunchError::io(format!("create {}", path.display())))?;
    f.write_all(token.as_bytes())
        .map_err(LaunchError::io(format!("write {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(LaunchError::io(format!("chmod {}", path.display())))
}

/// The token of a running environment, for `status` and idempotent `up`.
pub fn read_token(state_dir: &Path) -> Option<String> {
    std::fs::read_to_string(state_dir.join(TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_64_hex_chars_0600_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (path, t1) = ensure_token(dir.path(), None).unwrap();
        assert_eq!(t1.len(), 64);
        assert!(t1.chars().all(|c| c.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (_, t2) = ensure_token(dir.path(), None).unwrap();
        assert_eq!(t1, t2);
        assert_ne!(generate_token().unwrap(), t1);
    }
}
