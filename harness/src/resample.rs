//! Pillow's convolution resampler (`Image.resize` with BILINEAR/BICUBIC),
//! reimplemented so preprocessing matches PIL + torchvision bit for bit on
//! the same decoded pixels: same filters (bicubic a = -0.5), support scaled
//! by the downscale factor (antialias), same 22-bit fixed-point
//! coefficients, horizontal pass first with 8-bit rounding/clipping of the
//! intermediate image, then the vertical pass.
//!
//! May use: nothing else of the crate.

/// Resampling filter (PIL semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Interpolation {
    Bilinear,
    Bicubic,
}

impl Interpolation {
    /// The name on the command line and in the report (`bilinear`).
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        }
    }
}

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
        horizontal_pixel_scalar(&in_row[xmin * 3..(xmin + xmax) * 3], &k[..xmax], o);
    }
}

/// `acc[i] += row[i] * k`, the vertical pass's inner loop.
#[inline(always)]
fn accumulate_impl(acc: &mut [i32], row: &[u8], k: i32) {
    for (a, &p) in acc.iter_mut().zip(row) {
        *a += i32::from(p) * k;
    }
}

/// [`horizontal_row_impl`] with AVX2, two taps per multiply: the RGB of
/// pixels `x` and `x + 1` (one 8-byte load, shuffled to `r g b 0 r g b 0`)
/// times `k[x]` and `k[x + 1]` in one 8-lane i32 multiply-add. The same
/// exact i32 arithmetic (sums never overflow, so their order does not
/// matter), hence the same bytes as Pillow.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_row_avx2(in_row: &[u8], out_row: &mut [u8], c: &Coeffs) {
    use std::arch::x86_64::*;
    // Bytes 0-2 and 3-5 of the load into lanes 0-2 and 4-6 (zero elsewhere).
    let spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    let pair_weights = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let half = _mm_set1_epi32(HALF);
    let (zero, top) = (
        _mm_setzero_si128(),
        _mm_set1_epi32((1 << (PRECISION_BITS + 8)) - 1),
    );
    let n = out_row.len() / 3;
    let rows = c.bounds.iter().zip(c.weights.chunks_exact(c.ksize));
    for (i, (&(xmin, xmax), k)) in rows.enumerate().take(n) {
        let k = &k[..xmax];
        let end = (xmin + xmax) * 3;
        // The last pair's 8-byte load reads up to byte end + 1.
        if end + 1 >= in_row.len() {
            horizontal_pixel_scalar(&in_row[xmin * 3..end], k, &mut out_row[i * 3..i * 3 + 3]);
            continue;
        }
        let base = in_row[xmin * 3..end + 2].as_ptr();
        let mut v = _mm256_setzero_si256();
        let mut x = 0;
        while x + 1 < xmax {
            let q = base.add(x * 3).cast::<i64>().read_unaligned();
            let p = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(_mm_cvtsi64_si128(q), spread));
            let kk = _mm_loadl_epi64(k.as_ptr().add(x).cast());
            let kk = _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(kk), pair_weights);
            v = _mm256_add_epi32(v, _mm256_mullo_epi32(p, kk));
            x += 2;
        }
        if x < xmax {
            // Lanes 4-7 hold the zero upper bytes: they add nothing.
            let q = base.add(x * 3).cast::<i32>().read_unaligned();
            let p = _mm256_cvtepu8_epi32(_mm_cvtsi32_si128(q));
            v = _mm256_add_epi32(v, _mm256_mullo_epi32(p, _mm256_set1_epi32(k[x])));
        }
        // Both taps' sums, rounded and clipped like `clip8`, packed to bytes.
        let sum = _mm_add_epi32(
            _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v)),
            half,
        );
        let clipped =
            _mm_srli_epi32::<PRECISION_BITS_I32>(_mm_min_epi32(_mm_max_epi32(sum, zero), top));
        let bytes = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packus_epi32(clipped, zero), zero));
        let rgb = bytes.to_le_bytes();
        out_row[i * 3..i * 3 + 3].copy_from_slice(&rgb[..3]);
    }
}

const PRECISION_BITS_I32: i32 = PRECISION_BITS as i32;

/// One output pixel of the horizontal pass, scalar (`px` = its input RGB).
#[inline(always)]
fn horizontal_pixel_scalar(px: &[u8], k: &[i32], out: &mut [u8]) {
    let mut acc = [HALF; 3];
    for (p, &kx) in px.chunks_exact(3).zip(k) {
        for ch in 0..3 {
            acc[ch] += i32::from(p[ch]) * kx;
        }
    }
    for ch in 0..3 {
        out[ch] = clip8(acc[ch]);
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

    /// The AVX2 horizontal pass gives the scalar (Pillow) bytes, for
    /// down- and upscales, both filters, rows that end at the buffer's end.
    #[test]
    fn avx2_rows_equal_scalar_rows() {
        if !has_avx2() {
            return;
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        };
        for (w, nw) in [
            (683, 455),
            (384, 256),
            (320, 341),
            (97, 13),
            (7, 3),
            (5, 11),
            (1200, 257),
        ] {
            let row: Vec<u8> = (0..w * 3).map(|_| next()).collect();
            for interp in [Interpolation::Bicubic, Interpolation::Bilinear] {
                for antialias in [true, false] {
                    let c = precompute(w, nw, 0..nw, interp, antialias);
                    let (mut a, mut b) = (vec![0u8; nw * 3], vec![0u8; nw * 3]);
                    horizontal_row(true, &row, &mut a, &c);
                    horizontal_row(false, &row, &mut b, &c);
                    assert_eq!(a, b, "{w} -> {nw}, {interp:?}, antialias {antialias}");
                }
            }
        }
    }

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

    #[test]
    fn interpolation_names_are_the_command_line_values() {
        use clap::ValueEnum;
        for i in Interpolation::value_variants() {
            assert_eq!(i.to_possible_value().unwrap().get_name(), i.name());
        }
    }
}
