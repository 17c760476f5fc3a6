//! torchenv harness: runs inside each torchenv image (and on the host for
//! tests), linked against exactly that image's libtorch.

use harness::{
    checkpoint, cli, cuda, dataset, eval, eval_report, export, gallery, models, npy, onnx_session,
    preprocess, runtime, weights_download,
};

use clap::Parser;
use cli::{Cli, Command, DeviceArg, EvalArgs, ExportArgs, Normalization, PresetOverrides};
use models::ModelKind;
use preprocess::Preset;
use std::path::Path;
use std::process::ExitCode;
use tch::{nn, Device, Tensor};

/// Everything that ends a run with exit code 2.
#[derive(Debug, thiserror::Error)]
enum HarnessError {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Model(#[from] models::ModelError),
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    #[error(transparent)]
    Download(#[from] weights_download::DownloadError),
    #[error(transparent)]
    Eval(#[from] eval::EvalError),
    #[error(transparent)]
    Npy(#[from] npy::NpyError),
    #[error(transparent)]
    Gallery(#[from] gallery::GalleryError),
    #[error(transparent)]
    Export(#[from] export::ExportError),
    #[error(transparent)]
    Onnx(#[from] onnx_session::OnnxError),
    #[error("{path}: {source}")]
    Preprocess {
        path: String,
        source: preprocess::PreprocessError,
    },
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cuda { json, expect_gpus } => {
            let r = cuda::run(expect_gpus);
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", cuda::render(&r));
            }
            return ExitCode::from(r.exit_code as u8);
        }
        Command::Eval(args) => run_eval(*args),
        Command::Export(args) => run_export(*args),
        Command::Preprocess {
            model,
            out,
            overrides,
            images,
        } => run_preprocess(model, &overrides, &images, &out),
        Command::Forward {
            model,
            weights,
            input,
            out,
        } => run_forward(model, &weights, &input, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                HarnessError::Export(e) => ExitCode::from(e.exit_code()),
                _ => ExitCode::from(cuda::EXIT_USAGE as u8),
            }
        }
    }
}

fn preset_for(model: ModelKind, o: &PresetOverrides) -> Result<Preset, HarnessError> {
    let mut p = model.preset();
    if let Some(r) = o.resize {
        p.resize = r;
    }
    if let Some(c) = o.crop {
        p.crop = c;
    }
    if let Some(i) = o.interpolation {
        p.interpolation = i;
    }
    if o.no_antialias {
        p.antialias = false;
    }
    match o.normalization {
        Some(Normalization::Imagenet) => {
            p.mean = models::IMAGENET_MEAN;
            p.std = models::IMAGENET_STD;
        }
        Some(Normalization::Inception) => {
            p.mean = [127.0 / 255.0; 3];
            p.std = [128.0 / 255.0; 3];
        }
        None => {}
    }
    if p.resize == 0 || p.crop == 0 || p.crop > p.resize {
        return Err(HarnessError::Usage(format!(
            "invalid preprocessing: resize {} crop {} (need 0 < crop <= resize)",
            p.resize, p.crop
        )));
    }
    Ok(p)
}

fn load_model(
    model: ModelKind,
    weights: &Path,
    sha256: Option<&str>,
) -> Result<(eval::LoadedModel, checkpoint::StateDict), HarnessError> {
    let sd = checkpoint::load(weights, sha256)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let net = model.build(&vs);
    // Keep the metadata, hand the tensors to the model.
    let meta = checkpoint::StateDict {
        tensors: Vec::new(),
        sha256: sd.sha256.clone(),
        format: sd.format,
    };
    model.load_weights(&vs, sd)?;
    Ok((eval::LoadedModel { vs, net }, meta))
}

fn run_preprocess(
    model: ModelKind,
    o: &PresetOverrides,
    images: &[std::path::PathBuf],
    out: &Path,
) -> Result<(), HarnessError> {
    let preset = preset_for(model, o)?;
    let c = preset.crop as usize;
    let mut w = npy::F32Writer::create(out, &[images.len(), 3, c, c])?;
    // Decode + preprocess time alone (not the .npy writes), on this thread.
    let mut busy = std::time::Duration::ZERO;
    for img in images {
        let t = std::time::Instant::now();
        let v = preprocess::preprocess_file(img, &preset).map_err(|source| {
            HarnessError::Preprocess {
                path: img.display().to_string(),
                source,
            }
        })?;
        busy += t.elapsed();
        w.append(&v)?;
    }
    w.finish()?;
    eprintln!(
        "preprocessed {} images in {:.6} s on one thread",
        images.len(),
        busy.as_secs_f64()
    );
    Ok(())
}

fn run_forward(
    model: ModelKind,
    weights: &Path,
    input: &Path,
    out: &Path,
) -> Result<(), HarnessError> {
    let (m, _) = load_model(model, weights, None)?;
    let (shape, data) = npy::read_f32(input)?;
    if shape.len() != 4 || shape[1] != 3 {
        return Err(HarnessError::Usage(format!(
            "{}: expected an N×3×H×W tensor, got {shape:?}",
            input.display()
        )));
    }
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let x = Tensor::f_from_slice(&data)?.f_view(dims.as_slice())?;
    let opts = eval::EvalOptions {
        model,
        preset: model.preset(),
        device: Device::Cpu,
        batch_size: shape[0],
        workers: 1,
        channels_last: false,
        autocast: None,
        deterministic: false,
    };
    let logits = m.forward(&x, &opts)?;
    let v: Vec<f32> = Vec::<f32>::try_from(logits.f_flatten(0, -1)?)?;
    npy::write_f32(out, &[shape[0], v.len() / shape[0]], &v)?;
    Ok(())
}

/// The dataset's listing, `--limit` applied.
fn eval_samples(args: &EvalArgs) -> Result<dataset::Listing, HarnessError> {
    let mut listing = dataset::list(&args.data, args.labels.as_deref(), args.synsets.as_deref())?;
    if let Some(n) = args.limit {
        listing.samples.truncate(n);
        if listing.samples.is_empty() {
            return Err(HarnessError::Usage(
                "--limit 0 leaves nothing to evaluate".into(),
            ));
        }
    }
    Ok(listing)
}

/// `--device`, refused when CUDA is asked for but missing, or when fp16
/// autocast would run on the CPU. `auto` is CUDA when libtorch sees a GPU.
fn eval_device(args: &EvalArgs) -> Result<Device, HarnessError> {
    if args.onnx.is_some() {
        if args.device == DeviceArg::Cuda {
            return Err(HarnessError::Usage(
                "--onnx runs on the CPU (onnxruntime's CPU provider); drop --device cuda".into(),
            ));
        }
        return Ok(Device::Cpu);
    }
    let device = match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Auto if !tch::Cuda::is_available() => Device::Cpu,
        DeviceArg::Auto => Device::Cuda(0),
        DeviceArg::Cuda => {
            if !tch::Cuda::is_available() {
                return Err(eval::EvalError::NoCuda.into());
            }
            Device::Cuda(0)
        }
    };
    if args.autocast == Some(eval::Autocast::Fp16) && device == Device::Cpu {
        return Err(HarnessError::Usage(
            "--autocast fp16 needs a GPU (--device cuda); use bf16 on the CPU".into(),
        ));
    }
    Ok(device)
}

/// `--weights` as a local file, downloaded (and verified) first if a URL.
fn local_weights(weights: &str, sha256: Option<&str>) -> Result<std::path::PathBuf, HarnessError> {
    if weights_download::is_url(weights) {
        let cache = weights_download::cache_root()?.join("weights");
        Ok(weights_download::fetch(weights, sha256, &cache)?)
    } else {
        Ok(std::path::PathBuf::from(weights))
    }
}

/// Logits of each batch by sample index, kept for `--dump-logits`.
#[derive(Default)]
struct LogitsDump(Vec<(usize, Vec<f32>)>);

impl LogitsDump {
    fn add(&mut self, idx: &[usize], logits: &Tensor) {
        if let Ok(v) = Vec::<f32>::try_from(logits.flatten(0, -1)) {
            let n = v.len() / idx.len();
            for (r, &i) in idx.iter().enumerate() {
                self.0.push((i, v[r * n..(r + 1) * n].to_vec()));
            }
        }
    }

    /// Writes the logits in dataset order as an N×classes .npy.
    fn write(mut self, path: &Path) -> Result<(), HarnessError> {
        self.0.sort_by_key(|(i, _)| *i);
        let n = self.0.first().map_or(0, |(_, v)| v.len());
        let flat: Vec<f32> = self.0.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        npy::write_f32(path, &[self.0.len(), n], &flat)?;
        Ok(())
    }
}

/// What `eval` does while the evaluation runs: keep logits for
/// `--dump-logits`, print progress lines for `--progress`.
struct RunObserver {
    dump: Option<LogitsDump>,
    progress_total: Option<usize>,
}

impl eval::Observer for RunObserver {
    fn logits(&mut self, indices: &[usize], logits: &Tensor) {
        if let Some(d) = &mut self.dump {
            d.add(indices, logits);
        }
    }

    fn progress(&mut self, done: usize, failed: usize, seconds: f64) {
        if let Some(total) = self.progress_total {
            progress_line(&report::ProgressEvent::Batch {
                done,
                failed,
                total,
                seconds,
            });
        }
    }
}

fn progress_line(event: &report::ProgressEvent) {
    eprintln!("{}", event.to_line());
}

/// What ran: harness, torch, and on CUDA the runtime, cuDNN and GPU name.
fn run_versions(device: Device) -> report::Versions {
    let torch = runtime::torch_info();
    let (cuda_runtime, cudnn, device_name) = match device {
        Device::Cuda(i) => {
            let name = match runtime::driver_status() {
                runtime::DriverStatus::Ok { devices, .. } => devices.get(i).map(|d| d.name.clone()),
                _ => None,
            };
            (
                runtime::cuda_runtime_version(),
                runtime::cudnn_version(),
                name.unwrap_or_else(|| format!("cuda:{i}")),
            )
        }
        _ => (None, None, "cpu".to_string()),
    };
    report::Versions {
        harness: env!("CARGO_PKG_VERSION").into(),
        torch: torch.version,
        cuda_runtime,
        cudnn,
        device_name,
        cuda_build: torch.built_cuda,
        driver: runtime::nvidia_driver_version(),
        onnxruntime: None,
    }
}

/// The run settings as the report records them.
fn run_settings(opts: &eval::EvalOptions) -> report::Settings {
    report::Settings {
        device: match opts.device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        },
        batch_size: opts.batch_size,
        workers: opts.workers,
        dtype: if opts.autocast == Some(eval::Autocast::Bf16) {
            "bfloat16"
        } else {
            "float32"
        }
        .into(),
        autocast: opts.autocast.map(|a| match a {
            eval::Autocast::Fp16 => "fp16".into(),
            eval::Autocast::Bf16 => "bf16".into(),
        }),
        channels_last: opts.channels_last,
        deterministic: opts.deterministic,
        preprocess: opts.preset.to_report(),
        runtime: "libtorch".into(),
    }
}

/// What `eval` runs: the harness's network with its weights, or an ONNX
/// file; and the weights as the report names them.
fn load_classifier(
    args: &EvalArgs,
    preset: &Preset,
    workers: usize,
) -> Result<(eval::Classifier, report::WeightsInfo), HarnessError> {
    if let Some(onnx) = &args.onnx {
        let session = onnx_session::OnnxSession::open(onnx, workers, preset.crop)?;
        if let Some(m) = session.info.metadata.get("torchenv.model") {
            if m != args.model.name() {
                return Err(HarnessError::Usage(format!(
                    "{} was exported from {m} (its torchenv.model metadata), but --model is {}",
                    onnx.display(),
                    args.model.name()
                )));
            }
        }
        let (sha256, _) = export::hash_file(onnx).map_err(|source| HarnessError::Write {
            path: onnx.display().to_string(),
            source,
        })?;
        let info = report::WeightsInfo {
            source: onnx.display().to_string(),
            sha256,
            format: "onnx".into(),
        };
        return Ok((eval::Classifier::Onnx(Box::new(session)), info));
    }
    let weights = args.weights.as_deref().unwrap_or_default();
    let path = local_weights(weights, args.sha256.as_deref())?;
    let (model, meta) = load_model(args.model, &path, args.sha256.as_deref())?;
    let info = report::WeightsInfo {
        source: weights.to_string(),
        sha256: meta.sha256,
        format: meta.format.into(),
    };
    Ok((eval::Classifier::Torch(model), info))
}

fn run_eval(args: EvalArgs) -> Result<(), HarnessError> {
    let preset = preset_for(args.model, &args.overrides)?;
    if args.batch_size == 0 {
        return Err(HarnessError::Usage(
            "--batch-size must be at least 1".into(),
        ));
    }
    let listing = eval_samples(&args)?;
    let device = eval_device(&args)?;
    let notes = eval::apply_determinism(args.deterministic);
    for n in &notes {
        eprintln!("note: {n}");
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (mut classifier, weights) = load_classifier(&args, &preset, workers)?;
    let torch = matches!(classifier, eval::Classifier::Torch(_));
    let opts = eval::EvalOptions {
        model: args.model,
        preset,
        device,
        batch_size: args.batch_size,
        workers,
        // oneDNN convolutions are much faster channels-last on CPU (B0:
        // about 1.6x), with no reorders between layers.
        channels_last: torch && (args.channels_last || device == Device::Cpu),
        autocast: args.autocast,
        deterministic: args.deterministic,
    };
    if let eval::Classifier::Torch(model) = &mut classifier {
        model.prepare(&opts)?;
    }
    let mut settings = run_settings(&opts);
    let mut versions = run_versions(device);
    if let eval::Classifier::Onnx(session) = &classifier {
        settings.runtime = "onnxruntime".into();
        versions.onnxruntime = Some(session.info.onnxruntime.clone());
    }
    let total = listing.samples.len();
    if args.progress {
        progress_line(&report::ProgressEvent::Start {
            total,
            model: args.model.name().into(),
            device: settings.device.clone(),
        });
    }
    let mut observer = RunObserver {
        dump: args.dump_logits.is_some().then(LogitsDump::default),
        progress_total: args.progress.then_some(total),
    };
    let monitor = gpu_monitor(args.monitor_interval_ms);
    let outcome = eval::evaluate(&mut classifier, &listing.samples, &opts, &mut observer);
    let gpu = monitor.finish();
    drop(classifier);
    let outcome = outcome?;
    if outcome.top.iter().all(Option::is_none) {
        return Err(eval::EvalError::NothingEvaluated(outcome.failed.len()).into());
    }
    if let (Some(path), Some(dump)) = (&args.dump_logits, observer.dump) {
        dump.write(path)?;
    }
    let ctx = eval_report::ReportContext {
        model: args.model,
        weights,
        dataset_root: args.data.display().to_string(),
        labels_file: listing
            .labels_file
            .as_ref()
            .map(|l| l.display().to_string()),
        layout: listing.layout.name().into(),
        settings,
        versions,
        gpu,
    };
    let mut rep = eval_report::build_report(ctx, &listing.samples, &outcome);
    finish_eval(&args, &mut rep, &listing, &outcome, &preset)
}

/// Export (`--export`), the report folder, the summary, `--json`.
fn finish_eval(
    args: &EvalArgs,
    rep: &mut report::EvalReport,
    listing: &dataset::Listing,
    outcome: &eval::EvalOutcome,
    preset: &Preset,
) -> Result<(), HarnessError> {
    if let (Some(format), Some(dir)) = (args.export, &args.out) {
        rep.export = Some(export_after_eval(args, format, dir, listing, outcome)?);
    }
    if args.progress {
        progress_line(&report::ProgressEvent::Writing);
    }
    if let Some(dir) = &args.out {
        write_folder(rep, &listing.samples, preset, dir, args.gallery)?;
    }
    print!("{}", eval_report::render(rep));
    if let Some(e) = &rep.export {
        println!("export: {} ({})", e.file, e.parity.summary());
    }
    if let Some(path) = &args.json {
        write_json(path, rep)?;
    }
    Ok(())
}

/// `eval --export`: the evaluated model (weights loaded again, on the CPU
/// in float32) exported into the report folder, its parity checked on the
/// first `--export-images` images that decoded.
fn export_after_eval(
    args: &EvalArgs,
    format: export::Format,
    dir: &Path,
    listing: &dataset::Listing,
    outcome: &eval::EvalOutcome,
) -> Result<report::ExportReport, HarnessError> {
    std::fs::create_dir_all(dir).map_err(|source| HarnessError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let images: Vec<(std::path::PathBuf, String)> = listing
        .samples
        .iter()
        .zip(&outcome.top)
        .filter(|(_, top)| top.is_some())
        .map(|(s, _)| (s.path.clone(), s.rel_path.clone()))
        .take(args.export_images.max(1))
        .collect();
    let weights = args.weights.as_deref().unwrap_or_default();
    let out = dir.join(match format {
        export::Format::Onnx => "model.onnx",
        export::Format::Torchscript => "model.pt",
    });
    let job = ExportJob {
        model: args.model,
        weights,
        sha256: args.sha256.as_deref(),
        format,
        opset: 17,
        batch: export::Batch::Dynamic,
        out: &out,
        parity: export::ParityImages {
            root: args.data.display().to_string(),
            images,
        },
        tolerance: 1e-4,
        workers: args.workers.unwrap_or(0),
    };
    job.run()
}

/// One export: what `harness export` and `eval --export` share.
struct ExportJob<'a> {
    model: ModelKind,
    weights: &'a str,
    sha256: Option<&'a str>,
    format: export::Format,
    opset: u32,
    batch: export::Batch,
    out: &'a Path,
    parity: export::ParityImages,
    tolerance: f64,
    /// 0: the available CPUs.
    workers: usize,
}

impl ExportJob<'_> {
    fn run(self) -> Result<report::ExportReport, HarnessError> {
        let path = local_weights(self.weights, self.sha256)?;
        let (mut model, meta) = load_model(self.model, &path, self.sha256)?;
        let workers = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let req = export::Request {
            model: self.model,
            preset: self.model.preset(),
            weights: report::WeightsInfo {
                source: self.weights.to_string(),
                sha256: meta.sha256,
                format: meta.format.into(),
            },
            format: self.format,
            opset: self.opset,
            batch: self.batch,
            out: self.out,
            parity: self.parity,
            tolerance: self.tolerance,
            workers,
        };
        Ok(export::export(&mut model, &req)?)
    }
}

fn run_export(args: ExportArgs) -> Result<(), HarnessError> {
    if args.parity_images == 0 {
        return Err(HarnessError::Usage(
            "--parity-images must be at least 1".into(),
        ));
    }
    if args.tolerance.is_nan() || args.tolerance < 0.0 {
        return Err(HarnessError::Usage(format!(
            "--tolerance {}: must be ≥ 0",
            args.tolerance
        )));
    }
    let images = dataset::images_under(&args.parity_data, args.parity_images)?;
    let job = ExportJob {
        model: args.model,
        weights: &args.weights,
        sha256: args.sha256.as_deref(),
        format: args.format,
        opset: args.opset,
        batch: args.batch,
        out: &args.out,
        parity: export::ParityImages {
            root: args.parity_data.display().to_string(),
            images,
        },
        tolerance: args.tolerance,
        workers: args.workers.unwrap_or(0),
    };
    let rep = job.run()?;
    println!(
        "exported {} as {} to {} ({} bytes, sha256 {})",
        rep.model,
        rep.format,
        args.out.display(),
        rep.bytes,
        rep.sha256
    );
    println!("  {}  →  {}", rep.input.describe(), rep.output.describe());
    println!("  {}", rep.parity.summary());
    println!(
        "  parity report: {}",
        report::parity_path(&args.out).display()
    );
    Ok(())
}

/// `--out`: the gallery's thumbnails, then `report.json` (last, so a
/// folder with a report is complete).
fn write_folder(
    rep: &mut report::EvalReport,
    samples: &[dataset::Sample],
    preset: &Preset,
    dir: &Path,
    cap: usize,
) -> Result<(), HarnessError> {
    std::fs::create_dir_all(dir).map_err(|source| HarnessError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    gallery::write(rep, samples, preset, dir, cap)?;
    write_json(&dir.join("report.json"), rep)
}

/// Writes the report as pretty JSON: to `<path>.tmp`, then renamed, so a
/// failed write (a full disk) never leaves a truncated report.
fn write_json(path: &Path, rep: &report::EvalReport) -> Result<(), HarnessError> {
    let text = serde_json::to_string_pretty(rep).map_err(|e| HarnessError::Usage(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        HarnessError::Write {
            path: path.display().to_string(),
            source,
        }
    })
}

/// Samples every GPU NVML shows while the evaluation runs (none when the
/// interval is 0: the report says it was off).
fn gpu_monitor(interval_ms: u64) -> GpuMonitorRun {
    if interval_ms == 0 {
        return GpuMonitorRun::Off;
    }
    GpuMonitorRun::On(gpumon::Sampler::start(std::time::Duration::from_millis(
        interval_ms,
    )))
}

enum GpuMonitorRun {
    Off,
    On(gpumon::Sampler),
}

impl GpuMonitorRun {
    fn finish(self) -> report::GpuMonitor {
        match self {
            GpuMonitorRun::Off => {
                report::GpuMonitor::unavailable("GPU monitoring off (--monitor-interval-ms 0)")
            }
            GpuMonitorRun::On(s) => s.finish(),
        }
    }
}
