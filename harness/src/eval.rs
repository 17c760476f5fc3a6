//! `harness eval`: decode + preprocess on a thread pool, batched inference
//! on the main thread (bounded channel between them). The report is built
//! from the outcome by [`crate::eval_report`].
//!
//! May use: `dataset`, `models`, `onnx_session`, `preprocess`, `runtime`.

use crate::dataset::Sample;
use crate::models::ModelKind;
use crate::onnx_session::{OnnxError, OnnxSession};
use crate::preprocess::{self, Preset};
use crate::runtime;
use rayon::prelude::*;
use std::sync::mpsc;
use std::time::Instant;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// Errors that stop an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("CUDA requested but not available to libtorch")]
    NoCuda,
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("cannot start worker pool: {0}")]
    Pool(String),
    #[error("no image of the dataset could be decoded ({0} failed)")]
    NothingEvaluated(usize),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

/// Mixed precision mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Autocast {
    /// CUDA autocast (float16 where safe).
    Fp16,
    /// Model and inputs cast to bfloat16.
    Bf16,
}

/// Everything `eval` needs besides the dataset.
pub struct EvalOptions {
    pub model: ModelKind,
    pub preset: Preset,
    pub device: Device,
    pub batch_size: usize,
    pub workers: usize,
    pub channels_last: bool,
    pub autocast: Option<Autocast>,
    pub deterministic: bool,
}

/// A model ready for inference.
pub struct LoadedModel {
    pub vs: nn::VarStore,
    pub net: Box<dyn ModuleT + Send>,
}

/// NCHW tensor with channels-last strides (tch has no memory-format API;
/// a permuted contiguous copy has exactly PyTorch's channels_last layout).
fn to_channels_last(t: &Tensor) -> Result<Tensor, tch::TchError> {
    t.f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_permute([0, 3, 1, 2])
}

