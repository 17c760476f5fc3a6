//! Legacy (pre-1.6, `_use_new_zipfile_serialization=False`) torch format:
//! five concatenated pickles — magic number, protocol version, sys_info,
//! the object itself (storages as persistent ids), the list of storage keys
//! — followed by the raw storages in key order, each prefixed by its element
//! count as a little-endian `i64`.
//!
//! May use: `checkpoint`, `checkpoint::pickle`.

use super::{collect_tensors, pickle, CheckpointError, StorageRef};
use pickle::Value;
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

/// The 10-byte LONG1 encoding of torch's magic number 0x1950a86a20f9469cfc6c.
const MAGIC_LONG1: [u8; 12] = [
    0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// Whether `bytes` start with the legacy magic-number pickle.
pub(super) fn looks_legacy(bytes: &[u8]) -> bool {
    bytes.len() > 14 && bytes[0] == 0x80 && bytes[2..14] == MAGIC_LONG1
}

pub(super) fn read(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let fmt = |msg: String| CheckpointError::Format {
        path: path.to_owned(),
        msg,
    };
    let pk = |source| CheckpointError::Pickle {
        path: path.to_owned(),
        source,
    };
    // The magic number is wider than 64 bits; skip its pickle by hand.
    // Layout: PROTO n, LONG1 10 bytes, STOP.
    let mut pos = 2 + MAGIC_LONG1.len();
    if bytes.get(pos) != Some(&b'.') {
        return Err(fmt("malformed magic number pickle".into()));
    }
    pos += 1;
    let (protocol, next) = pickle::unpickle(bytes, pos).map_err(pk)?;
    if protocol.as_int() != Some(1001) {
        return Err(fmt(format!("unsupported legacy protocol {protocol:?}")));
    }
    let (_sys_info, next) = pickle::unpickle(bytes, next).map_err(pk)?;
    let (root, next) = pickle::unpickle(bytes, next).map_err(pk)?;
    let (keys, mut pos) = pickle::unpickle(bytes, next).map_err(pk)?;
    let keys: Vec<String> = keys
        .as_seq()
        .ok_or_else(|| fmt("storage key list is not a list".into()))?
        .iter()
        .map(|k| match k {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            _ => Err(fmt("storage key is not a string".into())),
        })
        .collect::<Result<_, _>>()?;

    // Element sizes come from the persistent ids inside `root`; collect the
    // storages lazily: first record where each key's bytes start.
    let mut offsets: HashMap<String, (usize, u64)> = HashMap::new();
    let mut sizes: HashMap<String, usize> = HashMap::new();
    collect_elem_sizes(&root, &mut sizes);
    for key in &keys {
        let count_bytes = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| fmt(format!("truncated before storage {key}")))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(count_bytes);
        let numel = u64::from_le_bytes(a);
        pos += 8;
        let elem = *sizes
            .get(key)
            .ok_or_else(|| fmt(format!("storage {key} is not referenced by any tensor")))?;
        let len = numel
            .checked_mul(elem as u64)
            .ok_or_else(|| fmt(format!("storage {key} too large")))?;
        offsets.insert(key.clone(), (pos, len));
        pos = pos
            .checked_add(len as usize)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| fmt(format!("truncated inside storage {key}")))?;
    }
    let mut storage = |s: &StorageRef| -> Result<Vec<u8>, String> {
        let (start, len) = offsets
            .get(&s.key)
            .ok_or_else(|| format!("storage {} missing from file", s.key))?;
        Ok(bytes[*start..*start + *len as usize].to_vec())
    };
    collect_tensors(&root, &mut storage).map_err(fmt)
}

/// Walks the object graph recording the element size of each storage key.
fn collect_elem_sizes(v: &Value, out: &mut HashMap<String, usize>) {
    match v {
        Value::Persistent(pid) => {
            if let Ok(s) = super::parse_persistent_id(pid) {
                out.insert(s.key, s.elem_size);
            }
        }
        Value::Tuple(items) => items.iter().for_each(|i| collect_elem_sizes(i, out)),
        Value::List(l) => l.borrow().iter().for_each(|i| collect_elem_sizes(i, out)),
        Value::Dict(d) => d.borrow().iter().for_each(|(k, v)| {
            collect_elem_sizes(k, out);
            collect_elem_sizes(v, out);
        }),
        Value::Call {
            callable,
            args,
            state,
        } => {
            collect_elem_sizes(callable, out);
            args.iter().for_each(|i| collect_elem_sizes(i, out));
            if let Some(s) = state {
                collect_elem_sizes(s, out);
            }
        }
        _ => {}
    }
}
