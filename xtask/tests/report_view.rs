//! The report folder of a realistic synthetic run (300 images over 40
//! classes, mistakes with thumbnails, one GPU sampled 20 times, a timeline)
//! and of a degenerate one (one correct image, no GPU): every PNG decodes to
//! the expected size and is not blank, `index.html` links every plot and
//! thumbnail, and headless Chromium loads the page with no broken image.
//!
//! The Chromium test needs the `chromium` package (Debian) and fails when it
//! is missing. It leaves the folder and a screenshot of the page under
//! `target/test-artifacts/report_view/`.

mod common;
use common::{artifacts, check_page, decode};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use report::{
    ClassAccuracy, ConfusionEntry, DatasetInfo, EvalReport, GpuMonitor, GpuSample, GpuSeries,
    Metrics, Performance, Prediction, SampleResult, Settings, TimelinePoint, Versions, WeightsInfo,
};
use xtask::report_view::{plots, write_folder, Written};

/// A small deterministic pseudo-random generator (no dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn synset(index: usize) -> String {
    report::imagenet::classes()[index].synset.to_string()
}

/// A 48×48 RGB gradient PNG (a stand-in for the harness's crops).
fn write_thumbnail(path: &Path, seed: usize) {
    let (w, h) = (48u32, 48u32);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            rgb.extend([(x * 5) as u8, (y * 5) as u8, (seed * 37 % 256) as u8]);
        }
    }
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(&rgb)
        .unwrap();
}

/// One image's top-5: the label at `rank` (0 = right, 5 = not in the top 5),
/// the rest from neighbouring classes.
fn top5(classes: &[usize], label: usize, rank: usize, rng: &mut Lcg) -> Vec<Prediction> {
    let top = 0.35 + 0.64 * rng.next();
    let mut probs = vec![top];
    let mut rest = 1.0 - top;
    for _ in 1..5 {
        let p = rest * (0.3 + 0.4 * rng.next());
        probs.push(p);
        rest -= p;
    }
    let label_pos = classes.iter().position(|&c| c == label).unwrap();
    let mut others = (1..classes.len()).map(|d| classes[(label_pos + d) % classes.len()]);
    probs
        .iter()
        .enumerate()
        .map(|(i, &probability)| {
            let index = if i == rank {
                label
            } else {
                others.next().unwrap()
            };
            Prediction {
                index,
                synset: synset(index),
                probability,
            }
        })
        .collect()
}

/// `n` images over 40 classes; about a quarter wrong, the 30 most
/// confident mistakes with a thumbnail written into `dir/thumbs`.
fn realistic(n: usize, dir: &Path) -> EvalReport {
    let classes: Vec<usize> = (0..40).map(|i| i * 25 + 1).collect();
    let mut rng = Lcg(7);
    let mut samples = Vec::new();
    for i in 0..n {
        let label = classes[i % classes.len()];
        // Hard classes (the first few) are wrong more often.
        let p_wrong = if i % classes.len() < 6 { 0.6 } else { 0.18 };
        let rank = if rng.next() < p_wrong {
            1 + (rng.next() * 5.0) as usize
        } else {
            0
        };
        let top5 = top5(&classes, label, rank, &mut rng);
        samples.push(SampleResult {
            path: format!("val/{}/ILSVRC2012_val_{i:08}.JPEG", synset(label)),
            label,
            label_synset: synset(label),
            correct: rank == 0,
            top5,
            thumbnail: None,
        });
    }
    let mut wrong: Vec<usize> = (0..n).filter(|&i| !samples[i].correct).collect();
    wrong.sort_by(|&a, &b| {
        samples[b].top5[0]
            .probability
            .total_cmp(&samples[a].top5[0].probability)
    });
    std::fs::create_dir_all(dir.join("thumbs")).unwrap();
    for (k, &i) in wrong.iter().take(30).enumerate() {
        let rel = format!("thumbs/{k:03}_{}.png", samples[i].label_synset);
        write_thumbnail(&dir.join(&rel), k);
        samples[i].thumbnail = Some(rel);
    }
    let mut report = assemble(samples);
    report.gpu = gpu_series(20);
    report.performance = performance(n);
    report
}

