//! `.safetensors` files via the `safetensors` crate.
//!
//! May use: `checkpoint`.

use super::CheckpointError;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;
use tch::{Kind, Tensor};

/// Header: little-endian u64 length, then a JSON object.
pub(super) fn looks_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 9 && bytes[8] == b'{'
}

pub(super) fn read(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let err = |msg: String| CheckpointError::Safetensors {
        path: path.to_owned(),
        msg,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(e.to_string()))?;
    let mut names = st.names();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let view = st.tensor(name).map_err(|e| err(e.to_string()))?;
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::I16 => Kind::Int16,
            Dtype::I8 => Kind::Int8,
            Dtype::U8 => Kind::Uint8,
            Dtype::BOOL => Kind::Bool,
            other => return Err(err(format!("tensor {name}: unsupported dtype {other:?}"))),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| err(format!("tensor {name}: {e}")))?;
        out.push((name.to_string(), t));
    }
    Ok(out)
}
