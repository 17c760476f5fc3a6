//! An ONNX file run by onnxruntime: the image's Python runs
//! `python/ort_worker.py` (embedded), and batches go to it over a pipe as
//! raw float32. The harness keeps decoding and preprocessing, so an
//! exported model sees exactly the inputs the harness's own model sees.
//!
//! May use: nothing else of the crate.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The worker's source, run with `python3 -c`.
const WORKER: &str = include_str!("python/ort_worker.py");

/// Errors of an onnxruntime session.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot start {python} for onnxruntime: {source} (set TORCHENV_PYTHON to a Python with onnxruntime)")]
    Spawn {
        python: String,
        source: std::io::Error,
    },
    #[error("onnxruntime cannot load {path}: {message}")]
    Load { path: String, message: String },
    #[error("{path}: {what}")]
    Model { path: String, what: String },
    #[error("onnxruntime failed on {path}: {message}")]
    Run { path: String, message: String },
}

/// The Python that runs onnxruntime and torch.onnx: `TORCHENV_PYTHON`, else
/// `python3` on `PATH` (the image's venv comes first there).
pub fn python() -> String {
    std::env::var("TORCHENV_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// An input or output as onnxruntime reports it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ArgSpec {
    pub name: String,
    /// Sizes, or the name of a dynamic dimension.
    pub shape: Vec<serde_json::Value>,
    /// `tensor(float)`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl ArgSpec {
    /// The dimension `i` when fixed.
    pub fn fixed(&self, i: usize) -> Option<u64> {
        self.shape.get(i).and_then(serde_json::Value::as_u64)
    }

    /// As the report writes it.
    pub fn to_report(&self) -> report::TensorSpec {
        report::TensorSpec {
            name: self.name.clone(),
            shape: self
                .shape
                .iter()
                .map(|d| match d.as_u64() {
                    Some(n) => report::Dim::Fixed(n),
                    None => report::Dim::Dynamic(d.as_str().unwrap_or("?").to_string()),
                })
                .collect(),
            dtype: match self.kind.as_str() {
                "tensor(float)" => "float32".to_string(),
                other => other.to_string(),
            },
        }
    }
}

/// What the worker says when the file is loaded.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SessionInfo {
    pub onnxruntime: String,
    pub providers: Vec<String>,
    /// The graph optimization level the session runs with.
    pub optimization: String,
    pub inputs: Vec<ArgSpec>,
    pub outputs: Vec<ArgSpec>,
    /// The file's metadata (`torchenv.model`, … when the harness exported it).
    pub metadata: BTreeMap<String, String>,
}

/// A loaded ONNX file, ready for batches.
pub struct OnnxSession {
    path: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<std::thread::JoinHandle<String>>,
    pub info: SessionInfo,
}

impl OnnxSession {
    /// Loads `path` with `threads` intra-op threads and checks that it takes
    /// one float32 N×3×`crop`×`crop` input.
    pub fn open(path: &Path, threads: usize, crop: u32) -> Result<OnnxSession, OnnxError> {
        let python = python();
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(WORKER)
            .arg(path)
            .arg(threads.max(1).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| OnnxError::Spawn {
                python: python.clone(),
                source,
            })?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut err = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let mut session = OnnxSession {
            path: path.to_path_buf(),
            child,
            stdin,
            stdout,
            stderr: Some(stderr),
            info: SessionInfo {
                onnxruntime: String::new(),
                providers: Vec::new(),
                optimization: String::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                metadata: BTreeMap::new(),
            },
        };
        let hello = match read {
            Ok(n) if n > 0 => serde_json::from_str::<SessionInfo>(&line).ok(),
            _ => None,
        };
        let Some(info) = hello else {
            return Err(OnnxError::Load {
                path: path.display().to_string(),
                message: session.failure(),
            });
        };
        session.info = info;
        session.check_input(crop)?;
        Ok(session)
    }

