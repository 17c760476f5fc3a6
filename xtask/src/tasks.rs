//! Small read-only tasks: `list` and `show`.

use std::path::Path;

use crate::error::Result;
use crate::lock::{self, LockOptions};
use crate::spec::{Base, Spec};

/// `cargo xtask list`: one line per environment.
pub fn list(spec_path: &Path) -> Result<()> {
    let spec = Spec::load(spec_path)?;
    for env in spec.environments.values() {
        let base = match &env.base {
            Base::Debian { suite } => format!("debian {suite}"),
            Base::Image { reference } => reference.clone(),
        };
        let marker = if env.name == spec.default {
            " (default)"
        } else {
            ""
        };
        println!(
            "{:<28} torch {:<8} torchvision {:<8} cuda {:<6} python {} on {base}{marker}",
            env.name,
            env.torch,
            env.torchvision,
            env.cuda.as_deref().unwrap_or("?"),
            env.python,
        );
    }
    Ok(())
}

/// `cargo xtask show [ENV] [--json]`: the environment, every default filled in.
pub fn show(spec_path: &Path, name: Option<&str>, json: bool) -> Result<()> {
    let spec = Spec::load(spec_path)?;
    let env = spec.env(name)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(env).expect("spec serializes")
        );
    } else {
        print!("{}", serde_yaml::to_string(env).expect("spec serializes"));
    }
    Ok(())
}

/// `cargo xtask lock [ENV|--all] [--upgrade]`.
pub fn lock(spec_path: &Path, env: Option<&str>, all: bool, upgrade: bool) -> Result<()> {
    let spec = Spec::load(spec_path)?;
    lock::lock(&spec, &lock_path(&spec), LockOptions { env, all, upgrade })
}

/// `environments.lock` beside the spec.
pub fn lock_path(spec: &Spec) -> std::path::PathBuf {
    spec.path.with_file_name(lock::LOCK_FILE)
}
