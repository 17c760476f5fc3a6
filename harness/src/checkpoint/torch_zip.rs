//! torch zip format: `<prefix>/data.pkl` plus one entry per storage at
//! `<prefix>/data/<key>` (the prefix is the archive name chosen at save time).
//!
//! May use: `checkpoint`, `checkpoint::pickle`.

use super::{collect_tensors, pickle, CheckpointError};
use std::io::{Cursor, Read};
use std::path::Path;
use tch::Tensor;

pub(super) fn read(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let zip_err = |msg: String| CheckpointError::Zip {
        path: path.to_owned(),
        msg,
    };
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| zip_err(e.to_string()))?;
    let pkl_name = archive
        .file_names()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .map(str::to_string)
        .ok_or_else(|| zip_err("no data.pkl entry".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut pkl = Vec::new();
    archive
        .by_name(&pkl_name)
        .and_then(|mut f| f.read_to_end(&mut pkl).map_err(Into::into))
        .map_err(|e| zip_err(format!("{pkl_name}: {e}")))?;
    let (root, _) = pickle::unpickle(&pkl, 0).map_err(|source| CheckpointError::Pickle {
        path: path.to_owned(),
        source,
    })?;
    let mut storage = |s: &super::StorageRef| -> Result<Vec<u8>, String> {
        let name = format!("{prefix}data/{}", s.key);
        let mut f = archive
            .by_name(&name)
            .map_err(|e| format!("storage entry {name}: {e}"))?;
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| format!("storage entry {name}: {e}"))?;
        Ok(buf)
    };
    collect_tensors(&root, &mut storage).map_err(|msg| CheckpointError::Format {
        path: path.to_owned(),
        msg,
    })
}
