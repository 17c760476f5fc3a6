//! `cargo xtask build --verify`: is the image reproducible? The build is
//! made again from scratch in a namespace of its own (`torchenv-verify/…`
//! tags, so no stage image of the real build is reused), and every layer
//! digest (diff id) and the image id are compared with the image the
//! normal build gives; the base root file system is bootstrapped again
//! into a scratch folder and its sha256 compared with the lock's. The
//! scratch tags are removed afterwards, whatever happened (identical
//! layers are stored once, so this frees what differed).
//!
//! May use: `build::{bootstrap, image}`, `docker`, `lock` (data model),
//! `spec`, `progress`.

use std::path::Path;

use super::bootstrap::{self, BootstrapRequest};
use super::image::{self, Plan};
use super::BuildError;
use crate::docker::Docker;
use crate::lock::Lock;
use crate::progress::Progress;
use crate::spec::{Env, Spec};

/// Prefix of the scratch namespace's repositories.
pub const SCRATCH: &str = "torchenv-verify/";

/// One compared item: what the normal build has, what the rebuild gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compared {
    pub what: String,
    pub built: String,
    pub rebuilt: String,
}

impl Compared {
    pub fn same(&self) -> bool {
        self.built == self.rebuilt
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub tag: String,
    /// The base rootfs (when the lock bootstraps it), each layer, the image id.
    pub items: Vec<Compared>,
}

impl Verification {
    pub fn reproducible(&self) -> bool {
        self.items.iter().all(Compared::same)
    }

    /// One line per item: `same` or `DIFFERS`, the digests.
    pub fn lines(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|c| {
                let verdict = if c.same() { "same   " } else { "DIFFERS" };
                if c.same() {
                    format!("{verdict} {:<24} {}", c.what, short(&c.built))
                } else {
                    format!(
                        "{verdict} {:<24} built {} rebuilt {}",
                        c.what,
                        short(&c.built),
                        short(&c.rebuilt)
                    )
                }
            })
            .collect()
    }
}

fn short(digest: &str) -> &str {
    let d = digest.strip_prefix("sha256:").unwrap_or(digest);
    &d[..d.len().min(16)]
}

/// `plan` with every tag the build makes moved into [`SCRATCH`]; labels
/// (part of the image config) stay as they are.
pub fn scratch_plan(plan: &Plan) -> Plan {
    let mut p = plan.clone();
    for tag in [&mut p.tag, &mut p.venv_tag, &mut p.system_tag] {
        *tag = tag.replacen("torchenv/", SCRATCH, 1);
    }
    p
}

/// Builds `env`'s image (when missing), rebuilds it in the scratch
/// namespace and compares them.
pub async fn verify(
    docker: &Docker,
    spec: &Spec,
    lock: &Lock,
    env: &Env,
    harness: &Path,
    progress: &Progress,
) -> Result<Verification, BuildError> {
    let built = image::ensure_image_with(docker, spec, lock, env, Some(harness), progress).await?;
    let plan = image::plan(spec, lock, env, Some(harness))?;
    let mut items = base_rootfs(lock, &plan, progress)?;
    let scratch = scratch_plan(&plan);
    progress.println(format!("{}: rebuilding as {}", plan.env, scratch.tag));
    let rebuilt = image::build_all(docker, lock, &scratch, progress).await;
    let compared = match rebuilt {
        Ok(()) => compare(docker, &built.tag, &scratch.tag).await,
        Err(e) => Err(e),
    };
    for tag in [&scratch.tag, &scratch.system_tag, &scratch.venv_tag] {
        if docker.image_inspect(tag).await.ok().flatten().is_some() {
            let _ = docker.image_remove(tag).await;
        }
    }
    items.extend(compared?);
    Ok(Verification {
        tag: built.tag,
        items,
    })
}

/// The base bootstrapped again into a scratch folder, against the lock's
/// sha256 (nothing to compare for a pinned `REF@sha256:` base).
fn base_rootfs(lock: &Lock, plan: &Plan, progress: &Progress) -> Result<Vec<Compared>, BuildError> {
    let Some(base) = lock.bases.get(&plan.locked.base) else {
        return Ok(Vec::new());
    };
    let scratch = tempfile::tempdir().map_err(BuildError::io("creating a scratch folder"))?;
    let request = BootstrapRequest {
        suite: &base.suite,
        include: &base.include,
        pins: &base.packages,
        source_date_epoch: base.source_date_epoch,
    };
    let got = tokio::task::block_in_place(|| {
        bootstrap::bootstrap_with(request, scratch.path(), progress)
    })?;
    Ok(vec![Compared {
        what: format!("base rootfs ({})", base.suite),
        built: base.rootfs_sha256.clone(),
        rebuilt: got.sha256,
    }])
}

/// Layer by layer, then the image id.
async fn compare(docker: &Docker, built: &str, rebuilt: &str) -> Result<Vec<Compared>, BuildError> {
    let inspect = |tag: &str| {
        let tag = tag.to_string();
        async move {
            let i = docker
                .image_inspect(&tag)
                .await?
                .ok_or_else(|| BuildError::failed(format!("{tag} is missing")))?;
            let layers = i.root_fs.and_then(|r| r.layers).unwrap_or_default();
            Ok::<_, BuildError>((i.id.unwrap_or_default(), layers))
        }
    };
    let (id_a, layers_a) = inspect(built).await?;
    let (id_b, layers_b) = inspect(rebuilt).await?;
    let names = layer_names(layers_a.len());
    let mut out: Vec<Compared> = names
        .into_iter()
        .enumerate()
        .map(|(i, what)| Compared {
            what,
            built: layers_a.get(i).cloned().unwrap_or_default(),
            rebuilt: layers_b.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    if layers_b.len() != layers_a.len() {
        out.push(Compared {
            what: "layer count".into(),
            built: layers_a.len().to_string(),
            rebuilt: layers_b.len().to_string(),
        });
    }
    out.push(Compared {
        what: "image id".into(),
        built: id_a,
        rebuilt: id_b,
    });
    Ok(out)
}

/// Names of an environment image's `n` layers: base layers, then the
/// venv, system and harness layers.
fn layer_names(n: usize) -> Vec<String> {
    let base = n.saturating_sub(3);
    let mut names: Vec<String> = (0..base)
        .map(|i| format!("layer: base {}", i + 1))
        .collect();
    for what in ["layer: /opt/venv", "layer: system", "layer: harness"] {
        if names.len() < n {
            names.push(what.into());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_named_from_the_top() {
        assert_eq!(
            layer_names(4),
            [
                "layer: base 1",
                "layer: /opt/venv",
                "layer: system",
                "layer: harness"
            ]
        );
    }

    #[test]
    fn a_differing_item_is_not_reproducible() {
        let v = Verification {
            tag: "torchenv/x:1".into(),
            items: vec![
                Compared {
                    what: "layer: system".into(),
                    built: "sha256:aa".into(),
                    rebuilt: "sha256:aa".into(),
                },
                Compared {
                    what: "image id".into(),
                    built: "sha256:bb".into(),
                    rebuilt: "sha256:cc".into(),
                },
            ],
        };
        assert!(!v.reproducible());
        assert!(v.lines()[1].starts_with("DIFFERS image id"));
        assert!(v.lines()[0].starts_with("same"));
    }
}
