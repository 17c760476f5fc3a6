//! `harness export`: the evaluated model as a file teams deploy, and the
//! proof that it computes what the harness measured.
//!
//! 1. The harness's own network (weights loaded strictly, as `eval` does)
//!    is traced through libtorch into TorchScript (`CModule`).
//! 2. ONNX: the image's Python loads that TorchScript and runs
//!    `torch.onnx.export` (`python/onnx_export.py`), then `onnx.checker`.
//! 3. Parity: the same preprocessed images go through the harness's model
//!    and through the exported file (onnxruntime, or libtorch for
//!    TorchScript); logits must agree within the tolerance and every top-1
//!    must be the same.
//! 4. Only then the file and `<file>.parity.json` are renamed into place:
//!    no half-written file ever stands at the output path, and a file that
//!    fails parity is not installed at all.
//!
//! May use: `eval`, `models`, `onnx_session`, `preprocess`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use tch::{CModule, Device, Kind, Tensor};

use crate::eval::{EvalOptions, LoadedModel};
use crate::models::ModelKind;
use crate::onnx_session::{self, OnnxError, OnnxSession};
use crate::preprocess::{self, Preset};

const EXPORT_SCRIPT: &str = include_str!("python/onnx_export.py");

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// ONNX, written by the image's `torch.onnx`, checked with onnxruntime.
    Onnx,
    /// TorchScript (`torch.jit.load`-able), checked with libtorch.
    Torchscript,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::Torchscript => "torchscript",
        }
    }
}

/// The batch dimension of an ONNX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Any batch size (`batch` in the file).
    Dynamic,
    /// Exactly this many images per call.
    Fixed(u32),
}

impl std::str::FromStr for Batch {
    type Err = String;
    fn from_str(s: &str) -> Result<Batch, String> {
        if s == "dynamic" {
            return Ok(Batch::Dynamic);
        }
        match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Batch::Fixed(n)),
            _ => Err(format!("`{s}`: expected `dynamic` or a batch size ≥ 1")),
        }
    }
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Batch::Dynamic => f.write_str("dynamic"),
            Batch::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// Opsets the TorchScript-based exporter writes in every shipped torch.
pub const OPSETS: std::ops::RangeInclusive<u32> = 9..=20;

/// Errors of an export. Everything but [`ExportError::Parity`] is bad
/// input or an unusable output path (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("--out {path}: {what}")]
    Output { path: String, what: String },
    #[error("--opset {0}: the TorchScript-based ONNX exporter writes opsets 9 to 20")]
    Opset(u32),
    #[error("tracing {model}: {source}")]
    Trace {
        model: &'static str,
        source: tch::TchError,
    },
    #[error("torch.onnx.export failed: {0}")]
    OnnxExport(String),
    #[error("parity images: {0}")]
    Images(String),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(
        "the exported file does not compute what the harness measured; it was not written. {0}"
    )]
    Parity(String),
}

impl ExportError {
    /// 5 for a parity failure (a computation came out wrong, as in `cuda`),
    /// else 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExportError::Parity(_) => 5,
            _ => 2,
        }
    }
}

/// The images parity is checked on.
pub struct ParityImages {
    /// As the report names it.
    pub root: String,
    /// (path to read, name in the report).
    pub images: Vec<(PathBuf, String)>,
}

/// One export.
pub struct Request<'a> {
    pub model: ModelKind,
    pub preset: Preset,
    pub weights: report::WeightsInfo,
    pub format: Format,
    pub opset: u32,
    pub batch: Batch,
    pub out: &'a Path,
    pub parity: ParityImages,
    pub tolerance: f64,
    pub workers: usize,
}

