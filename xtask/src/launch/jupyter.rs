//! The Jupyter token: the spec's, else the one kept from the last `up`, else
//! 32 fresh random bytes (hex). It lives in a 0600 file in the state dir,
//! bind-mounted read-only into the container — never in the image or in the
//! container's `docker inspect`-visible environment.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const TOKEN_FILE: &str = "jupyter_token";

/// 32 bytes from the kernel's CSPRNG, hex encoded (64 characters).
pub fn generate_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(Error::io("read /dev/urandom"))?;
    Ok(hex::encode(bytes))
}

/// Writes (or keeps) the token file in `state_dir` and returns its path and
/// the token.
pub fn ensure_token(state_dir: &Path, from_spec: Option<&str>) -> Result<(PathBuf, String)> {
    let path = state_dir.join(TOKEN_FILE);
    let existing = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| t.len() >= 32);
    let token = match (from_spec, existing) {
        (Some(t), _) => t.to_string(),
        (None, Some(t)) => t,
        (None, None) => generate_token()?,
    };
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(Error::io(format!("create {}", path.display())))?;
    f.write_all(token.as_bytes())
        .map_err(Error::io(format!("write {}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(Error::io(format!("chmod {}", path.display())))?;
    Ok((path, token))
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
