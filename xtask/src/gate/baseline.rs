//! Baselines: insta-format snapshot files in `fixtures/baselines/`.
//!
//! Two kinds per environment:
//! - `<env>__<model>.snap`: accuracy, per-sample top-5 (synset and
//!   probability rounded to [`DECIMALS`] places, like
//!   `insta::rounded_redaction(4)`) and the samples that failed to decode;
//! - `<env>__versions.snap`: torch, CUDA, cuDNN and device, kept apart so an
//!   expected version bump is a notice, not an accuracy failure.
//!
//! Each file is insta's layout: a YAML header between `---` lines, then the
//! body (YAML here). The gate compares bodies numerically (see
//! [`super::compare`]), never as strings; on a mismatch it writes
//! `<name>.snap.new` next to the baseline, which `cargo insta review` /
//! `cargo insta accept` (see fixtures/baselines/README.md) turn into the new
//! baseline.
//!
//! May use: `gate::report`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::{EvalReport, Versions as ReportVersions};

/// Probabilities and accuracies are stored with this many decimals.
pub const DECIMALS: i32 = 4;

/// Folder of the baselines, relative to the repository root.
pub const DIR: &str = "fixtures/baselines";

/// Bumped when the body layout changes incompatibly.
pub const FORMAT: u32 = 1;

/// `x` rounded to [`DECIMALS`] places (what `insta::rounded_redaction`
/// does to floats).
pub fn round(x: f64) -> f64 {
    let scale = 10f64.powi(DECIMALS);
    let r = (x * scale).round() / scale;
    // No "-0.0000" in files.
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// The accuracy snapshot of one model in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub format: u32,
    pub env: String,
    pub model: String,
    pub metrics: Metrics,
    pub samples: Vec<Sample>,
    #[serde(default)]
    pub failed: Vec<Failed>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Fraction in [0, 1], rounded.
    pub top1: f64,
    pub top5: f64,
    pub correct_top1: usize,
    pub correct_top5: usize,
    pub evaluated: usize,
}

impl Metrics {
    /// Top-1 in percent, from the exact counts.
    pub fn top1_pct(&self) -> f64 {
        pct(self.correct_top1, self.evaluated)
    }
    pub fn top5_pct(&self) -> f64 {
        pct(self.correct_top5, self.evaluated)
    }
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub path: String,
    /// True synset.
    pub label: String,
    pub correct: bool,
    /// Most probable first.
    pub top5: Vec<Prediction>,
}

impl Sample {
    /// The top-1 prediction, if the harness reported any.
    pub fn top1(&self) -> Option<&Prediction> {
        self.top5.first()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub synset: String,
    /// Rounded to [`DECIMALS`].
    pub p: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub path: String,
    pub error: String,
}

impl Accuracy {
    /// The snapshot of a harness report, rounded.
    pub fn from_report(env: &str, report: &EvalReport) -> Accuracy {
        Accuracy {
            format: FORMAT,
            env: env.to_string(),
            model: report.model.clone(),
            metrics: Metrics {
                top1: round(report.metrics.top1),
                top5: round(report.metrics.top5),
                correct_top1: report.metrics.correct_top1,
                correct_top5: report.metrics.correct_top5,
                evaluated: report.metrics.evaluated,
            },
            samples: report
                .samples
                .iter()
                .map(|s| Sample {
                    path: s.path.clone(),
                    label: s.label_synset.clone(),
                    correct: s.correct,
                    top5: s
                        .top5
                        .iter()
                        .map(|p| Prediction {
                            synset: p.synset.clone(),
                            p: round(p.probability),
                        })
                        .collect(),
                })
                .collect(),
            failed: report
                .failed
                .iter()
                .map(|f| Failed {
                    path: f.path.clone(),
                    error: f.error.clone(),
                })
                .collect(),
        }
    }

    /// The YAML body: block style, one line per prediction, fixed decimals,
    /// every string quoted (JSON strings are YAML double-quoted scalars), so
    /// review diffs are small and stable.
    pub fn to_yaml(&self) -> String {
        let mut s = String::new();
        s += &format!("format: {}\n", self.format);
        s += &format!("env: {}\n", q(&self.env));
        s += &format!("model: {}\n", q(&self.model));
        s += "metrics:\n";
        s += &format!("  top1: {}\n", f(self.metrics.top1));
        s += &format!("  top5: {}\n", f(self.metrics.top5));
        s += &format!("  correct_top1: {}\n", self.metrics.correct_top1);
        s += &format!("  correct_top5: {}\n", self.metrics.correct_top5);
        s += &format!("  evaluated: {}\n", self.metrics.evaluated);
        if self.samples.is_empty() {
            s += "samples: []\n";
        } else {
            s += "samples:\n";
        }
        for sample in &self.samples {
            s += &format!("  - path: {}\n", q(&sample.path));
            s += &format!("    label: {}\n", q(&sample.label));
            s += &format!("    correct: {}\n", sample.correct);
            s += "    top5:\n";
            for p in &sample.top5 {
                s += &format!("      - {{ synset: {}, p: {} }}\n", q(&p.synset), f(p.p));
            }
        }
        if self.failed.is_empty() {
            s += "failed: []\n";
        } else {
            s += "failed:\n";
        }
        for failed in &self.failed {
            s += &format!("  - path: {}\n", q(&failed.path));
            s += &format!("    error: {}\n", q(&failed.error));
        }
        s
    }

