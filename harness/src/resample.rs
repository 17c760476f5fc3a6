//! Pillow's convolution resampler (`Image.resize` with BILINEAR/BICUBIC),
//! reimplemented so preprocessing matches PIL + torchvision bit for bit on
//! the same decoded pixels: same filters (bicubic a = -0.5), support scaled
//! by the downscale factor (antialias), same 22-bit fixed-point
//! coefficients, horizontal pass first with 8-bit rounding/clipping of the
//! intermediate image, then the vertical pass.

use crate::preprocess::Interpolation;

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Per output pixel: first input index and fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, interp: Interpolation, antialias: bool) -> Coeffs {
    let (filter, support): (fn(f64) -> f64, f64) = match interp {
        Interpolation::Bicubic => (bicubic, 2.0),
        Interpolation::Bilinear => (bilinear, 1.0),
    };
    let scale = in_size as f64 / out_size as f64;
    // Antialias (PIL): the filter widens with the downscale factor. Without
    // it (torch's `antialias=False`) a downscale aliases.
    let filterscale = if antialias { scale.max(1.0) } else { 1.0 };
    let support = support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Pillow truncates toward zero with (int) casts.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = filter((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for x in 0..xmax {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[xx * ksize + x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs {
        bounds,
        ksize,
        weights,
    }
}

#[inline]
fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS) << 8 {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes packed RGB8 (`w × h`) to `nw × nh` like Pillow.
pub fn resize_rgb8(
    src: &[u8],
    w: usize,
    h: usize,
    nw: usize,
    nh: usize,
    interp: Interpolation,
    antialias: bool,
) -> Vec<u8> {
    let half = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass (only rows the vertical pass will read).
    let (tmp, tw, row0) = if nw != w {
        let cv = precompute(h, nh, interp, antialias);
        let first = cv.bounds.first().map_or(0, |b| b.0);
        let last = cv.bounds.last().map_or(h, |b| b.0 + b.1);
        let (row0, rows) = if nh != h {
            (first, last - first)
        } else {
            (0, h)
        };
        let ch = precompute(w, nw, interp, antialias);
        let mut out = vec![0u8; rows * nw * 3];
        for y in 0..rows {
            let in_row = &src[(row0 + y) * w * 3..][..w * 3];
            let out_row = &mut out[y * nw * 3..][..nw * 3];
            for (xx, &(xmin, xmax)) in ch.bounds.iter().enumerate() {
                let k = &ch.weights[xx * ch.ksize..][..xmax];
                let (mut s0, mut s1, mut s2) = (half, half, half);
                for (x, &kx) in k.iter().enumerate() {
                    let p = &in_row[(xmin + x) * 3..][..3];
                    let kx = i64::from(kx);
                    s0 += i64::from(p[0]) * kx;
                    s1 += i64::from(p[1]) * kx;
                    s2 += i64::from(p[2]) * kx;
                }
                out_row[xx * 3] = clip8(s0);
                out_row[xx * 3 + 1] = clip8(s1);
                out_row[xx * 3 + 2] = clip8(s2);
            }
        }
        (out, nw, row0)
    } else {
        (src.to_vec(), w, 0)
    };
    if nh == h {
        return tmp;
    }
    // Vertical pass.
    let cv = precompute(h, nh, interp, antialias);
    let mut out = vec![0u8; nh * tw * 3];
    for (yy, &(ymin, ymax)) in cv.bounds.iter().enumerate() {
        let k = &cv.weights[yy * cv.ksize..][..ymax];
        let out_row = &mut out[yy * tw * 3..][..tw * 3];
        for (xc, o) in out_row.iter_mut().enumerate() {
            let mut s = half;
            for (y, &ky) in k.iter().enumerate() {
                s += i64::from(tmp[(ymin - row0 + y) * tw * 3 + xc]) * i64::from(ky);
            }
            *o = clip8(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_size_unchanged() {
        let src: Vec<u8> = (0..4 * 3 * 3).map(|v| v as u8).collect();
        assert_eq!(
            resize_rgb8(&src, 4, 3, 4, 3, Interpolation::Bicubic, true),
            src
        );
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 50 * 40 * 3];
        let out = resize_rgb8(&src, 50, 40, 17, 13, Interpolation::Bicubic, true);
        assert!(out.iter().all(|&v| v == 77));
        let out = resize_rgb8(&src, 50, 40, 17, 13, Interpolation::Bilinear, true);
        assert!(out.iter().all(|&v| v == 77));
    }
}
