//! Reading checkpoints without Python: torch `.pth` files in both the zip
//! format (torch >= 1.6 default) and the legacy pickle format
//! (`_use_new_zipfile_serialization=False`), and `.safetensors`.
//!
//! `tch::nn::VarStore::load` cannot read plain `torch.save` pickles, so the
//! pickle is interpreted here (see [`pickle`]) and tensors are rebuilt from
//! their storages with the recorded size/stride/offset.
//!
//! May use: nothing else of the crate.

mod legacy;
pub mod pickle;
mod safetensors_file;
mod torch_zip;

use pickle::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Errors while reading a checkpoint; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {source}")]
    Pickle {
        path: PathBuf,
        source: pickle::PickleError,
    },
    #[error("checkpoint {path}: zip archive: {msg}")]
    Zip { path: PathBuf, msg: String },
    #[error("checkpoint {path}: safetensors: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    #[error("checkpoint {path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("checkpoint {path}: sha256 is {actual}, expected {expected}")]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// A loaded state dict: parameter/buffer name → tensor (CPU, contiguous),
/// in file order.
pub struct StateDict {
    pub tensors: Vec<(String, Tensor)>,
    /// Lowercase hex sha256 of the checkpoint file.
    pub sha256: String,
    /// Which reader was used: `torch-zip`, `torch-legacy` or `safetensors`.
    pub format: &'static str,
}

impl StateDict {
    /// Names → tensors map.
    pub fn into_map(self) -> HashMap<String, Tensor> {
        self.tensors.into_iter().collect()
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a checkpoint, verifying its sha256 when `expected_sha256` is given.
pub fn load(path: &Path, expected_sha256: Option<&str>) -> Result<StateDict, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })?;
    let sha256 = sha256_hex(&bytes);
    if let Some(expected) = expected_sha256 {
        if !expected.eq_ignore_ascii_case(&sha256) {
            return Err(CheckpointError::Sha256Mismatch {
                path: path.to_owned(),
                expected: expected.to_ascii_lowercase(),
                actual: sha256,
            });
        }
    }
    let (tensors, format) = if bytes.starts_with(b"PK\x03\x04") {
        (torch_zip::read(path, &bytes)?, "torch-zip")
    } else if legacy::looks_legacy(&bytes) {
        (legacy::read(path, &bytes)?, "torch-legacy")
    } else if safetensors_file::looks_safetensors(&bytes) {
        (safetensors_file::read(path, &bytes)?, "safetensors")
    } else {
        return Err(CheckpointError::Format {
            path: path.to_owned(),
            msg: "unknown format (expected a torch zip, legacy torch pickle or safetensors file)"
                .into(),
        });
    };
    Ok(StateDict {
        tensors: strip_module_prefix(tensors),
        sha256,
        format,
    })
}

/// Removes a DataParallel `module.` prefix when every key has it.
fn strip_module_prefix(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    if !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with("module.")) {
        tensors
            .into_iter()
            .map(|(k, t)| (k["module.".len()..].to_string(), t))
            .collect()
    } else {
        tensors
    }
}

/// Element type of a torch storage class name (`FloatStorage`, …).
pub(crate) fn storage_kind(name: &str) -> Option<(Kind, usize)> {
    Some(match name {
        "FloatStorage" => (Kind::Float, 4),
        "DoubleStorage" => (Kind::Double, 8),
        "HalfStorage" => (Kind::Half, 2),
        "BFloat16Storage" => (Kind::BFloat16, 2),
        "LongStorage" => (Kind::Int64, 8),
        "IntStorage" => (Kind::Int, 4),
        "ShortStorage" => (Kind::Int16, 2),
        "CharStorage" => (Kind::Int8, 1),
        "ByteStorage" => (Kind::Uint8, 1),
        "BoolStorage" => (Kind::Bool, 1),
        _ => return None,
    })
}

/// A storage reference from a persistent id:
/// `('storage', torch.XStorage, key, location, numel, ...)`.
pub(crate) struct StorageRef {
    pub key: String,
    pub kind: Kind,
    pub elem_size: usize,
}

pub(crate) fn parse_persistent_id(pid: &Value) -> Result<StorageRef, String> {
    let items = pid.as_seq().ok_or("persistent id is not a tuple")?;
    if items.first().and_then(Value::as_str) != Some("storage") || items.len() < 3 {
        return Err("persistent id is not a ('storage', ...) tuple".into());
    }
    let type_name = match &items[1] {
        Value::Global { name, .. } => name.clone(),
        Value::Str(s) => s.clone(),
        _ => return Err("storage type is not a global".into()),
    };
    let (kind, elem_size) =
        storage_kind(&type_name).ok_or_else(|| format!("unsupported storage type {type_name}"))?;
    let key = match &items[2] {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        _ => return Err("storage key is not a string".into()),
    };
    Ok(StorageRef {
        key,
        kind,
        elem_size,
    })
}

