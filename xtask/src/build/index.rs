//! The package index as the host's pip is configured: its index URL (pip's
//! default, PyPI, unless configured otherwise; torchenv never names one of
//! its own), extra index URLs, find-links folders and pages, CA bundle,
//! proxy and timeout, read from the `PIP_*` environment and
//! `pip config list`; and the lookup of one locked file's URL on those
//! indexes by project name and exact file name (PEP 691 JSON, PEP 503
//! HTML as the fallback).
//!
//! May use: `build::pip`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::{pip, BuildError};

/// pip's default index.
pub const PYPI: &str = "https://pypi.org/simple/";

/// pip's default `timeout` (seconds).
const PIP_TIMEOUT: u64 = 15;

/// Asked of every index page: PEP 691 JSON first, HTML otherwise.
const ACCEPT_SIMPLE: &str = "application/vnd.pypi.simple.v1+json, \
     application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";
const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";

/// Attempts per index page (transport errors and 5xx are retried).
const PAGE_ATTEMPTS: u32 = 3;

/// Where the host's pip looks for packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexConfig {
    /// `index-url` then every `extra-index-url`, in pip's order (empty
    /// with `no-index`).
    pub indexes: Vec<Url>,
    /// `find-links`: folders and pages of links.
    pub find_links: Vec<FindLinks>,
    /// Configured locations torchenv cannot query itself (a local path as
    /// index, `file:` pages): wheels found nowhere else go to pip.
    pub unsupported: Vec<String>,
    /// `cert`: the CA bundle pip trusts instead of the system's.
    pub cert: Option<PathBuf>,
    /// `proxy`: pip's own proxy setting (the `*_PROXY` environment is
    /// honoured either way).
    pub proxy: Option<String>,
    /// `timeout`: per connection and read.
    pub timeout: Duration,
}

/// One `find-links` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindLinks {
    /// A folder of wheel files, used without network.
    Folder(PathBuf),
    /// An HTML page of links to files (not per project).
    Page(Url),
}

/// `pip config list`: `(section, key) → value`, keys normalized as pip
/// does (lower case, `_` → `-`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipConfig(BTreeMap<(String, String), String>);

impl PipConfig {
    /// Parses `pip config list` output (`global.index-url='https://…'`).
    pub fn parse(text: &str) -> Self {
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let Some((section, key)) = name.trim().rsplit_once('.') else {
                continue;
            };
            let key = key.to_ascii_lowercase().replace('_', "-");
            out.insert((section.to_string(), key), unquote(value.trim()));
        }
        PipConfig(out)
    }

    /// The value `pip download`/`pip install` see: the `PIP_*` environment
    /// (`:env:`) over the `download`, `install` and `global` sections.
    pub fn get(&self, key: &str) -> Option<&str> {
        [":env:", "download", "install", "global"]
            .iter()
            .find_map(|s| self.0.get(&(s.to_string(), key.to_string())))
            .map(String::as_str)
    }
}

/// A Python `repr` of a string (as `pip config list` prints values),
/// unquoted and unescaped.
fn unquote(value: &str) -> String {
    let inner = ['\'', '"']
        .iter()
        .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(value);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// PEP 503 project name normalization: runs of `-`, `_`, `.` become one
/// `-`, lower case.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    if sep {
        out.push('-');
    }
    out
}

/// `url` for logs and errors: a password replaced by `****` (as pip does).
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("****"));
    }
    shown.to_string()
}

fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on" | "y" | "t"
    )
}

/// An index URL with the trailing `/` project pages are joined to.
fn index_url(text: &str) -> Option<Url> {
    let with_slash = if text.ends_with('/') {
        text.to_string()
    } else {
        format!("{text}/")
    };
    Url::parse(&with_slash)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
}

fn find_links_entry(text: &str) -> Option<FindLinks> {
    match Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(FindLinks::Page(u)),
        Ok(u) if u.scheme() == "file" => u.to_file_path().ok().map(FindLinks::Folder),
        Ok(_) => None,
        Err(_) => Some(FindLinks::Folder(PathBuf::from(text))),
    }
}