/// Exports `model` as `req` says and installs the file and its parity
/// report; returns the report.
pub fn export(model: &mut LoadedModel, req: &Request) -> Result<report::ExportReport, ExportError> {
    if req.format == Format::Onnx && !OPSETS.contains(&req.opset) {
        return Err(ExportError::Opset(req.opset));
    }
    let work = WorkDir::beside(req.out)?;
    let crop = req.preset.crop;
    let traced = work.path.join("model.pt");
    trace(model, req.model, crop, &traced)?;
    let (file, versions) = match req.format {
        Format::Torchscript => (traced.clone(), torch_versions(None)),
        Format::Onnx => {
            let onnx = work.path.join("model.onnx");
            let v = to_onnx(&traced, &onnx, req)?;
            (onnx, v)
        }
    };
    let inputs = preprocess_all(&req.parity, &req.preset, req.workers)?;
    let reference = reference_logits(model, req, &inputs)?;
    let (candidate, input, output, runtime) = match req.format {
        Format::Onnx => {
            let mut session = OnnxSession::open(&file, req.workers, crop)?;
            let rows = session.run(&inputs.data, inputs.names.len(), crop)?;
            let info = &session.info;
            let spec = |a: &[onnx_session::ArgSpec]| a.first().map(|s| s.to_report());
            let (Some(i), Some(o)) = (spec(&info.inputs), spec(&info.outputs)) else {
                return Err(ExportError::OnnxExport(
                    "the file has no input or output".into(),
                ));
            };
            (
                rows,
                i,
                o,
                Some((info.onnxruntime.clone(), session.describe())),
            )
        }
        Format::Torchscript => {
            let rows = torchscript_logits(&file, &inputs, crop)?;
            (
                rows,
                torchscript_spec("input", crop),
                torchscript_spec("logits", 0),
                None,
            )
        }
    };
    let parity = compare(&reference, &candidate, &inputs.names, req.tolerance);
    let parity = report::Parity {
        runtime: runtime
            .as_ref()
            .map_or_else(|| "libtorch (TorchScript)".into(), |(_, d)| d.clone()),
        reference: "harness (libtorch, CPU, float32)".into(),
        images_root: req.parity.root.clone(),
        unreadable: inputs.unreadable.clone(),
        ..parity
    };
    if !parity.passed {
        return Err(ExportError::Parity(
            parity.summary() + &disagreements(&parity),
        ));
    }
    let (sha256, bytes) = hash_file(&file).map_err(|e| output_error(req.out, e))?;
    let file_name = req
        .out
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let rep = report::ExportReport {
        schema_version: report::SCHEMA_VERSION,
        model: req.model.name().into(),
        format: req.format.name().into(),
        file: file_name,
        sha256,
        bytes,
        opset: (req.format == Format::Onnx).then_some(req.opset),
        input,
        output,
        weights: req.weights.clone(),
        preprocess: req.preset.to_report(),
        versions: report::ExportVersions {
            onnxruntime: runtime.map(|(v, _)| v),
            ..versions
        },
        parity,
    };
    install(&work, &file, req.out, &rep)?;
    Ok(rep)
}

fn disagreements(p: &report::Parity) -> String {
    if p.top1_disagree.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = p.top1_disagree.iter().take(5).map(String::as_str).collect();
    format!("; top-1 differs on {}", shown.join(", "))
}

/// A folder beside the output (same file system, so the final rename is
/// atomic), removed when dropped.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn beside(out: &Path) -> Result<WorkDir, ExportError> {
        let bad = |what: String| ExportError::Output {
            path: out.display().to_string(),
            what,
        };
        let name = out
            .file_name()
            .ok_or_else(|| bad("names no file".into()))?
            .to_string_lossy()
            .into_owned();
        if out.is_dir() {
            return Err(bad("is a folder; name the file to write".into()));
        }
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(bad(format!("folder {} does not exist", parent.display())));
        }
        let path = parent.join(format!(".{name}.export-{}", std::process::id()));
        std::fs::create_dir(&path)
            .map_err(|e| bad(format!("cannot write in {}: {e}", parent.display())))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn output_error(out: &Path, e: std::io::Error) -> ExportError {
    ExportError::Output {
        path: out.display().to_string(),
        what: e.to_string(),
    }
}