    pub fn from_yaml(body: &str) -> Result<Accuracy, String> {
        let a: Accuracy = serde_yaml::from_str(body).map_err(|e| e.to_string())?;
        if a.format != FORMAT {
            return Err(format!(
                "baseline format {} (this torchenv reads {FORMAT})",
                a.format
            ));
        }
        Ok(a)
    }
}

/// The versions snapshot of one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub env: String,
    pub torch: String,
    pub cuda: Option<String>,
    pub cudnn: Option<String>,
    /// `cpu` or `cuda…` (the harness's `settings.device`).
    pub device: String,
    /// `cpu` or the GPU name.
    pub device_name: String,
}

impl Versions {
    pub fn from_report(env: &str, device: &str, v: &ReportVersions) -> Versions {
        Versions {
            env: env.to_string(),
            torch: v.torch.clone(),
            cuda: v.cuda_runtime.clone(),
            cudnn: v.cudnn.clone(),
            device: device.to_string(),
            device_name: v.device_name.clone(),
        }
    }

    pub fn is_gpu(&self) -> bool {
        self.device.starts_with("cuda")
    }

    pub fn to_yaml(&self) -> String {
        let opt = |o: &Option<String>| o.as_deref().map_or("null".to_string(), q);
        format!(
            "env: {}\ntorch: {}\ncuda: {}\ncudnn: {}\ndevice: {}\ndevice_name: {}\n",
            q(&self.env),
            q(&self.torch),
            opt(&self.cuda),
            opt(&self.cudnn),
            q(&self.device),
            q(&self.device_name)
        )
    }

    pub fn from_yaml(body: &str) -> Result<Versions, String> {
        serde_yaml::from_str(body).map_err(|e| e.to_string())
    }

    /// `field: old → new` for every field that differs.
    pub fn changes(&self, new: &Versions) -> Vec<String> {
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        let mut out = Vec::new();
        for (field, a, b) in [
            ("torch", self.torch.clone(), new.torch.clone()),
            ("CUDA", show(&self.cuda), show(&new.cuda)),
            ("cuDNN", show(&self.cudnn), show(&new.cudnn)),
            ("device", self.device.clone(), new.device.clone()),
            (
                "device name",
                self.device_name.clone(),
                new.device_name.clone(),
            ),
        ] {
            if a != b {
                out.push(format!("{field} {a} → {b}"));
            }
        }
        out
    }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn f(x: f64) -> String {
    format!("{:.*}", DECIMALS as usize, x)
}

/// A snapshot file: insta's header and our body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapFile {
    /// `expression:` in the header: what was snapshotted.
    pub expression: String,
    pub body: String,
}

impl SnapFile {
    /// insta's layout: `---`, header (YAML), `---`, body.
    pub fn render(&self) -> String {
        format!(
            "---\nsource: xtask/src/gate/baseline.rs\nexpression: {}\n---\n{}",
            q(&self.expression),
            self.body
        )
    }

    /// Splits a `.snap` file into header fields and body. Accepts any header
    /// insta writes (it may rewrite ours on accept).
    pub fn parse(text: &str) -> Result<SnapFile, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let rest = text
            .strip_prefix("---\n")
            .or_else(|| text.strip_prefix("---\r\n"))
            .ok_or("no insta header (the file must start with `---`)")?;
        let end = rest
            .find("\n---\n")
            .or_else(|| rest.find("\n---\r\n"))
            .ok_or("unterminated insta header (no second `---` line)")?;
        let header = &rest[..end];
        let body_start = rest[end + 1..]
            .find('\n')
            .map_or(rest.len(), |i| end + 1 + i + 1);
        let body = rest[body_start..].to_string();
        let header: serde_yaml::Value =
            serde_yaml::from_str(header).map_err(|e| format!("insta header: {e}"))?;
        let expression = header
            .get("expression")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        Ok(SnapFile { expression, body })
    }
}

/// The folder of baselines and the names in it.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

/// What a read found.
#[derive(Debug)]
pub enum Stored<T> {
    Missing,
    Found(T),
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// `fixtures/baselines` under the repository root that holds `spec`.
    pub fn for_spec(spec_path: &Path) -> Store {
        let root = spec_path.parent().unwrap_or(Path::new("."));
        Store::new(root.join(DIR))
    }

    /// Snapshot name of a model's accuracy in an environment.
    pub fn accuracy_name(env: &str, model: &str) -> String {
        format!("{env}__{model}")
    }

    pub fn versions_name(env: &str) -> String {
        format!("{env}__versions")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.snap"))
    }

    pub fn new_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.snap.new"))
    }

    /// Reads `<name>.snap`.
    pub fn read(&self, name: &str) -> Result<Stored<SnapFile>, String> {
        let path = self.path(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => SnapFile::parse(&text)
                .map(Stored::Found)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored::Missing),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes `<name>.snap.new` for `cargo insta review`; returns its path.
    pub fn write_new(&self, name: &str, snap: &SnapFile) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let path = self.new_path(name);
        std::fs::write(&path, snap.render()).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Writes `<name>.snap` directly (`--accept`, and recording).
    pub fn write(&self, name: &str, snap: &SnapFile) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let path = self.path(name);
        std::fs::write(&path, snap.render()).map_err(|e| format!("{}: {e}", path.display()))?;
        self.remove_new(name)?;
        Ok(path)
    }

    /// Removes a stale `<name>.snap.new` (the run now matches the baseline,
    /// so accepting the old pending file would be wrong).
    pub fn remove_new(&self, name: &str) -> Result<(), String> {
        let path = self.new_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}