fn gpu_series(n: usize) -> GpuMonitor {
    let samples: Vec<GpuSample> = (0..n)
        .map(|i| GpuSample {
            t: i as f64 * 0.25,
            memory_used_bytes: Some((1 << 30) + (i as u64) * (150 << 20)),
            utilization_percent: Some(if i < 2 { 10 } else { 85 + (i % 7) as u32 }),
            temperature_c: Some(40 + i as u32),
            power_watts: Some(80.0 + 12.5 * i as f64),
            sm_clock_mhz: Some(1980),
        })
        .collect();
    GpuMonitor {
        available: true,
        reason: None,
        interval_ms: 250,
        driver_version: Some("550.54.15".into()),
        devices: vec![GpuSeries {
            index: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            uuid: "GPU-0000".into(),
            memory_total_bytes: Some(80 << 30),
            summary: report::gpu::summarize(&samples),
            samples,
        }],
    }
}

fn performance(n: usize) -> Performance {
    let timeline: Vec<TimelinePoint> = (1..=10)
        .map(|b| TimelinePoint {
            seconds: b as f64 * 0.4 + if b > 5 { 0.2 } else { 0.0 },
            images: (n * b / 10).min(n),
        })
        .collect();
    let wall = timeline.last().unwrap().seconds;
    Performance {
        wall_seconds: wall,
        images_per_second: n as f64 / wall,
        timeline,
        peak_gpu_memory_bytes: Some(4 << 30),
        ..Performance::default()
    }
}

/// Metrics, per-class accuracy and confusion computed from `samples`.
fn assemble(samples: Vec<SampleResult>) -> EvalReport {
    let n = samples.len();
    let mut per_class: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    let mut confusion: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut topk = [0usize; 10];
    for s in &samples {
        let e = per_class.entry(s.label).or_default();
        e.0 += 1;
        e.1 += usize::from(s.correct);
        if !s.correct {
            *confusion.entry((s.label, s.top5[0].index)).or_default() += 1;
        }
        if let Some(rank) = s.top5.iter().position(|p| p.index == s.label) {
            topk.iter_mut().skip(rank).for_each(|c| *c += 1);
        }
    }
    let mut confusion: Vec<ConfusionEntry> = confusion
        .into_iter()
        .map(|((t, p), count)| ConfusionEntry {
            true_index: t,
            true_synset: synset(t),
            predicted_index: p,
            predicted_synset: synset(p),
            count,
        })
        .collect();
    confusion.sort_by_key(|e| std::cmp::Reverse(e.count));
    let frac = |c: usize| c as f64 / n.max(1) as f64;
    EvalReport {
        schema_version: report::SCHEMA_VERSION,
        model: "efficientnet_b0".into(),
        weights: WeightsInfo {
            source: "/models/efficientnet_b0.pth".into(),
            sha256: "3dd342df5c2a8b1e9f0e7f5b2a8c6d4e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c".into(),
            format: "torch-zip".into(),
        },
        dataset: DatasetInfo {
            root: "/data/imagenet/val".into(),
            labels_file: None,
            layout: "image-folder".into(),
            num_images: n,
            num_evaluated: n,
            num_failed: 0,
        },
        settings: Settings {
            device: "cuda:0".into(),
            batch_size: 32,
            workers: 4,
            dtype: "float32".into(),
            autocast: None,
            channels_last: false,
            deterministic: true,
            preprocess: Default::default(),
            runtime: "libtorch".into(),
        },
        metrics: Metrics {
            top1: frac(topk[0]),
            top5: frac(topk[4]),
            correct_top1: topk[0],
            correct_top5: topk[4],
            evaluated: n,
            topk: topk.iter().map(|&c| frac(c)).collect(),
        },
        per_class: per_class
            .into_iter()
            .map(|(index, (n, correct))| ClassAccuracy {
                index,
                synset: synset(index),
                name: report::imagenet::classes()[index].name.to_string(),
                n,
                correct,
                accuracy: correct as f64 / n as f64,
            })
            .collect(),
        confusion,
        misclassified: samples
            .iter()
            .filter(|s| !s.correct)
            .map(|s| s.path.clone())
            .collect(),
        samples,
        failed: vec![],
        performance: Performance::default(),
        versions: Versions {
            harness: "0.1.0".into(),
            torch: "2.4.1+cu124".into(),
            cuda_runtime: Some("12.4".into()),
            cudnn: Some("90100".into()),
            device_name: "NVIDIA H100 80GB HBM3".into(),
            cuda_build: Some("12.4".into()),
            driver: Some("550.54.15".into()),
            onnxruntime: None,
        },
        gpu: GpuMonitor::default(),
        export: None,
    }
}