/// Traces the network on a zero batch of two (so no size-1 batch is baked
/// in) and saves the TorchScript. The weights become constants of the
/// graph: the file needs nothing else.
fn trace(
    model: &mut LoadedModel,
    kind: ModelKind,
    crop: u32,
    path: &Path,
) -> Result<(), ExportError> {
    let traced = |source| ExportError::Trace {
        model: kind.name(),
        source,
    };
    model.vs.freeze();
    let example = Tensor::zeros(
        [2, 3, i64::from(crop), i64::from(crop)],
        (Kind::Float, Device::Cpu),
    );
    let net = &model.net;
    let mut forward = |inputs: &[Tensor]| vec![net.forward_t(&inputs[0], false)];
    let module = tch::no_grad(|| {
        CModule::create_by_tracing(kind.name(), "forward", &[example], &mut forward)
    })
    .map_err(traced)?;
    module.save(path).map_err(traced)
}

/// `python3 -c onnx_export.py TS OUT OPSET BATCH CROP METADATA`.
fn to_onnx(
    traced: &Path,
    onnx: &Path,
    req: &Request,
) -> Result<report::ExportVersions, ExportError> {
    let preprocess = serde_json::to_string(&req.preset.to_report()).unwrap_or_default();
    let metadata = serde_json::json!({
        "torchenv.model": req.model.name(),
        "torchenv.preprocess": preprocess,
        "torchenv.weights_sha256": req.weights.sha256,
        "torchenv.harness": env!("CARGO_PKG_VERSION"),
        "torchenv.input": "RGB image, preprocessed as torchenv.preprocess says, NCHW float32",
    });
    let python = onnx_session::python();
    let out = Command::new(&python)
        .arg("-c")
        .arg(EXPORT_SCRIPT)
        .arg(traced)
        .arg(onnx)
        .arg(req.opset.to_string())
        .arg(req.batch.to_string())
        .arg(req.preset.crop.to_string())
        .arg(metadata.to_string())
        .output()
        .map_err(|e| ExportError::OnnxExport(format!("cannot start {python}: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(ExportError::OnnxExport(format!(
            "{}{} ({})",
            last.trim(),
            onnx_session::missing_module_hint(last),
            out.status
        )));
    }
    #[derive(serde::Deserialize)]
    struct Said {
        onnx: String,
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said: Said = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            ExportError::OnnxExport(format!("the export script said nothing usable: {stdout}"))
        })?;
    Ok(torch_versions(Some(said.onnx)))
}

fn torch_versions(onnx: Option<String>) -> report::ExportVersions {
    report::ExportVersions {
        harness: env!("CARGO_PKG_VERSION").into(),
        torch: crate::runtime::torch_info().version,
        onnx,
        onnxruntime: None,
    }
}

/// Preprocessed parity images, in order.
pub struct Inputs {
    pub names: Vec<String>,
    /// n × 3 × crop × crop.
    pub data: Vec<f32>,
    /// `name: why` of the images that could not be decoded.
    pub unreadable: Vec<String>,
}

/// Every parity image through the harness's preprocessing. Images that
/// cannot be decoded are left out and named in the report (as `eval` does);
/// none decoding is an error.
pub fn preprocess_all(
    set: &ParityImages,
    preset: &Preset,
    workers: usize,
) -> Result<Inputs, ExportError> {
    use rayon::prelude::*;
    if set.images.is_empty() {
        return Err(ExportError::Images(format!("{}: no images", set.root)));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers.max(1))
        .build()
        .map_err(|e| ExportError::Images(e.to_string()))?;
    let planes: Vec<Result<Vec<f32>, String>> = pool.install(|| {
        set.images
            .par_iter()
            .map(|(path, name)| {
                preprocess::preprocess_file(path, preset).map_err(|e| format!("{name}: {e}"))
            })
            .collect()
    });
    let mut inputs = Inputs {
        names: Vec::new(),
        data: Vec::new(),
        unreadable: Vec::new(),
    };
    for ((_, name), plane) in set.images.iter().zip(planes) {
        match plane {
            Ok(p) => {
                inputs.names.push(name.clone());
                inputs.data.extend(p);
            }
            Err(e) => inputs.unreadable.push(e.to_string()),
        }
    }
    if inputs.names.is_empty() {
        return Err(ExportError::Images(format!(
            "{}: none of {} images could be decoded (first: {})",
            set.root,
            set.images.len(),
            inputs.unreadable.first().map_or("", String::as_str)
        )));
    }
    Ok(inputs)
}

