//! Whether the lock belongs to the spec as it is now: [`check_fresh`] is
//! what every command that builds or runs an environment asks first.
//!
//! May use: `cache`, `lock::error`, `lock::file`, `spec`.

use super::error::LockError;
use super::file::{Lock, LockedEnv};
use crate::cache;
use crate::spec::{Base, Env, Spec};

/// The lock entry for `env`, checked to belong to the spec as it is now.
pub fn check_fresh<'a>(spec: &Spec, lock: &'a Lock, env: &Env) -> Result<&'a LockedEnv, LockError> {
    let stale = |why: String| LockError::OutOfDate {
        env: env.name.clone(),
        why,
    };
    let locked = lock
        .environments
        .get(&env.name)
        .ok_or_else(|| stale("no entry".into()))?;
    if locked.inputs != inputs_hash(env) {
        return Err(stale("the spec changed since it was locked".into()));
    }
    check_cuda(spec, env, locked)?;
    if let Base::Debian { .. } = env.base {
        if !lock.bases.contains_key(&locked.base) {
            return Err(stale(format!("base `{}` is missing", locked.base)));
        }
    }
    Ok(locked)
}

/// A spec `cuda:` that disagrees with the resolved wheels names both values.
pub fn check_cuda(spec: &Spec, env: &Env, locked: &LockedEnv) -> Result<(), LockError> {
    match &env.cuda {
        Some(expected) if *expected != locked.cuda => Err(spec
            .error_at(
                &["environments", &env.name, "cuda"],
                format!(
                    "`{}` expects CUDA {expected}, but torch {} resolves to CUDA {} (cuDNN {})",
                    env.name, env.torch, locked.cuda, locked.cudnn
                ),
                &format!("spec says {expected}, wheels say {}", locked.cuda),
                Some(format!(
                    "set `cuda: \"{}\"`, or choose the torch version built for CUDA {expected}",
                    locked.cuda
                )),
            )
            .into()),
        _ => Ok(()),
    }
}

/// Hash of the spec fields that decide an environment's lock entry.
pub fn inputs_hash(env: &Env) -> String {
    let mut inputs = serde_json::json!({
        "torch": env.torch,
        "torchvision": env.torchvision,
        "python": env.python,
        "base": env.base,
        "pip": env.pip,
        "apt": env.apt,
    });
    // Only when set, so entries locked before torchaudio existed stay fresh.
    if let Some(torchaudio) = &env.torchaudio {
        inputs["torchaudio"] = torchaudio.as_str().into();
    }
    if env.cuda_toolkit {
        inputs["cuda_toolkit"] = true.into();
    }
    cache::sha256_bytes(inputs.to_string().as_bytes())[..16].to_string()
}