/// Turns the unpickled object into named tensors, calling `storage` to
/// fetch the raw bytes of a storage key.
pub(crate) fn collect_tensors(
    root: &Value,
    storage: &mut dyn FnMut(&StorageRef) -> Result<Vec<u8>, String>,
) -> Result<Vec<(String, Tensor)>, String> {
    let mut entries = dict_entries(root).ok_or("checkpoint is not a dict")?;
    // Unwrap {"state_dict": {...}} / {"model": {...}} style wrappers.
    for wrapper in ["state_dict", "model_state_dict", "model"] {
        if let Some((_, inner)) = entries.iter().find(|(k, _)| k == wrapper) {
            if let Some(inner_entries) = dict_entries(inner) {
                entries = inner_entries;
                break;
            }
        }
    }
    let mut cache: HashMap<String, Tensor> = HashMap::new();
    let mut out = Vec::new();
    for (name, value) in entries {
        match rebuild_tensor(&value, storage, &mut cache) {
            Ok(Some(t)) => out.push((name, t)),
            Ok(None) => {} // non-tensor entry (e.g. an epoch counter)
            Err(e) => return Err(format!("tensor {name}: {e}")),
        }
    }
    if out.is_empty() {
        return Err("no tensors found in checkpoint".into());
    }
    Ok(out)
}

/// Entries of a dict or an `OrderedDict(...)` call, with string keys.
fn dict_entries(v: &Value) -> Option<Vec<(String, Value)>> {
    let dict = match v {
        Value::Dict(d) => d.clone(),
        Value::Call {
            state: Some(state), ..
        } => match state.as_ref() {
            Value::Dict(d) => d.clone(),
            _ => return None,
        },
        Value::Call { state: None, .. } => return Some(Vec::new()),
        _ => return None,
    };
    let d = dict.borrow();
    Some(
        d.iter()
            .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v.clone())))
            .collect(),
    )
}

fn rebuild_tensor(
    v: &Value,
    storage: &mut dyn FnMut(&StorageRef) -> Result<Vec<u8>, String>,
    cache: &mut HashMap<String, Tensor>,
) -> Result<Option<Tensor>, String> {
    let Value::Call { callable, args, .. } = v else {
        return Ok(None);
    };
    let Value::Global { name, .. } = callable.as_ref() else {
        return Ok(None);
    };
    match name.as_str() {
        "_rebuild_tensor_v2" | "_rebuild_tensor" => {
            if args.len() < 4 {
                return Err("_rebuild_tensor_v2 with too few arguments".into());
            }
            let Value::Persistent(pid) = &args[0] else {
                return Err("tensor storage is not a persistent id".into());
            };
            let sref = parse_persistent_id(pid)?;
            let offset = args[1].as_int().ok_or("storage offset is not an int")?;
            let size = int_list(&args[2]).ok_or("size is not a tuple of ints")?;
            let stride = int_list(&args[3]).ok_or("stride is not a tuple of ints")?;
            if !cache.contains_key(&sref.key) {
                let bytes = storage(&sref)?;
                if bytes.len() % sref.elem_size != 0 {
                    return Err(format!(
                        "storage {} has {} bytes, not a multiple of {}",
                        sref.key,
                        bytes.len(),
                        sref.elem_size
                    ));
                }
                let numel = (bytes.len() / sref.elem_size) as i64;
                let t = Tensor::f_from_data_size(&bytes, &[numel], sref.kind)
                    .map_err(|e| e.to_string())?;
                cache.insert(sref.key.clone(), t);
            }
            let base = &cache[&sref.key];
            let numel = base.size()[0];
            // Bounds check before as_strided (which does not check storage size).
            let needed = if size.contains(&0) {
                0
            } else {
                offset
                    + size
                        .iter()
                        .zip(&stride)
                        .map(|(s, st)| (s - 1) * st)
                        .sum::<i64>()
                    + 1
            };
            if needed > numel {
                return Err(format!(
                    "view needs {needed} elements but storage {} has {numel}",
                    sref.key
                ));
            }
            let t = base
                .f_as_strided(size.as_slice(), stride.as_slice(), offset)
                .and_then(|t| t.f_contiguous())
                .map_err(|e| e.to_string())?;
            Ok(Some(t))
        }
        "_rebuild_parameter" | "_rebuild_parameter_with_state" => match args.first() {
            Some(inner) => rebuild_tensor(inner, storage, cache),
            None => Err("_rebuild_parameter without data".into()),
        },
        _ => Ok(None),
    }
}

fn int_list(v: &Value) -> Option<Vec<i64>> {
    v.as_seq()?.iter().map(Value::as_int).collect()
}
