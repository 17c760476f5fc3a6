//! The literal shape of `environments.yaml`, as serde reads it.
//!
//! Every struct denies unknown keys so a typo is an error with a location,
//! never a silently ignored setting. Fields are optional here; `resolve`
//! merges `defaults:` and the built-in defaults into a complete [`super::Env`].
//!
//! May use: nothing else of the crate.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub version: u32,
    pub default: Option<String>,
    pub registry: Option<String>,
    #[serde(default)]
    pub defaults: RawEnv,
    pub environments: UniqueMap<RawEnv>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnv {
    pub description: Option<String>,
    pub torch: Option<String>,
    pub torchvision: Option<String>,
    pub torchaudio: Option<String>,
    pub cuda: Option<String>,
    pub cuda_toolkit: Option<bool>,
    pub python: Option<String>,
    pub base: Option<RawBase>,
    pub pip: Option<Vec<String>>,
    pub apt: Option<Vec<String>>,
    pub gpus: Option<RawGpus>,
    pub host_ip: Option<String>,
    pub expose: Option<bool>,
    pub jupyter: Option<RawJupyter>,
    pub ssh: Option<RawSsh>,
    pub ports: Option<Vec<RawPort>>,
    pub volumes: Option<Vec<RawVolume>>,
    pub workspace: Option<String>,
    pub shm_size: Option<String>,
    pub ipc: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub security: Option<RawSecurity>,
    pub harness: Option<RawHarness>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBase {
    /// Debian suite bootstrapped from the host's apt sources.
    pub debian: Option<String>,
    /// `REF@sha256:…` for users with a registry.
    pub image: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawGpus {
    Count(u32),
    Word(String),
    Devices(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJupyter {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
    pub public_key: Option<String>,
    pub forwarding: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    pub pids_limit: Option<u32>,
    pub cap_add: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawPort {
    Short(String),
    Long(RawPortLong),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortLong {
    pub host: u16,
    pub container: u16,
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVolume {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHarness {
    pub ci: Option<bool>,
    pub models: Option<Vec<String>>,
    pub dataset: Option<String>,
    pub tolerances: Option<RawTolerances>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTolerances {
    pub top1_drop: Option<f64>,
    pub max_flips: Option<u32>,
    pub prob_abs_cpu: Option<f64>,
    pub prob_abs_gpu: Option<f64>,
}

/// A YAML mapping that rejects duplicate keys (serde_yaml keeps the last one
/// silently, which would hide a copy-pasted environment).
#[derive(Debug)]
pub struct UniqueMap<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of environment names to environments")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate environment `{key}`"
                        )));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(UniqueMap(entries))
            }
        }
        deserializer.deserialize_map(UniqueVisitor(std::marker::PhantomData))
    }
}
