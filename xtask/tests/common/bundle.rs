//! Bundle files made by hand, for tests of what `load` refuses or how it
//! fails: a real manifest and a real `docker save` archive, of any image.

use std::path::Path;
use std::process::Command;

use xtask::share::bundle::{Manifest, MANIFEST};

use super::text;

/// A bundle file: `manifest` first, then the `docker save` archive of
/// `image`.
pub fn fake_bundle(path: &Path, manifest: &Manifest, image: &str) {
    let mut head = tar::Builder::new(Vec::new());
    let json = serde_json::to_vec(manifest).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    head.append_data(&mut h, MANIFEST, &json[..]).unwrap();
    let mut bytes = head.into_inner().unwrap();
    bytes.truncate(bytes.len() - 1024); // no end-of-archive yet
    let save = Command::new("docker")
        .args(["save", image])
        .output()
        .unwrap();
    assert!(save.status.success(), "{}", text(&save));
    bytes.extend_from_slice(&save.stdout);
    std::fs::write(path, bytes).unwrap();
}
