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

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`, for the output
/// pixels `range` only (each output pixel's weights depend on nothing else).
fn precompute(
    in_size: usize,
    out_size: usize,
    range: std::ops::Range<usize>,
    interp: Interpolation,
    antialias: bool,
) -> Coeffs {
    if in_size == out_size {
        // Pillow skips the pass; an exact-identity kernel gives the same
        // bytes: (p << 22 + 2^21) >> 22 == p.
        return Coeffs {
            weights: vec![1 << PRECISION_BITS; range.len()],
            bounds: range.map(|x| (x, 1)).collect(),
            ksize: 1,
        };
    }
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
    let mut bounds = Vec::with_capacity(range.len());
    let mut weights = vec![0i32; range.len() * ksize];
    let mut k = vec![0f64; ksize];
    for (i, xx) in range.enumerate() {
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
            weights[i * ksize + x] = if w < 0.0 {
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

/// Pillow's `clip8`: the 8-bit value of a fixed-point sum. Branch-free so
/// the row loops vectorize; identical results (v >= 2^30 -> 255, v <= 0 -> 0).
#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v.clamp(0, (1 << (PRECISION_BITS + 8)) - 1) >> PRECISION_BITS) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// One row of the horizontal pass over packed RGB. Sums fit in i32 exactly
/// as in Pillow (|coefficients| sum to about 1.1 * 2^22). `in_row` starts
/// at the row and may run on past it (the SIMD version reads 4 bytes a pixel).
#[inline(always)]
fn horizontal_row_impl(in_row: &[u8], out_row: &mut [u8], c: &Coeffs) {
    let rows = c.bounds.iter().zip(c.weights.chunks_exact(c.ksize));
    for (o, (&(xmin, xmax), k)) in out_row.chunks_exact_mut(3).zip(rows) {
        let px = &in_row[xmin * 3..(xmin + xmax) * 3];
        let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
        for (p, &kx) in px.chunks_exact(3).zip(&k[..xmax]) {
            s0 += i32::from(p[0]) * kx;
            s1 += i32::from(p[1]) * kx;
            s2 += i32::from(p[2]) * kx;
        }
        o[0] = clip8(s0);
        o[1] = clip8(s1);
        o[2] = clip8(s2);
    }
}

/// `acc[i] += row[i] * k`, the vertical pass's inner loop.
#[inline(always)]
fn accumulate_impl(acc: &mut [i32], row: &[u8], k: i32) {
    for (a, &p) in acc.iter_mut().zip(row) {
        *a += i32::from(p) * k;
    }
}

/// [`horizontal_row_impl`] with one SSE4.1 multiply-add per tap (RGB + one
/// ignored lane); the same i32 arithmetic, so the same bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_row_avx2(in_row: &[u8], out_row: &mut [u8], c: &Coeffs) {
    use std::arch::x86_64::*;
    let rows = c.bounds.iter().zip(c.weights.chunks_exact(c.ksize));
    for (o, (&(xmin, xmax), k)) in out_row.chunks_exact_mut(3).zip(rows) {
        let k = &k[..xmax];
        let end = (xmin + xmax) * 3;
        let mut acc = [HALF; 4];
        if end < in_row.len() {
            // Bytes xmin*3 ..= end are in bounds: each 4-byte load is too.
            let base = in_row[xmin * 3..=end].as_ptr();
            let mut v = _mm_set1_epi32(HALF);
            for (x, &kx) in k.iter().enumerate() {
                let q = base.add(x * 3).cast::<i32>().read_unaligned();
                let p = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(q));
                v = _mm_add_epi32(v, _mm_mullo_epi32(p, _mm_set1_epi32(kx)));
            }
            _mm_storeu_si128(acc.as_mut_ptr().cast(), v);
        } else {
            let px = &in_row[xmin * 3..end];
            for (p, &kx) in px.chunks_exact(3).zip(k) {
                for ch in 0..3 {
                    acc[ch] += i32::from(p[ch]) * kx;
                }
            }
        }
        o[0] = clip8(acc[0]);
        o[1] = clip8(acc[1]);
        o[2] = clip8(acc[2]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn accumulate_avx2(acc: &mut [i32], row: &[u8], k: i32) {
    accumulate_impl(acc, row, k)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn horizontal_row(avx2: bool, in_row: &[u8], out_row: &mut [u8], c: &Coeffs) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2 support was detected at run time.
        return unsafe { horizontal_row_avx2(in_row, out_row, c) };
    }
    let _ = avx2;
    horizontal_row_impl(in_row, out_row, c)
}

fn accumulate(avx2: bool, acc: &mut [i32], row: &[u8], k: i32) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2 support was detected at run time.
        return unsafe { accumulate_avx2(acc, row, k) };
    }
    let _ = avx2;
    accumulate_impl(acc, row, k)
}

/// A rectangle of the resized image: columns `x0..x0 + w`, rows `y0..y0 + h`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
    pub h: usize,
}

/// Resizes packed RGB8 (`w × h`) to `nw × nh` like Pillow, computing only
/// `win` of the result (bit-identical to resizing everything and cropping):
/// `emit(r, row)` receives window row `r` as packed RGB8 (`win.w * 3` bytes).
#[allow(clippy::too_many_arguments)]
pub fn resize_window_rgb8(
    src: &[u8],
    w: usize,
    h: usize,
    nw: usize,
    nh: usize,
    win: Window,
    interp: Interpolation,
    antialias: bool,
    mut emit: impl FnMut(usize, &[u8]),
) {
    assert!(win.x0 + win.w <= nw && win.y0 + win.h <= nh && src.len() >= w * h * 3);
    if win.w == 0 || win.h == 0 {
        return;
    }
    let cv = precompute(h, nh, win.y0..win.y0 + win.h, interp, antialias);
    let ch = precompute(w, nw, win.x0..win.x0 + win.w, interp, antialias);
    // Horizontal pass first (as Pillow), only over the input rows the
    // vertical pass reads for the window's rows.
    let row0 = cv.bounds.iter().map(|b| b.0).min().unwrap_or(0);
    let row1 = cv.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
    let rw = win.w * 3;
    let mut tmp = vec![0u8; (row1 - row0) * rw];
    let avx2 = has_avx2();
    for (y, out_row) in tmp.chunks_exact_mut(rw).enumerate() {
        horizontal_row(avx2, &src[(row0 + y) * w * 3..w * h * 3], out_row, &ch);
    }
    // Vertical pass over whole rows (vectorizes).
    let mut acc = vec![0i32; rw];
    let mut out = vec![0u8; rw];
    let taps = cv.bounds.iter().zip(cv.weights.chunks_exact(cv.ksize));
    for (r, (&(ymin, ymax), k)) in taps.enumerate() {
        acc.fill(HALF);
        for (j, &ky) in k[..ymax].iter().enumerate() {
            accumulate(avx2, &mut acc, &tmp[(ymin - row0 + j) * rw..][..rw], ky);
        }
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
        emit(r, &out);
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
    let mut out = vec![0u8; nw * nh * 3];
    let win = Window {
        x0: 0,
        y0: 0,
        w: nw,
        h: nh,
    };
    resize_window_rgb8(src, w, h, nw, nh, win, interp, antialias, |r, row| {
        out[r * nw * 3..][..nw * 3].copy_from_slice(row);
    });
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
