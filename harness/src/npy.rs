//! Minimal `.npy` (format 1.0, little-endian float32, C order) reader and
//! writer for the debug subcommands and parity tests.

use std::path::Path;

/// Errors reading or writing `.npy` files.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a float32 C-order .npy file: {msg}")]
    Format { path: String, msg: String },
}

fn header(shape: &[usize]) -> Vec<u8> {
    let shape_str = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Appends `data` as little-endian bytes, a block at a time.
fn write_le(w: &mut impl std::io::Write, data: &[f32]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
    for block in data.chunks(16 * 1024) {
        buf.clear();
        buf.extend(block.iter().flat_map(|v| v.to_le_bytes()));
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Writes `data` with `shape` as `<f4`.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let mut w = F32Writer::create(path, shape)?;
    w.append(data)?;
    w.finish()
}

/// Streams a `<f4` array to `path`: written to a sibling temporary file and
/// renamed into place by [`F32Writer::finish`] (dropped unfinished: removed).
pub struct F32Writer {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl F32Writer {
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self, NpyError> {
        use std::io::Write;
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let tmp = path.with_file_name(name);
        let io = |source| NpyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).map_err(io)?);
        let mut this = F32Writer {
            path: path.to_path_buf(),
            tmp,
            file: None,
        };
        file.write_all(&header(shape)).map_err(io)?;
        this.file = Some(file);
        Ok(this)
    }

    fn err(&self, source: std::io::Error) -> NpyError {
        NpyError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    pub fn append(&mut self, data: &[f32]) -> Result<(), NpyError> {
        let file = self.file.as_mut().expect("writer not finished");
        write_le(file, data).map_err(|e| self.err(e))
    }

    pub fn finish(mut self) -> Result<(), NpyError> {
        let file = self.file.take().expect("writer not finished");
        file.into_inner().map_err(|e| self.err(e.into_error()))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| self.err(e))
    }
}

impl Drop for F32Writer {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a `<f4` C-order array: (shape, data).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: p.clone(),
        source,
    })?;
    let fmt = |msg: &str| NpyError::Format {
        path: p.clone(),
        msg: msg.to_string(),
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(fmt("bad magic"));
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(fmt("unsupported version")),
    };
    let header = std::str::from_utf8(
        bytes
            .get(hstart..hstart + hlen)
            .ok_or_else(|| fmt("truncated header"))?,
    )
    .map_err(|_| fmt("header is not utf-8"))?;
    if !header.contains("'<f4'") {
        return Err(fmt("dtype is not <f4"));
    }
    if header.contains("'fortran_order': True") {
        return Err(fmt("fortran order"));
    }
    let shape_start =
        header.find("'shape': (").ok_or_else(|| fmt("no shape"))? + "'shape': (".len();
    let shape_end = header[shape_start..]
        .find(')')
        .ok_or_else(|| fmt("no shape"))?
        + shape_start;
    let shape: Vec<usize> = header[shape_start..shape_end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| fmt("bad shape")))
        .collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &bytes[hstart + hlen..];
    if body.len() != n * 4 {
        return Err(fmt("data size does not match shape"));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        super::write_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap();
        let (shape, data) = super::read_f32(&p).unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(data[5], -6.5);
    }
}