impl LoadedModel {
    /// Moves/casts the weights for the run settings.
    pub fn prepare(&mut self, opts: &EvalOptions) -> Result<(), EvalError> {
        self.vs.set_device(opts.device);
        if opts.autocast == Some(Autocast::Bf16) {
            self.vs.bfloat16();
        }
        if opts.channels_last {
            tch::no_grad(|| -> Result<(), tch::TchError> {
                for (_, mut v) in self.vs.variables() {
                    if v.dim() == 4 {
                        let cl = to_channels_last(&v)?;
                        v.f_set_data(&cl)?;
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Logits (float32, CPU) of a batch of preprocessed CHW images.
    pub fn forward(&self, input: &Tensor, opts: &EvalOptions) -> Result<Tensor, EvalError> {
        let out = tch::no_grad(|| -> Result<Tensor, tch::TchError> {
            let mut x = input.f_to_device(opts.device)?;
            if opts.autocast == Some(Autocast::Bf16) {
                x = x.f_to_kind(Kind::BFloat16)?;
            }
            if opts.channels_last {
                x = to_channels_last(&x)?;
            }
            let y = if opts.autocast == Some(Autocast::Fp16) {
                tch::autocast(true, || self.net.forward_t(&x, false))
            } else {
                self.net.forward_t(&x, false)
            };
            y.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)
        })?;
        Ok(out)
    }
}

/// What computes the logits: the harness's own network, or an exported
/// ONNX file run by onnxruntime (on the CPU).
pub enum Classifier {
    Torch(LoadedModel),
    Onnx(Box<OnnxSession>),
}

impl Classifier {
    /// Logits (float32, CPU) of a batch of preprocessed CHW images.
    pub fn logits(&mut self, input: &Tensor, opts: &EvalOptions) -> Result<Tensor, EvalError> {
        match self {
            Classifier::Torch(m) => m.forward(input, opts),
            Classifier::Onnx(session) => {
                let n = input.size()[0] as usize;
                let data = Vec::<f32>::try_from(input.f_flatten(0, -1)?)?;
                let rows = session.run(&data, n, opts.preset.crop)?;
                let cols = rows.first().map_or(0, Vec::len) as i64;
                Ok(Tensor::f_from_slice(&rows.concat())?.f_view([n as i64, cols])?)
            }
        }
    }
}

/// Applies `--deterministic` (or the defaults) to libtorch's global context.
/// Returns notes on switches that could not be set.
pub fn apply_determinism(deterministic: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if deterministic {
        match runtime::TorchContext::get() {
            Some(ctx) => {
                let ok = [
                    ("TF32 (cuBLAS) off", ctx.set_allow_tf32_cublas(false)),
                    ("TF32 (cuDNN) off", ctx.set_allow_tf32_cudnn(false)),
                    ("cuDNN deterministic", ctx.set_deterministic_cudnn(true)),
                ];
                for (what, set) in ok {
                    if !set {
                        notes.push(format!(
                            "could not set {what}: symbol not found in libtorch"
                        ));
                    }
                }
            }
            None => notes
                .push("libtorch global context not found: TF32/cuDNN switches unchanged".into()),
        }
        tch::Cuda::cudnn_set_benchmark(false);
        tch::manual_seed(0);
    }
    notes
}

struct Batch {
    samples: Vec<(usize, Result<Vec<f32>, String>)>,
    seconds: f64,
}

/// Raw results of [`evaluate`].
pub struct EvalOutcome {
    /// The [`TOP`] most probable (class, softmax probability) per sample,
    /// most probable first (dataset order); None if it failed.
    pub top: Vec<Option<Vec<(usize, f32)>>>,
    /// (sample index, error) of images that could not be decoded.
    pub failed: Vec<(usize, String)>,
    pub wall_seconds: f64,
    pub preprocess_seconds: f64,
    pub inference_seconds: f64,
    pub peak_gpu_memory_bytes: Option<u64>,
    /// (seconds since the start, images done) after each batch.
    pub timeline: Vec<(f64, usize)>,
}

/// How many classes of each image's ranking an evaluation keeps (the
/// report's top-k curve runs to 10); 40 bytes a sample instead of 4 KB, so
/// 1.28 million images fit in memory.
pub const TOP: usize = 10;

/// Top-k indices of `p`, most probable first (ties: lower index first).
pub fn top_k(p: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// What [`evaluate`] tells its caller while it runs.
pub trait Observer {
    /// A batch's logits (float32, CPU) and the sample indices of its rows.
    fn logits(&mut self, _indices: &[usize], _logits: &Tensor) {}
    /// After each batch: images done (decoded or not), of which failed,
    /// seconds since the start.
    fn progress(&mut self, _done: usize, _failed: usize, _seconds: f64) {}
}

/// Decodes and preprocesses `samples` on `pool`, one batch at a time, and
/// sends each batch until done or the consumer stops.
fn produce(
    pool: &rayon::ThreadPool,
    samples: &[Sample],
    preset: Preset,
    batch_size: usize,
    tx: mpsc::SyncSender<Batch>,
) {
    let indexed: Vec<usize> = (0..samples.len()).collect();
    for chunk in indexed.chunks(batch_size) {
        let t0 = Instant::now();
        let results: Vec<(usize, Result<Vec<f32>, String>)> = pool.install(|| {
            chunk
                .par_iter()
                .map(|&i| {
                    let r = preprocess::preprocess_file(&samples[i].path, &preset)
                        .map_err(|e| e.to_string());
                    (i, r)
                })
                .collect()
        });
        let batch = Batch {
            samples: results,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if tx.send(batch).is_err() {
            break; // consumer stopped on an error
        }
    }
}

/// Runs the evaluation, telling `observer` about each batch.
pub fn evaluate(
    model: &mut Classifier,
    samples: &[Sample],
    opts: &EvalOptions,
    observer: &mut dyn Observer,
) -> Result<EvalOutcome, EvalError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.workers.max(1))
        .build()
        .map_err(|e| EvalError::Pool(e.to_string()))?;
    let start = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<Batch>(2);
    let preset = opts.preset;
    let batch_size = opts.batch_size.max(1);
    let mut top: Vec<Option<Vec<(usize, f32)>>> = vec![None; samples.len()];
    let mut failed = Vec::new();
    let mut preprocess_seconds = 0.0;
    let mut inference_seconds = 0.0;
    let mut peak_gpu: Option<u64> = None;
    let mut timeline = Vec::new();
    let mut done = 0;
    let plane = (3 * preset.crop * preset.crop) as usize;
    std::thread::scope(|scope| -> Result<(), EvalError> {
        scope.spawn(|| produce(&pool, samples, preset, batch_size, tx));
        // Owned here, so an error (or a panic in libtorch) drops the
        // receiver and the producer's blocked send returns.
        for batch in rx {
            preprocess_seconds += batch.seconds;
            done += batch.samples.len();
            let mut idx = Vec::new();
            let mut data = Vec::with_capacity(batch.samples.len() * plane);
            for (i, r) in batch.samples {
                match r {
                    Ok(v) => {
                        idx.push(i);
                        data.extend_from_slice(&v);
                    }
                    Err(e) => failed.push((i, e)),
                }
            }
            if idx.is_empty() {
                let t = start.elapsed().as_secs_f64();
                timeline.push((t, done));
                observer.progress(done, failed.len(), t);
                continue;
            }
            let t0 = Instant::now();
            let input = Tensor::f_from_slice(&data)?.f_view([
                idx.len() as i64,
                3,
                preset.crop as i64,
                preset.crop as i64,
            ])?;
            let logits = model.logits(&input, opts)?;
            if let Device::Cuda(i) = opts.device {
                tch::Cuda::synchronize(i as i64);
                if let Some(used) = runtime::cuda_memory_used() {
                    peak_gpu = Some(peak_gpu.map_or(used, |p| p.max(used)));
                }
            }
            inference_seconds += t0.elapsed().as_secs_f64();
            observer.logits(&idx, &logits);
            let p = logits.f_softmax(-1, Kind::Float)?;
            let flat: Vec<f32> = Vec::<f32>::try_from(p.f_flatten(0, -1)?)?;
            let ncls = flat.len() / idx.len();
            for (row, &i) in idx.iter().enumerate() {
                let p = &flat[row * ncls..(row + 1) * ncls];
                if p.iter().all(|v| v.is_finite()) {
                    top[i] = Some(top_k(p, TOP).into_iter().map(|c| (c, p[c])).collect());
                } else {
                    // fp16 overflow and the like: no ranking to report.
                    failed.push((i, "non-finite logits (NaN or infinity)".to_string()));
                }
            }
            let t = start.elapsed().as_secs_f64();
            timeline.push((t, done));
            observer.progress(done, failed.len(), t);
        }
        Ok(())
    })?;
    failed.sort();
    let wall = start.elapsed().as_secs_f64();
    Ok(EvalOutcome {
        top,
        failed,
        wall_seconds: wall,
        preprocess_seconds,
        inference_seconds,
        peak_gpu_memory_bytes: peak_gpu,
        timeline,
    })
}