impl IndexConfig {
    /// The host's configuration: the `PIP_*` environment, then
    /// `pip config list` (with `TORCHENV_HOST_PYTHON`'s pip).
    pub fn from_host() -> Result<Self, BuildError> {
        let mut cmd = pip::command();
        cmd.args(["config", "list"]);
        let out = pip::run(cmd, "reading pip's configuration")?;
        let config = PipConfig::parse(&String::from_utf8_lossy(&out.stdout));
        Ok(Self::from_settings(|k| std::env::var(k).ok(), &config))
    }

    /// From environment lookups (`PIP_INDEX_URL`, …) over `config`.
    pub fn from_settings(env: impl Fn(&str) -> Option<String>, config: &PipConfig) -> Self {
        let setting = |key: &str| -> Option<String> {
            let var = format!("PIP_{}", key.to_ascii_uppercase().replace('-', "_"));
            env(&var)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| config.get(key).map(str::to_string))
        };
        let words = |key: &str| -> Vec<String> {
            setting(key)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let mut unsupported = Vec::new();
        let mut indexes = Vec::new();
        if !setting("no-index").is_some_and(|v| truthy(&v)) {
            let main = setting("index-url").unwrap_or_else(|| PYPI.to_string());
            for text in std::iter::once(main).chain(words("extra-index-url")) {
                match index_url(&text) {
                    Some(u) => indexes.push(u),
                    None => unsupported.push(text),
                }
            }
        }
        let mut find_links = Vec::new();
        for text in words("find-links") {
            match find_links_entry(&text) {
                Some(f) => find_links.push(f),
                None => unsupported.push(text),
            }
        }
        let timeout = setting("timeout")
            .or_else(|| setting("default-timeout"))
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .map_or(Duration::from_secs(PIP_TIMEOUT), Duration::from_secs_f64);
        IndexConfig {
            indexes,
            find_links,
            unsupported,
            cert: setting("cert").map(PathBuf::from),
            proxy: setting("proxy").filter(|p| !p.trim().is_empty()),
            timeout,
        }
    }

    /// `https://pypi.org/simple/, …` for messages (passwords hidden).
    pub fn describe(&self) -> String {
        let mut all: Vec<String> = self.indexes.iter().map(redact).collect();
        for f in &self.find_links {
            all.push(match f {
                FindLinks::Folder(p) => p.display().to_string(),
                FindLinks::Page(u) => redact(u),
            });
        }
        all.extend(self.unsupported.iter().cloned());
        if all.is_empty() {
            "no index (no-index)".into()
        } else {
            all.join(", ")
        }
    }

    /// A wheel file named `file` in a find-links folder.
    pub fn local(&self, file: &str) -> Option<PathBuf> {
        self.find_links.iter().find_map(|f| match f {
            FindLinks::Folder(dir) => Some(dir.join(file)).filter(|p| p.is_file()),
            FindLinks::Page(_) => None,
        })
    }
}

/// A file an index lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    pub filename: String,
    /// Absolute, without the `#sha256=…` fragment.
    pub url: Url,
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

#[derive(Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(default)]
    size: Option<u64>,
}

/// `href` resolved against `base`, its fragment dropped; the sha256 the
/// fragment names (`#sha256=…`), if any.
pub fn resolve(base: &Url, href: &str) -> Option<(Url, Option<String>)> {
    let mut url = base.join(href.trim()).ok()?;
    let sha256 = url.fragment().and_then(|f| {
        f.split('&')
            .find_map(|kv| kv.strip_prefix("sha256="))
            .map(str::to_ascii_lowercase)
    });
    url.set_fragment(None);
    Some((url, sha256))
}

/// A PEP 691 project page; relative `url`s resolve against `page`.
pub fn parse_json(body: &[u8], page: &Url) -> Result<Vec<IndexFile>, String> {
    let parsed: JsonPage = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(parsed
        .files
        .into_iter()
        .filter_map(|f| {
            let (url, fragment) = resolve(page, &f.url)?;
            Some(IndexFile {
                sha256: f.hashes.get("sha256").cloned().or(fragment),
                filename: f.filename,
                url,
                size: f.size,
            })
        })
        .collect())
}

