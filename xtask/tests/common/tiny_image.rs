//! A tiny image for tests that need a container but not the environment's
//! image: this host's `/bin/sh`, `/bin/sleep` and C library, entrypoint
//! `sleep 3600`, plus the test's own files and `docker import -c` changes.
//! Removed on drop.

use std::io::Write;
use std::process::{Command, Stdio};

pub struct TinyImage {
    pub tag: String,
}

/// A file of the image: path inside, contents, mode.
pub type File<'a> = (&'a str, &'a [u8], u32);

impl TinyImage {
    pub fn new(tag: String, files: &[File], changes: &[String]) -> TinyImage {
        let mut archive = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8], mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_cksum();
            archive.append_data(&mut h, path, data).unwrap();
        };
        for (inside, host) in [
            ("bin/sh", "/bin/sh"),
            ("bin/sleep", "/bin/sleep"),
            (
                "lib/x86_64-linux-gnu/libc.so.6",
                "/lib/x86_64-linux-gnu/libc.so.6",
            ),
            ("lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"),
        ] {
            let data = std::fs::read(host).unwrap_or_else(|e| panic!("{host}: {e}"));
            add(inside, &data, 0o755);
        }
        for (path, data, mode) in files {
            add(path, data, *mode);
        }
        let archive = archive.into_inner().unwrap();
        let mut cmd = Command::new("docker");
        cmd.args(["import", "-c", "ENTRYPOINT [\"/bin/sleep\", \"3600\"]"]);
        for change in changes {
            cmd.args(["-c", change]);
        }
        let mut child = cmd
            .args(["-", &tag])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("the docker CLI");
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(child.wait().unwrap().success(), "docker import {tag}");
        TinyImage { tag }
    }
}

impl Drop for TinyImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.tag])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
