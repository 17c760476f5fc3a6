//! Image decoding and torchvision-equivalent eval preprocessing:
//! PIL `open().convert("RGB")` → `Resize(S)` (shorter side, PIL filter with
//! antialias) → `CenterCrop(C)` → `ToTensor` → `Normalize(mean, std)`.
//!
//! JPEGs are decoded by libjpeg-turbo as in Pillow ([`crate::jpeg`]), and
//! resizing is done on 8-bit RGB with a reimplementation of Pillow's
//! resampler ([`crate::resample`]), so the result is PIL's to the byte.
//! PNG and the rare CMYK JPEG go through the `image` crate (PNG decoding is
//! exact; CMYK conversion may differ from Pillow's).
//!
//! May use: `jpeg`, `resample`.

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use std::path::Path;

/// PIL's decompression-bomb error threshold (2 × `MAX_IMAGE_PIXELS`).
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// Why an image could not be turned into a tensor.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot decode: {0}")]
    Decode(#[from] image::ImageError),
    #[error("image is {width}x{height} = {} pixels, over the {MAX_PIXELS} pixel limit", u64::from(*width) * u64::from(*height))]
    TooLarge { width: u32, height: u32 },
    #[error("image is empty ({width}x{height})")]
    Empty { width: u32, height: u32 },
    #[error("truncated JPEG: no end-of-image marker (Pillow: 'image file is truncated')")]
    TruncatedJpeg,
    #[error("cannot decode: {0}")]
    Jpeg(#[from] crate::jpeg::JpegError),
}

pub use crate::resample::Interpolation;

/// Eval preprocessing parameters.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// Shorter side after resize.
    pub resize: u32,
    /// Square center crop size (model input size).
    pub crop: u32,
    pub interpolation: Interpolation,
    /// Per-channel mean, on the [0, 1] scale.
    pub mean: [f32; 3],
    /// Per-channel std, on the [0, 1] scale.
    pub std: [f32; 3],
    /// Widen the resampling filter when downscaling (PIL always does).
    pub antialias: bool,
}

impl Preset {
    /// As the eval report records it.
    pub fn to_report(&self) -> report::Preprocess {
        report::Preprocess {
            resize: self.resize,
            crop: self.crop,
            interpolation: self.interpolation.name().into(),
            mean: self.mean,
            std: self.std,
            antialias: self.antialias,
        }
    }
}

/// Decodes any supported file (format sniffed from content, not the
/// extension) and converts to 8-bit RGB like PIL's `convert("RGB")`:
/// gray is replicated, alpha dropped (not composited), 16-bit scaled to 8.
pub fn decode_rgb(path: &Path) -> Result<image::RgbImage, PreprocessError> {
    // One read of the file; header, completeness check and decoder all work
    // on these bytes.
    let bytes = std::fs::read(path)?;
    check_jpeg_complete(&bytes)?;
    if bytes.starts_with(&[0xFF, 0xD8]) {
        // libjpeg-turbo, as Pillow; CMYK/YCCK and oversized files fall
        // through to the generic decoder below.
        if let Some(d) = crate::jpeg::decode_rgb(&bytes, MAX_PIXELS)? {
            let (w, h) = (d.width as u32, d.height as u32);
            return Ok(image::RgbImage::from_raw(w, h, d.rgb).expect("buffer of w*h*3 bytes"));
        }
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(&bytes[..])).with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(PreprocessError::TooLarge { width, height });
    }
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty { width, height });
    }
    let img = DynamicImage::from_decoder(decoder)?;
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// The `image` crate decodes a cut-off JPEG silently (missing rows filled);
/// Pillow refuses it. Require an EOI marker (FF D9) near the end of a JPEG.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), PreprocessError> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Ok(());
    }
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    if tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(PreprocessError::TruncatedJpeg)
    }
}

/// torchvision's `Resize(int)` output size: shorter side = `size`, longer
/// side = `int(size * long / short)`.
pub fn resized_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (f64::from(size) * f64::from(long) / f64::from(short)) as u32;
    if width <= height {
        (size, new_long.max(1))
    } else {
        (new_long.max(1), size)
    }
}

/// torchvision's center-crop offset: `int(round((len - crop) / 2.0))` with
/// Python's round-half-to-even.
pub fn crop_offset(len: u32, crop: u32) -> u32 {
    let d = len.saturating_sub(crop);
    let half = d / 2;
    if d.is_multiple_of(2) || half.is_multiple_of(2) {
        half
    } else {
        half + 1
    }
}

/// Resize + center crop + `ToTensor` + `Normalize` of decoded RGB8 in one
/// pass: only the pixels the crop keeps are resampled (bit-identical to
/// resizing everything, see [`crate::resample::resize_window_rgb8`]) and
/// each output row is written straight to normalized CHW float32.
pub fn resize_crop_normalize(img: &image::RgbImage, preset: &Preset) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let (nw, nh) = resized_size(w, h, preset.resize);
    let c = preset.crop as usize;
    let (nw, nh) = (nw as usize, nh as usize);
    // `(v / 255 - mean) / std` per channel and byte value, same f32 ops.
    let mut lut = [[0f32; 256]; 3];
    for (ch, l) in lut.iter_mut().enumerate() {
        for (v, o) in l.iter_mut().enumerate() {
            *o = (v as f32 / 255.0 - preset.mean[ch]) / preset.std[ch];
        }
    }
    let plane = c * c;
    let mut out = vec![0f32; 3 * plane];
    // Pad with zero pixels like torchvision when the crop is larger.
    let (pad_x, pad_y) = (c.saturating_sub(nw) / 2, c.saturating_sub(nh) / 2);
    if nw < c || nh < c {
        for (ch, p) in out.chunks_exact_mut(plane).enumerate() {
            p.fill(lut[ch][0]);
        }
    }
    let win = crate::resample::Window {
        x0: crop_offset(nw as u32, c as u32) as usize,
        y0: crop_offset(nh as u32, c as u32) as usize,
        w: c.min(nw),
        h: c.min(nh),
    };
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    crate::resample::resize_window_rgb8(
        img.as_raw(),
        w as usize,
        h as usize,
        nw,
        nh,
        win,
        preset.interpolation,
        preset.antialias,
        |y, row| {
            let o = (y + pad_y) * c + pad_x;
            let n = row.len() / 3;
            let (r, g, b) = (&mut r[o..o + n], &mut g[o..o + n], &mut b[o..o + n]);
            for (i, px) in row.chunks_exact(3).enumerate() {
                r[i] = lut[0][usize::from(px[0])];
                g[i] = lut[1][usize::from(px[1])];
                b[i] = lut[2][usize::from(px[2])];
            }
        },
    );
    out
}

/// Full pipeline for one file: CHW float32 of `crop × crop`.
pub fn preprocess_file(path: &Path, preset: &Preset) -> Result<Vec<f32>, PreprocessError> {
    let img = decode_rgb(path)?;
    Ok(resize_crop_normalize(&img, preset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_resize_sizes() {
        assert_eq!(resized_size(500, 375, 256), (341, 256));
        assert_eq!(resized_size(375, 500, 256), (256, 341));
        assert_eq!(resized_size(300, 300, 256), (256, 256));
    }

    #[test]
    fn python_round_half_even_crop() {
        // (341 - 224) / 2 = 58.5 -> 58; (343 - 224) / 2 = 59.5 -> 60
        assert_eq!(crop_offset(341, 224), 58);
        assert_eq!(crop_offset(343, 224), 60);
        assert_eq!(crop_offset(256, 224), 16);
        assert_eq!(crop_offset(224, 224), 0);
    }
}
