//! Minimal `.npy` (format 1.0, little-endian float32, C order) reader and
//! writer for the debug subcommands and parity tests.
//!
//! May use: nothing else of the crate.

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
/// A path that exists and is not a regular file (`/dev/null`, a FIFO) is
/// written in place: renaming over it would replace the device itself.
pub struct F32Writer {
    path: std::path::PathBuf,
    /// The temporary sibling, `None` when writing in place.
    tmp: Option<std::path::PathBuf>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl F32Writer {
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self, NpyError> {
        use std::io::Write;
        let io = |source| NpyError::Io {
            path: path.display().to_string(),
            source,
        };
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir());
        let tmp = (!special).then(|| {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".partial");
            path.with_file_name(name)
        });
        let target = tmp.as_deref().unwrap_or(path);
        let mut file =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(target).map_err(io)?);
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
        match &self.tmp {
            Some(tmp) => std::fs::rename(tmp, &self.path).map_err(|e| self.err(e)),
            None => Ok(()),
        }
    }
}

impl Drop for F32Writer {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            if let Some(tmp) = &self.tmp {
                let _ = std::fs::remove_file(tmp);
            }
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

    /// `--out /dev/null` must never turn the device into a regular file:
    /// special files (here a FIFO, so a regression cannot hurt the machine)
    /// are written in place, finished or not.
    #[test]
    fn writing_to_a_special_file_keeps_it() {
        use std::io::Read;
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.npy");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Held open read-write (does not block on Linux), so the writer's
        // open does not wait for a reader; the pipe buffer takes the bytes.
        let mut pipe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        super::write_f32(&fifo, &[2], &[1.0, 2.0]).unwrap();
        drop(super::F32Writer::create(&fifo, &[1]).unwrap()); // unfinished
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(!dir.path().join("out.npy.partial").exists());
        let mut buf = vec![0u8; 4096];
        let n = pipe.read(&mut buf).unwrap();
        let tail: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(buf[..n].windows(8).any(|w| w == tail.as_slice()));
    }
}