    fn check_input(&self, crop: u32) -> Result<(), OnnxError> {
        let bad = |what: String| OnnxError::Model {
            path: self.path.display().to_string(),
            what,
        };
        let [input] = self.info.inputs.as_slice() else {
            return Err(bad(format!(
                "the model has {} inputs; the harness feeds one image batch",
                self.info.inputs.len()
            )));
        };
        let want = [None, Some(3), Some(u64::from(crop)), Some(u64::from(crop))];
        let fits = input.shape.len() == 4
            && want
                .iter()
                .enumerate()
                .all(|(i, w)| w.is_none() || input.fixed(i) == *w);
        if !fits || input.kind != "tensor(float)" {
            return Err(bad(format!(
                "input {} is {}, but the model's preprocessing makes float32[N, 3, {crop}, {crop}]",
                input.name,
                input.to_report().describe()
            )));
        }
        Ok(())
    }

    /// `onnxruntime 1.32.0 (CPUExecutionProvider, graph optimization extended)`.
    pub fn describe(&self) -> String {
        format!(
            "onnxruntime {} ({}, graph optimization {})",
            self.info.onnxruntime,
            self.info.providers.join(", "),
            self.info.optimization
        )
    }

    /// The fixed batch size of the file, if it has one.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.info.inputs[0].fixed(0).map(|n| n as usize)
    }

    /// Logits of `n` preprocessed images (`data` is n×3×crop×crop float32),
    /// as n rows. A file with a fixed batch size gets batches of exactly
    /// that size (the last one padded with zeros, its padding dropped).
    pub fn run(&mut self, data: &[f32], n: usize, crop: u32) -> Result<Vec<Vec<f32>>, OnnxError> {
        let plane = 3 * crop as usize * crop as usize;
        let step = self.fixed_batch().unwrap_or(n.max(1));
        let mut rows = Vec::with_capacity(n);
        for start in (0..n).step_by(step) {
            let take = step.min(n - start);
            let mut batch = data[start * plane..(start + take) * plane].to_vec();
            batch.resize(step * plane, 0.0);
            let out = self.round_trip(&batch, step, crop)?;
            rows.extend(out.into_iter().take(take));
        }
        Ok(rows)
    }

    fn round_trip(
        &mut self,
        batch: &[f32],
        n: usize,
        crop: u32,
    ) -> Result<Vec<Vec<f32>>, OnnxError> {
        let sent = self.send(batch, n, crop);
        let got = sent.and_then(|()| self.receive(n));
        got.map_err(|_| OnnxError::Run {
            path: self.path.display().to_string(),
            message: self.failure(),
        })
    }

    fn send(&mut self, batch: &[f32], n: usize, crop: u32) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("worker closed"))?;
        let mut bytes = Vec::with_capacity(16 + 4 * batch.len());
        for d in [n as u32, 3, crop, crop] {
            bytes.extend_from_slice(&d.to_le_bytes());
        }
        for v in batch {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        stdin.write_all(&bytes)?;
        stdin.flush()
    }

    fn receive(&mut self, n: usize) -> std::io::Result<Vec<Vec<f32>>> {
        let mut header = [0u8; 8];
        self.stdout.read_exact(&mut header)?;
        let rows = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let cols = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        if rows != n {
            return Err(std::io::Error::other(format!("{rows} rows for {n} images")));
        }
        let mut raw = vec![0u8; 4 * rows * cols];
        self.stdout.read_exact(&mut raw)?;
        let values: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        Ok(values.chunks(cols.max(1)).map(<[f32]>::to_vec).collect())
    }

    /// The worker's own words when it stopped: the last line of its
    /// traceback (the Python exception), else its exit status.
    fn failure(&mut self) -> String {
        self.stdin = None;
        let status = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::trim);
        match (last, status) {
            (Some(line), _) => format!("{line}{}", missing_module_hint(line)),
            (None, Ok(s)) => format!("the onnxruntime worker stopped ({s})"),
            (None, Err(e)) => format!("the onnxruntime worker stopped: {e}"),
        }
    }
}

/// A hint when the Python lacks a package the export needs.
pub fn missing_module_hint(line: &str) -> &'static str {
    if line.contains("No module named 'onnx") {
        " — the environment needs `onnx` and `onnxruntime` in its `pip:` (environments.yaml), then `cargo xtask lock`"
    } else {
        ""
    }
}

impl Drop for OnnxSession {
    fn drop(&mut self) {
        // End of input ends the worker.
        self.stdin = None;
        let _ = self.child.wait();
    }
}