/// A PEP 503 page: one `<a href="…">filename</a>` per file; hrefs resolve
/// against `<base href>` if the page has one, else against `page`.
pub fn parse_html(body: &str, page: &Url) -> Vec<IndexFile> {
    let base = tags(body, "base")
        .into_iter()
        .find_map(|(attrs, _)| attr(attrs, "href"))
        .and_then(|href| page.join(&href).ok())
        .unwrap_or_else(|| page.clone());
    tags(body, "a")
        .into_iter()
        .filter_map(|(attrs, text)| {
            let href = attr(attrs, "href")?;
            let (url, sha256) = resolve(&base, &href)?;
            let text = decode_entities(text.trim());
            let filename = if text.is_empty() {
                url.path_segments()?.next_back()?.to_string()
            } else {
                text
            };
            Some(IndexFile {
                filename,
                url,
                sha256,
                size: None,
            })
        })
        .collect()
}

/// Every `<name …>` tag: its attribute text and the text up to `</name`
/// (empty for a tag without a closing one).
fn tags<'a>(html: &'a str, name: &str) -> Vec<(&'a str, &'a str)> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{name}");
    let close = format!("</{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&open).map(|i| i + from) {
        let after = i + open.len();
        from = after;
        if !lower[after..].starts_with(|c: char| c.is_ascii_whitespace() || c == '>') {
            continue;
        }
        let Some(end) = tag_end(&html[after..]).map(|e| e + after) else {
            break;
        };
        let text_end = lower[end + 1..]
            .find(&close)
            .map_or(end + 1, |j| j + end + 1);
        out.push((&html[after..end], &html[end + 1..text_end]));
        from = end + 1;
    }
    out
}

/// The `>` ending a tag, quoted attribute values skipped.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, _) => {}
        }
    }
    None
}

/// The value of attribute `name` in a tag's attribute text, entities decoded.
fn attr(attrs: &str, name: &str) -> Option<String> {
    let mut rest = attrs;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        let key_end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start();
        let value = if let Some(v) = rest.strip_prefix('=') {
            let v = v.trim_start();
            let (value, tail) = match v.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let end = v[1..].find(q).map_or(v.len(), |e| e + 1);
                    (&v[1..end], v.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len());
                    (&v[..end], &v[end..])
                }
            };
            rest = tail;
            Some(value)
        } else {
            None
        };
        if key.eq_ignore_ascii_case(name) {
            return value.map(decode_entities);
        }
    }
}