/// One correct image, CPU, no GPU, no timeline, no confusion.
fn degenerate() -> EvalReport {
    let tench = synset(0);
    let mut r = assemble(vec![SampleResult {
        path: "val/only.JPEG".into(),
        label: 0,
        label_synset: tench.clone(),
        top5: vec![Prediction {
            index: 0,
            synset: tench,
            probability: 1.0,
        }],
        correct: true,
        thumbnail: None,
    }]);
    r.metrics.topk.clear();
    r.settings.device = "cpu".into();
    r.versions.device_name = "cpu".into();
    r.versions.cudnn = None;
    r.versions.driver = None;
    r.gpu = GpuMonitor::unavailable("no NVIDIA driver (libnvidia-ml.so.1 not found)");
    r
}

fn assert_plots_drawn(written: &Written) {
    for plot in &written.plots {
        let (w, h, pixels) = decode(plot);
        assert_eq!((w, h), (plots::WIDTH, plots::HEIGHT), "{}", plot.display());
        let distinct: HashSet<u32> = pixels.iter().copied().collect();
        assert!(
            distinct.len() > 20,
            "{} looks blank: {} distinct colours",
            plot.display(),
            distinct.len()
        );
        let dark = pixels.iter().filter(|&&p| p < 0x40_40_40).count();
        assert!(
            dark > 200,
            "{} has no text: {dark} dark pixels",
            plot.display()
        );
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

const ALL_PLOTS: [&str; 10] = [
    "topk.png",
    "per_class.png",
    "confused_pairs.png",
    "confusion.png",
    "reliability.png",
    "coverage.png",
    "throughput.png",
    "gpu_memory.png",
    "gpu_utilization.png",
    "gpu_power_temp.png",
];

#[test]
fn a_realistic_report_gets_every_plot_the_page_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let report = realistic(300, dir.path());
    let written = write_folder(&report, dir.path()).unwrap();
    let names: Vec<String> = written.plots.iter().map(|p| file_name(p)).collect();
    assert_eq!(names, ALL_PLOTS);
    assert_plots_drawn(&written);
    let html = std::fs::read_to_string(&written.index).unwrap();
    for plot in ALL_PLOTS {
        assert!(
            html.contains(&format!("<img src=\"{plot}\"")),
            "{plot} not on the page"
        );
    }
    let thumbnails: Vec<&str> = report
        .samples
        .iter()
        .filter_map(|s| s.thumbnail.as_deref())
        .collect();
    assert_eq!(thumbnails.len(), 30);
    for t in &thumbnails {
        assert!(
            html.contains(&format!("<img src=\"{t}\"")),
            "{t} not on the page"
        );
    }
    assert!(html.contains("NVIDIA H100 80GB HBM3"));
    assert!(html.contains("<tr><th>CUDA build</th><td>12.4</td></tr>"));
    let md = std::fs::read_to_string(&written.summary).unwrap();
    assert!(md.contains("| top-1 | "), "{md}");
    assert!(md.contains("| GPU peak memory | GPU 0: 3.78 GiB |"), "{md}");
    assert!(md.contains("### 10 worst classes"));
    assert!(md.contains("### 10 most-confused pairs"));
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_degenerate_report_renders_empty_charts_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let report = degenerate();
    let written = write_folder(&report, dir.path()).unwrap();
    let names: Vec<String> = written.plots.iter().map(|p| file_name(p)).collect();
    assert_eq!(names, ALL_PLOTS[..7], "no GPU plots without GPU samples");
    assert_plots_drawn(&written);
    let html = std::fs::read_to_string(&written.index).unwrap();
    assert!(html.contains("GPU monitoring unavailable: no NVIDIA driver"));
    assert!(
        html.contains("<tr><th>CUDA build</th><td>12.4</td></tr>"),
        "shown on CPU runs too"
    );
    // Every degenerate shape at once: nothing wrong, no timeline, empty GPU.
    let mut empty = degenerate();
    empty.samples.clear();
    empty.per_class.clear();
    empty.metrics.evaluated = 0;
    empty.gpu = GpuMonitor {
        available: true,
        devices: vec![GpuSeries::default()],
        ..GpuMonitor::default()
    };
    let written = write_folder(&empty, dir.path()).unwrap();
    assert_eq!(written.plots.len(), 10);
    assert_plots_drawn(&written);
}

#[test]
fn chromium_loads_the_page_with_every_image() {
    let artifacts = artifacts("report_view");
    let folder = artifacts.join("folder");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&folder).unwrap();
    let report = realistic(300, &folder);
    let written = write_folder(&report, &folder).unwrap();
    let thumbnails = report
        .samples
        .iter()
        .filter(|s| s.thumbnail.is_some())
        .count();
    check_page(
        &written.index,
        written.plots.len() + thumbnails,
        &artifacts.join("index.png"),
    );
}