/// The harness's own logits on `inputs`: the CPU eval path (float32,
/// channels-last), 32 images at a time.
fn reference_logits(
    model: &mut LoadedModel,
    req: &Request,
    inputs: &Inputs,
) -> Result<Vec<Vec<f32>>, ExportError> {
    let opts = EvalOptions {
        model: req.model,
        preset: req.preset,
        device: Device::Cpu,
        batch_size: 32,
        workers: req.workers,
        channels_last: true,
        autocast: None,
        deterministic: false,
    };
    model.prepare(&opts)?;
    let mut rows = Vec::new();
    for_batches(inputs, req.preset.crop, 32, |x| {
        let y = model.forward(x, &opts)?;
        rows.extend(tensor_rows(&y)?);
        Ok(())
    })?;
    Ok(rows)
}

fn torchscript_logits(
    file: &Path,
    inputs: &Inputs,
    crop: u32,
) -> Result<Vec<Vec<f32>>, ExportError> {
    let mut module = CModule::load(file)?;
    module.set_eval();
    let mut rows = Vec::new();
    for_batches(inputs, crop, 32, |x| {
        let y = tch::no_grad(|| module.forward_ts(&[x]))?;
        rows.extend(tensor_rows(&y)?);
        Ok(())
    })?;
    Ok(rows)
}

fn for_batches(
    inputs: &Inputs,
    crop: u32,
    batch: usize,
    mut f: impl FnMut(&Tensor) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let c = i64::from(crop);
    let plane = (3 * c * c) as usize;
    for chunk in inputs.data.chunks(plane * batch) {
        let n = (chunk.len() / plane) as i64;
        f(&Tensor::f_from_slice(chunk)?.f_view([n, 3, c, c])?)?;
    }
    Ok(())
}

fn tensor_rows(t: &Tensor) -> Result<Vec<Vec<f32>>, ExportError> {
    let n = t.size()[0] as usize;
    let flat = Vec::<f32>::try_from(t.f_to_kind(Kind::Float)?.f_flatten(0, -1)?)?;
    let cols = flat.len() / n.max(1);
    Ok(flat.chunks(cols.max(1)).map(<[f32]>::to_vec).collect())
}

fn torchscript_spec(name: &str, crop: u32) -> report::TensorSpec {
    let batch = report::Dim::Dynamic("batch".into());
    let shape = if crop == 0 {
        vec![batch, report::Dim::Fixed(1000)]
    } else {
        vec![
            batch,
            report::Dim::Fixed(3),
            report::Dim::Fixed(crop.into()),
            report::Dim::Fixed(crop.into()),
        ]
    };
    report::TensorSpec {
        name: name.into(),
        shape,
        dtype: "float32".into(),
    }
}

/// Logits of the exported file against the harness's, image by image.
pub fn compare(
    reference: &[Vec<f32>],
    candidate: &[Vec<f32>],
    names: &[String],
    tolerance: f64,
) -> report::Parity {
    let mut max_abs: f64 = 0.0;
    let mut sum_abs = 0.0;
    let mut count = 0usize;
    let mut max_prob: f64 = 0.0;
    let mut agree = 0;
    let mut disagree = Vec::new();
    let mut shapes_match = reference.len() == candidate.len();
    for (i, (r, c)) in reference.iter().zip(candidate).enumerate() {
        if r.len() != c.len() {
            shapes_match = false;
            continue;
        }
        for (a, b) in r.iter().zip(c) {
            let d = f64::from(*a) - f64::from(*b);
            // NaN compares as the largest difference.
            if d.is_finite() {
                max_abs = max_abs.max(d.abs());
                sum_abs += d.abs();
            } else {
                max_abs = f64::INFINITY;
            }
            count += 1;
        }
        for (a, b) in softmax(r).iter().zip(softmax(c)) {
            max_prob = max_prob.max((a - b).abs());
        }
        if argmax(r) == argmax(c) {
            agree += 1;
        } else {
            disagree.push(names.get(i).cloned().unwrap_or_else(|| format!("#{i}")));
        }
    }
    report::Parity {
        runtime: String::new(),
        reference: String::new(),
        images_root: String::new(),
        images: reference.len(),
        unreadable: Vec::new(),
        max_abs_logit_diff: max_abs,
        mean_abs_logit_diff: if count == 0 {
            0.0
        } else {
            sum_abs / count as f64
        },
        max_abs_prob_diff: max_prob,
        top1_agree: agree,
        passed: shapes_match
            && !reference.is_empty()
            && max_abs <= tolerance
            && disagree.is_empty(),
        top1_disagree: disagree,
        tolerance,
    }
}