/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&#NN;`, `&#xHH;`.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').filter(|e| *e <= 10).and_then(|e| {
            let entity = &rest[1..e];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            }?;
            Some((c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Why an index page could not be read (the wheel then goes to pip).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: not a PEP 691 project page: {message}")]
    Unreadable { url: String, message: String },
}

/// `error` and its sources, `: `-separated (reqwest's own message is terse).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

type PageResult = Result<Option<Vec<IndexFile>>, LookupError>;

/// The configured indexes, asked over HTTP(S) with pip's settings.
pub struct Index {
    config: IndexConfig,
    client: reqwest::Client,
    /// find-links pages, each read once.
    pages: Vec<(Url, OnceCell<PageResult>)>,
}

impl Index {
    /// A client with pip's CA bundle, proxy and timeout (and the
    /// `*_PROXY` environment, as pip).
    pub fn new(config: IndexConfig) -> Result<Self, BuildError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("torchenv/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout)
            .read_timeout(config.timeout);
        if let Some(cert) = &config.cert {
            for c in read_certs(cert)? {
                builder = builder.add_root_certificate(c);
            }
            builder = builder.tls_built_in_root_certs(false);
        }
        if let Some(proxy) = &config.proxy {
            // pip takes `[user:passwd@]proxy.server:port`, scheme optional.
            let url = if proxy.contains("://") {
                proxy.clone()
            } else {
                format!("http://{proxy}")
            };
            let p = reqwest::Proxy::all(url).map_err(|e| BuildError::Failed {
                // Not the value itself: it may carry a password.
                message: format!("pip's proxy setting is not usable: {e}"),
                help: Some("check `pip config list` and PIP_PROXY".into()),
            })?;
            builder = builder.proxy(p);
        }
        let client = builder
            .build()
            .map_err(|e| BuildError::failed(format!("HTTP client: {}", error_chain(&e))))?;
        let pages = config
            .find_links
            .iter()
            .filter_map(|f| match f {
                FindLinks::Page(u) => Some((u.clone(), OnceCell::new())),
                FindLinks::Folder(_) => None,
            })
            .collect();
        Ok(Index {
            config,
            client,
            pages,
        })
    }

    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// A GET of `url`, with the credentials of a configured index or page
    /// on the same scheme, host and port when `url` has none (pip sends an
    /// index's credentials to its own host only).
    pub fn get(&self, url: &Url) -> reqwest::RequestBuilder {
        let mut url = url.clone();
        if url.username().is_empty() && url.password().is_none() {
            let same_origin = self
                .config
                .indexes
                .iter()
                .chain(self.pages.iter().map(|(u, _)| u))
                .find(|i| !i.username().is_empty() && i.origin() == url.origin());
            if let Some(i) = same_origin {
                let _ = url.set_username(i.username());
                let _ = url.set_password(i.password());
            }
        }
        self.client.get(url)
    }

    /// The file named `file` of project `name`: the first configured index
    /// or find-links page that lists it (preferring one that advertises
    /// `sha256`, when given); `None` when none does. A page that cannot be
    /// read is an error only when no other one lists the file.
    pub async fn find(
        &self,
        name: &str,
        file: &str,
        sha256: Option<&str>,
    ) -> Result<Option<IndexFile>, LookupError> {
        let mut found = Vec::new();
        let mut failed = None;
        let mut take = |listed: Result<Option<Vec<IndexFile>>, LookupError>| match listed {
            Ok(files) => found.extend(files.into_iter().flatten().filter(|f| f.filename == file)),
            Err(e) => failed = failed.take().or(Some(e)),
        };
        for index in &self.config.indexes {
            let page = index
                .join(&format!("{}/", normalize(name)))
                .expect("a normalized name is a valid path segment");
            take(self.page(&page).await);
        }
        for (page, cell) in &self.pages {
            take(cell.get_or_init(|| self.page(page)).await.clone());
        }
        let agrees = |f: &IndexFile| f.sha256.is_none() || f.sha256.as_deref() == sha256;
        match (found.iter().position(agrees), failed) {
            (Some(i), _) => Ok(Some(found.swap_remove(i))),
            (None, _) if !found.is_empty() => Ok(Some(found.swap_remove(0))),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(None),
        }
    }

    /// The files a page lists; `None` for a 404 (the project is not there).
    async fn page(&self, url: &Url) -> PageResult {
        let shown = redact(url);
        let mut attempt = 1;
        let response = loop {
            let sent = self.get(url).header(ACCEPT, ACCEPT_SIMPLE).send().await;
            let retry = match &sent {
                Ok(r) => r.status().is_server_error(),
                Err(e) => !e.is_builder(),
            };
            if !retry || attempt >= PAGE_ATTEMPTS {
                break sent;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        };
        let transport = |e: reqwest::Error| LookupError::Transport {
            url: shown.clone(),
            message: error_chain(&e.without_url()),
        };
        let response = response.map_err(transport)?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if !s.is_success() => {
                return Err(LookupError::Status {
                    url: shown,
                    status: s.as_u16(),
                })
            }
            _ => {}
        }
        let json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.trim_start().starts_with(JSON_TYPE));
        // After redirects, without credentials (`get` adds them back).
        let base = response.url().clone();
        let body = response.bytes().await.map_err(transport)?;
        if json {
            parse_json(&body, &base)
                .map(Some)
                .map_err(|message| LookupError::Unreadable {
                    url: shown,
                    message,
                })
        } else {
            Ok(Some(parse_html(&String::from_utf8_lossy(&body), &base)))
        }
    }
}

fn read_certs(path: &Path) -> Result<Vec<reqwest::Certificate>, BuildError> {
    let pem = std::fs::read(path).map_err(BuildError::io(format!(
        "reading pip's CA bundle {} (pip's `cert`)",
        path.display()
    )))?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| BuildError::Failed {
        message: format!("pip's CA bundle {}: {e}", path.display()),
        help: Some("check `pip config list` and PIP_CERT".into()),
    })
}

#[cfg(test)]
mod tests;
