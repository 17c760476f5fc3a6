//! URL weights: download into the cache, verify sha256, atomic rename.
//! Served by a tiny HTTP/1.0 server on 127.0.0.1.

use harness::weights_download::{fetch, DownloadError};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// Serves `/weights.bin` with `body`, anything else with 404; returns the base URL.
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            if path == "/weights.bin" {
                let _ = write!(
                    stream,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            } else {
                let _ = write!(
                    stream,
                    "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                );
            }
        }
    });
    format!("http://{addr}")
}

fn sha(bytes: &[u8]) -> String {
    harness::checkpoint::sha256_hex(bytes)
}

#[test]
fn download_verifies_and_caches() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let url = format!("{}/weights.bin", serve(body.clone()));
    let cache = tempfile::tempdir().unwrap();
    let hash = sha(&body);

    let path = fetch(&url, Some(&hash), cache.path()).expect("download with the right hash");
    assert_eq!(path, cache.path().join(&hash));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    // No partial files left behind.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
    // Uppercase hash hits the cache.
    assert_eq!(
        fetch(&url, Some(&hash.to_uppercase()), cache.path()).unwrap(),
        path
    );
}

#[test]
fn wrong_hash_is_rejected_and_nothing_is_cached() {
    let body = b"not the weights you are looking for".to_vec();
    let url = format!("{}/weights.bin", serve(body.clone()));
    let cache = tempfile::tempdir().unwrap();
    let wrong = sha(b"something else");
    match fetch(&url, Some(&wrong), cache.path()) {
        Err(DownloadError::HashMismatch {
            actual, expected, ..
        }) => {
            assert_eq!(actual, sha(&body));
            assert_eq!(expected, wrong);
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn not_found_is_an_http_error() {
    let url = format!("{}/missing.bin", serve(Vec::new()));
    let cache = tempfile::tempdir().unwrap();
    match fetch(&url, Some(&sha(b"x")), cache.path()) {
        Err(DownloadError::Http { msg, .. }) => assert!(msg.contains("404"), "{msg}"),
        other => panic!("expected HTTP 404, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn url_without_hash_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    assert!(matches!(
        fetch("http://127.0.0.1:9/w.pth", None, cache.path()),
        Err(DownloadError::HashRequired { .. })
    ));
}