fn softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn argmax(row: &[f32]) -> Option<usize> {
    (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
}

/// sha256 (hex) and size of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let bytes = std::io::copy(&mut f, &mut h)?;
    Ok((format!("{:x}", h.finalize()), bytes))
}

/// The file, then its report, renamed into place from the work folder.
fn install(
    work: &WorkDir,
    file: &Path,
    out: &Path,
    rep: &report::ExportReport,
) -> Result<(), ExportError> {
    let json =
        serde_json::to_vec_pretty(rep).map_err(|e| output_error(out, std::io::Error::other(e)))?;
    let staged_json = work.path.join("parity.json");
    std::fs::write(&staged_json, json).map_err(|e| output_error(out, e))?;
    std::fs::rename(file, out).map_err(|e| output_error(out, e))?;
    std::fs::rename(&staged_json, report::parity_path(out))
        .map_err(|e| output_error(&report::parity_path(out), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("img{i}.jpg")).collect()
    }

    #[test]
    fn identical_logits_pass() {
        let r = vec![vec![1.0, 3.0, 2.0], vec![0.5, -1.0, 0.0]];
        let p = compare(&r, &r, &names(2), 1e-4);
        assert!(p.passed);
        assert_eq!((p.images, p.top1_agree, p.max_abs_logit_diff), (2, 2, 0.0));
    }

    #[test]
    fn a_difference_over_the_tolerance_fails_even_with_the_same_top1() {
        let r = vec![vec![1.0, 3.0, 2.0]];
        let c = vec![vec![1.0, 3.0, 2.0002]];
        let p = compare(&r, &c, &names(1), 1e-4);
        assert!(!p.passed);
        assert!(
            (p.max_abs_logit_diff - 2e-4).abs() < 1e-6,
            "{}",
            p.max_abs_logit_diff
        );
        assert_eq!(p.top1_agree, 1);
    }

    #[test]
    fn a_flipped_top1_fails_and_is_named() {
        let r = vec![vec![1.0, 2.0], vec![2.0, 1.0]];
        let c = vec![vec![1.0, 2.0], vec![1.0, 2.0]];
        let p = compare(&r, &c, &names(2), 10.0);
        assert!(!p.passed);
        assert_eq!(p.top1_disagree, vec!["img1.jpg".to_string()]);
    }

    #[test]
    fn nan_or_missing_rows_never_pass() {
        let r = vec![vec![1.0, 2.0]];
        let nan = compare(&r, &[vec![f32::NAN, 2.0]], &names(1), 1e-4);
        assert!(!nan.passed && nan.max_abs_logit_diff.is_infinite());
        let short = compare(&r, &[], &names(1), 1e-4);
        assert!(!short.passed);
        let none = compare(&[], &[], &names(0), 1e-4);
        assert!(!none.passed);
    }

    #[test]
    fn batch_words() {
        assert_eq!("dynamic".parse::<Batch>(), Ok(Batch::Dynamic));
        assert_eq!("8".parse::<Batch>(), Ok(Batch::Fixed(8)));
        assert!("0".parse::<Batch>().unwrap_err().contains("`0`"));
        assert!("many".parse::<Batch>().is_err());
    }
}
