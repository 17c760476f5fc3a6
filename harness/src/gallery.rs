//! Thumbnails for the report's gallery of mistakes: the model's input (the
//! preprocessed center crop, normalization undone) of the most confident
//! mistakes, as small PNGs under `<out>/thumbs/`.
//!
//! May use: `dataset`, `preprocess`.

use crate::dataset::Sample;
use crate::preprocess::{self, Preset};
use report::EvalReport;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Longest side of a thumbnail, pixels (the crop is box-downscaled by an
/// integer factor to at most this).
const MAX_SIDE: usize = 160;
/// Folder of the thumbnails inside the report folder.
pub const THUMBS: &str = "thumbs";

/// Why a thumbnail could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("writing thumbnail {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding thumbnail {path}: {source}")]
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// Indices into `report.samples` of the mistakes, most confident first
/// (ties: dataset order), at most `cap`.
pub fn most_confident_mistakes(report: &EvalReport, cap: usize) -> Vec<usize> {
    let mut wrong: Vec<usize> = (0..report.samples.len())
        .filter(|&i| !report.samples[i].correct)
        .collect();
    let conf = |i: usize| report.samples[i].confidence();
    wrong.sort_by(|&a, &b| conf(b).total_cmp(&conf(a)).then(a.cmp(&b)));
    wrong.truncate(cap);
    wrong
}

/// Writes the thumbnails of up to `cap` mistakes into `dir/thumbs` and
/// records each in its sample's `thumbnail`. An image that no longer
/// decodes gets none (it decoded for the eval; the gallery is best effort
/// for the picture, not for the files it writes).
pub fn write(
    report: &mut EvalReport,
    samples: &[Sample],
    preset: &Preset,
    dir: &Path,
    cap: usize,
) -> Result<usize, GalleryError> {
    let picks = most_confident_mistakes(report, cap);
    if picks.is_empty() {
        return Ok(0);
    }
    let thumbs = dir.join(THUMBS);
    std::fs::create_dir_all(&thumbs).map_err(|source| GalleryError::Write {
        path: thumbs.clone(),
        source,
    })?;
    let by_rel: HashMap<&str, &Sample> = samples.iter().map(|s| (s.rel_path.as_str(), s)).collect();
    let mut written = 0;
    for (n, i) in picks.into_iter().enumerate() {
        let Some(sample) = by_rel.get(report.samples[i].path.as_str()) else {
            continue;
        };
        let Ok(chw) = preprocess::preprocess_file(&sample.path, preset) else {
            continue;
        };
        let name = format!("{THUMBS}/{n:03}.png");
        let path = dir.join(&name);
        let img = thumbnail(&chw, preset);
        img.save_with_format(&path, image::ImageFormat::Png)
            .map_err(|source| match source {
                image::ImageError::IoError(source) => GalleryError::Write {
                    path: path.clone(),
                    source,
                },
                source => GalleryError::Encode {
                    path: path.clone(),
                    source,
                },
            })?;
        report.samples[i].thumbnail = Some(name);
        written += 1;
    }
    Ok(written)
}

/// The normalized CHW crop back to RGB bytes, box-downscaled.
pub fn thumbnail(chw: &[f32], preset: &Preset) -> image::RgbImage {
    let side = preset.crop as usize;
    let factor = side.div_ceil(MAX_SIDE).max(1);
    let out = side / factor;
    let plane = side * side;
    let mut img = image::RgbImage::new(out as u32, out as u32);
    for (x, y, px) in img.enumerate_pixels_mut() {
        for c in 0..3 {
            let mut sum = 0.0f32;
            for dy in 0..factor {
                let row = (y as usize * factor + dy) * side;
                for dx in 0..factor {
                    sum += chw[c * plane + row + x as usize * factor + dx];
                }
            }
            let v = sum / (factor * factor) as f32 * preset.std[c] + preset.mean[c];
            px[c] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    img
}
