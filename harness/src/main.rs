//! torchenv harness: runs inside each torchenv image (and on the host for
//! tests), linked against exactly that image's libtorch.

use harness::{
    checkpoint, cli, cuda, dataset, eval, eval_report, models, npy, preprocess, runtime,
    weights_download,
};

use clap::Parser;
use cli::{Cli, Command, DeviceArg, EvalArgs, Normalization, PresetOverrides};
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
        Command::Eval(args) => run_eval(args),
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
            ExitCode::from(cuda::EXIT_USAGE as u8)
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

/// The dataset's samples, `--limit` applied.
fn eval_samples(args: &EvalArgs) -> Result<Vec<dataset::Sample>, HarnessError> {
    let mut samples = match &args.labels {
        Some(l) => dataset::labels_file(&args.data, l)?,
        None => dataset::image_folder(&args.data)?,
    };
    if let Some(n) = args.limit {
        samples.truncate(n);
        if samples.is_empty() {
            return Err(HarnessError::Usage(
                "--limit 0 leaves nothing to evaluate".into(),
            ));
        }
    }
    Ok(samples)
}

/// `--device`, refused when CUDA is asked for but missing, or when fp16
/// autocast would run on the CPU.
fn eval_device(args: &EvalArgs) -> Result<Device, HarnessError> {
    let device = match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => {
            if !tch::Cuda::is_available() {
                return Err(eval::EvalError::NoCuda.into());
            }
            Device::Cuda(0)
        }
    };
    if args.autocast == Some(eval::Autocast::Fp16) && device == Device::Cpu {
        return Err(HarnessError::Usage(
            "--autocast fp16 needs --device cuda (use bf16 on the CPU)".into(),
        ));
    }
    Ok(device)
}

/// `--weights` as a local file, downloaded (and verified) first if a URL.
fn local_weights(args: &EvalArgs) -> Result<std::path::PathBuf, HarnessError> {
    if weights_download::is_url(&args.weights) {
        let cache = weights_download::cache_root()?.join("weights");
        Ok(weights_download::fetch(
            &args.weights,
            args.sha256.as_deref(),
            &cache,
        )?)
    } else {
        Ok(std::path::PathBuf::from(&args.weights))
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
    }
}

fn run_eval(args: EvalArgs) -> Result<(), HarnessError> {
    let preset = preset_for(args.model, &args.overrides)?;
    if args.batch_size == 0 {
        return Err(HarnessError::Usage(
            "--batch-size must be at least 1".into(),
        ));
    }
    let samples = eval_samples(&args)?;
    let device = eval_device(&args)?;
    let weights_path = local_weights(&args)?;
    let notes = eval::apply_determinism(args.deterministic);
    for n in &notes {
        eprintln!("note: {n}");
    }
    let (mut model, meta) = load_model(args.model, &weights_path, args.sha256.as_deref())?;
    let opts = eval::EvalOptions {
        model: args.model,
        preset,
        device,
        batch_size: args.batch_size,
        workers: args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        // oneDNN convolutions are much faster channels-last on CPU (B0:
        // about 1.6x), with no reorders between layers.
        channels_last: args.channels_last || device == Device::Cpu,
        autocast: args.autocast,
        deterministic: args.deterministic,
    };
    model.prepare(&opts)?;
    let mut dumped = LogitsDump::default();
    let dump = args.dump_logits.is_some();
    let outcome = eval::evaluate(&model, &samples, &opts, |idx, logits| {
        if dump {
            dumped.add(idx, logits);
        }
    })?;
    if outcome.probs.iter().all(Option::is_none) {
        return Err(eval::EvalError::NothingEvaluated(outcome.failed.len()).into());
    }
    if let Some(path) = &args.dump_logits {
        dumped.write(path)?;
    }
    let ctx = eval_report::ReportContext {
        model: args.model,
        weights: report::WeightsInfo {
            source: args.weights.clone(),
            sha256: meta.sha256,
            format: meta.format.into(),
        },
        dataset_root: args.data.display().to_string(),
        labels_file: args.labels.as_ref().map(|l| l.display().to_string()),
        settings: run_settings(&opts),
        versions: run_versions(device),
    };
    let rep = eval_report::build_report(ctx, &samples, &outcome);
    print!("{}", eval_report::render(&rep));
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&rep).map_err(|e| HarnessError::Usage(e.to_string()))?;
        std::fs::write(path, text).map_err(|source| HarnessError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}
