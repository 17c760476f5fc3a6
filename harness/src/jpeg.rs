//! JPEG decoding with libjpeg-turbo, the decoder inside Pillow's wheels:
//! the same accurate integer IDCT and fancy chroma upsampling, hence the
//! same RGB bytes as `Image.open(p).convert("RGB")` (checked on every
//! fixture JPEG by the B0 parity test). libjpeg-turbo is built from the
//! sources vendored by `turbojpeg-sys` and linked statically, so the image
//! needs no extra library.
//!
//! Like Pillow, warnings (e.g. "extraneous bytes before marker", common in
//! real ImageNet files) are not fatal: the decoded pixels are used.
//!
//! May use: nothing else of the crate.

use std::ffi::{c_int, CStr};

use turbojpeg_sys as tj;

/// Why libjpeg-turbo could not decode a file.
#[derive(Debug, thiserror::Error)]
#[error("libjpeg-turbo: {0}")]
pub struct JpegError(String);

/// A decoded JPEG: `width × height` packed RGB8.
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// One libjpeg-turbo decompressor instance (not shared between threads).
struct Handle(tj::tjhandle);

impl Handle {
    fn new() -> Result<Handle, JpegError> {
        // SAFETY: tj3Init has no preconditions; a null handle is an error.
        let h = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
        if h.is_null() {
            return Err(JpegError("cannot create a decompressor".into()));
        }
        Ok(Handle(h))
    }

    fn get(&self, param: tj::TJPARAM) -> c_int {
        // SAFETY: the handle is valid for the lifetime of `self`.
        unsafe { tj::tj3Get(self.0, param as c_int) }
    }

    fn error(&self) -> (bool, String) {
        // SAFETY: the handle is valid; the message is a NUL-terminated
        // string owned by the handle, copied before the next call.
        unsafe {
            let warning = tj::tj3GetErrorCode(self.0) == tj::TJERR_TJERR_WARNING as c_int;
            let msg = CStr::from_ptr(tj::tj3GetErrorStr(self.0));
            (warning, msg.to_string_lossy().into_owned())
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by tj3Init, destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

/// The header of a JPEG: `(width, height, colorspace)`.
fn header(h: &Handle, data: &[u8]) -> Result<(usize, usize, c_int), JpegError> {
    // SAFETY: `data` is a valid buffer of `data.len()` bytes.
    let rc = unsafe { tj::tj3DecompressHeader(h.0, data.as_ptr(), data.len() as tj::size_t) };
    if rc != 0 {
        let (warning, msg) = h.error();
        if !warning {
            return Err(JpegError(msg));
        }
    }
    let (w, hgt) = (
        h.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
        h.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
    );
    if w <= 0 || hgt <= 0 {
        return Err(JpegError(format!("invalid size {w}x{hgt}")));
    }
    Ok((
        w as usize,
        hgt as usize,
        h.get(tj::TJPARAM_TJPARAM_COLORSPACE),
    ))
}

/// Decodes a YCbCr, grayscale or RGB JPEG to RGB8 (gray replicated, as
/// Pillow's `convert("RGB")`). `Ok(None)` for CMYK/YCCK JPEGs, which
/// Pillow converts with its own formulas (the caller's fallback), and for
/// sizes over `max_pixels`.
pub fn decode_rgb(data: &[u8], max_pixels: u64) -> Result<Option<Decoded>, JpegError> {
    thread_local! {
        static HANDLE: std::cell::RefCell<Option<Handle>> = const { std::cell::RefCell::new(None) };
    }
    HANDLE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Handle::new()?);
        }
        let h = slot.as_ref().expect("just created");
        let (width, height, colorspace) = header(h, data)?;
        let supported = [tj::TJCS_TJCS_YCbCr, tj::TJCS_TJCS_GRAY, tj::TJCS_TJCS_RGB];
        if !supported.iter().any(|&cs| cs as c_int == colorspace)
            || (width as u64) * (height as u64) > max_pixels
            || h.get(tj::TJPARAM_TJPARAM_PRECISION) != 8
        {
            return Ok(None);
        }
        let mut rgb = vec![0u8; width * height * 3];
        // SAFETY: `rgb` holds `height` rows of `width * 3` bytes, the pitch
        // given; `data` is valid for `data.len()` bytes.
        let rc = unsafe {
            tj::tj3Decompress8(
                h.0,
                data.as_ptr(),
                data.len() as tj::size_t,
                rgb.as_mut_ptr(),
                (width * 3) as c_int,
                tj::TJPF_TJPF_RGB as c_int,
            )
        };
        if rc != 0 {
            let (warning, msg) = h.error();
            if !warning {
                return Err(JpegError(msg));
            }
        }
        Ok(Some(Decoded { width, height, rgb }))
    })
}
