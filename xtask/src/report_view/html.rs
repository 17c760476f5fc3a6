//! `index.html`: one page that works opened from disk (no server, no
//! network: the CSS and script are inline, images are relative links into
//! the folder). The summary table, the versions, the GPU section or why
//! there is none, every plot, the worst classes and confused pairs, and a
//! gallery of the most confident mistakes.
//!
//! Every text taken from the report is escaped ([`escape`]); every link
//! taken from it is a percent-encoded relative path ([`relative_url`]) or is
//! not a link at all.
//!
//! May use: `stats`, `summary`.

use std::fmt::Write as _;

use report::{EvalReport, SampleResult};

use super::stats;
use super::summary::{class_name, gib, percent, rows, TOP};

/// Most mistakes shown in the gallery.
pub const GALLERY_MAX: usize = 48;

const CSS: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// Text made safe for HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A report-relative path as a relative URL (each byte outside
/// `A–Z a–z 0–9 - . _ ~ /` percent-encoded), or `None` for a path that
/// would leave the folder (absolute, `..`, backslashes, empty).
pub fn relative_url(path: &str) -> Option<String> {
    let leaves = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.split('/').any(|part| part == ".." || part.is_empty());
    if leaves {
        return None;
    }
    let mut out = String::new();
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    Some(out)
}

/// The samples of the gallery: those with a thumbnail, wrong ones only,
/// most confident first, at most [`GALLERY_MAX`].
pub fn gallery_samples(r: &EvalReport) -> Vec<&SampleResult> {
    let mut shown: Vec<&SampleResult> = r
        .samples
        .iter()
        .filter(|s| !s.correct && s.thumbnail.is_some())
        .collect();
    shown.sort_by(|a, b| b.confidence().total_cmp(&a.confidence()));
    shown.truncate(GALLERY_MAX);
    shown
}

/// The whole page. `plots`: (file name, title) of the PNGs written beside
/// it; `exists`: whether a report-relative path is a file in the folder
/// (a thumbnail that is not becomes a "missing" box, not a broken image).
pub fn page(r: &EvalReport, plots: &[(&str, &str)], exists: &dyn Fn(&str) -> bool) -> String {
    let title = format!("{} — evaluation report", r.model);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let _ = writeln!(
        out,
        "<p class=\"sub\">{} images evaluated on {} with torch {}</p>",
        r.metrics.evaluated,
        escape(&r.settings.device),
        escape(&r.versions.torch)
    );
    out.push_str("<h2 id=\"summary\">Summary</h2>\n<table class=\"kv\">\n");
    for (label, value) in rows(r) {
        let _ = writeln!(out, "<tr><th>{label}</th><td>{}</td></tr>", escape(&value));
    }
    out.push_str("</table>\n");
    versions(&mut out, r);
    gpu(&mut out, r);
    out.push_str("<h2 id=\"plots\">Plots</h2>\n<div class=\"plots\">\n");
    for (file, caption) in plots {
        let _ = writeln!(
            out,
            "<figure><a href=\"{f}\"><img src=\"{f}\" alt=\"{c}\" width=\"900\" height=\"540\"></a>\
             <figcaption>{c}</figcaption></figure>",
            f = escape(file),
            c = escape(caption)
        );
    }
    out.push_str("</div>\n");
    tables(&mut out, r);
    gallery(&mut out, r, exists);
    let _ = write!(out, "<script>\n{SCRIPT}</script>\n</body>\n</html>\n");
    out
}

fn versions(out: &mut String, r: &EvalReport) {
    let v = &r.versions;
    let dash = |o: &Option<String>| o.clone().filter(|s| !s.is_empty()).unwrap_or("—".into());
    let gpu_names: Vec<&str> = r.gpu.devices.iter().map(|d| d.name.as_str()).collect();
    let device_name = if gpu_names.is_empty() {
        v.device_name.clone()
    } else {
        gpu_names.join(", ")
    };
    let items = [
        ("torch", v.torch.clone()),
        (
            "CUDA build",
            v.cuda_build
                .clone()
                .unwrap_or("none (CPU-only torch)".into()),
        ),
        ("CUDA runtime", dash(&v.cuda_runtime)),
        ("cuDNN", dash(&v.cudnn)),
        (
            "driver",
            dash(&v.driver.clone().or(r.gpu.driver_version.clone())),
        ),
        ("device", device_name),
        (
            "harness",
            if v.harness.is_empty() {
                "—".into()
            } else {
                v.harness.clone()
            },
        ),
    ];
    out.push_str("<h2 id=\"versions\">Versions</h2>\n<table class=\"kv\">\n");
    for (label, value) in items {
        let _ = writeln!(out, "<tr><th>{label}</th><td>{}</td></tr>", escape(&value));
    }
    out.push_str("</table>\n");
}

fn gpu(out: &mut String, r: &EvalReport) {
    out.push_str("<h2 id=\"gpu\">GPU</h2>\n");
    if let Some(why) = r.gpu.why_unavailable() {
        let _ = writeln!(
            out,
            "<p class=\"unavailable\">GPU monitoring unavailable: {}</p>",
            escape(why)
        );
        return;
    }
    out.push_str(
        "<table>\n<tr><th>GPU</th><th>name</th><th>memory</th><th>peak memory</th>\
         <th>mean utilization</th><th>max temperature</th><th>mean / peak power</th>\
         <th>samples</th></tr>\n",
    );
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    for d in &r.gpu.devices {
        let s = &d.summary;
        let power = match (s.mean_power_watts, s.peak_power_watts) {
            (Some(m), Some(p)) => format!("{m:.0} W / {p:.0} W"),
            _ => "—".into(),
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            d.index,
            escape(&d.name),
            or_dash(d.memory_total_bytes.map(gib)),
            or_dash(s.peak_memory_bytes.map(gib)),
            or_dash(s.mean_utilization_percent.map(|u| format!("{u:.1} %"))),
            or_dash(s.max_temperature_c.map(|t| format!("{t} °C"))),
            power,
            s.samples.max(d.samples.len()),
        );
    }
    let _ = writeln!(
        out,
        "</table>\n<p class=\"sub\">sampled every {} ms</p>",
        r.gpu.interval_ms
    );
}

fn tables(out: &mut String, r: &EvalReport) {
    out.push_str("<div class=\"tables\">\n<div>\n<h2 id=\"worst\">Worst classes</h2>\n");
    out.push_str("<table>\n<tr><th>#</th><th>class</th><th>synset</th><th>accuracy</th><th>correct / images</th></tr>\n");
    for (i, c) in stats::worst_classes(&r.per_class, TOP).iter().enumerate() {
        let _ = writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{} / {}</td></tr>",
            i + 1,
            escape(&class_name(c.index, &c.synset)),
            escape(&c.synset),
            percent(c.accuracy),
            c.correct,
            c.n
        );
    }
    out.push_str("</table>\n</div>\n<div>\n<h2 id=\"pairs\">Most-confused pairs</h2>\n");
    out.push_str("<table>\n<tr><th>#</th><th>true</th><th>predicted</th><th>images</th></tr>\n");
    for (i, e) in stats::most_confused(&r.confusion, TOP).iter().enumerate() {
        let _ = writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td>{} <small>{}</small></td>\
             <td>{} <small>{}</small></td><td class=\"num\">{}</td></tr>",
            i + 1,
            escape(&class_name(e.true_index, &e.true_synset)),
            escape(&e.true_synset),
            escape(&class_name(e.predicted_index, &e.predicted_synset)),
            escape(&e.predicted_synset),
            e.count
        );
    }
    out.push_str("</table>\n</div>\n</div>\n");
}

fn gallery(out: &mut String, r: &EvalReport, exists: &dyn Fn(&str) -> bool) {
    let shown = gallery_samples(r);
    let with_thumbnail = r
        .samples
        .iter()
        .filter(|s| !s.correct && s.thumbnail.is_some());
    let _ = writeln!(
        out,
        "<h2 id=\"mistakes\">Most confident mistakes</h2>\n<p class=\"sub\">{} of {} \
         misclassified images ({} with a thumbnail), most confident first</p>\n\
         <div class=\"gallery\">",
        shown.len(),
        r.samples.iter().filter(|s| !s.correct).count(),
        with_thumbnail.count()
    );
    for s in shown {
        mistake(out, s, exists);
    }
    out.push_str("</div>\n");
}

fn mistake(out: &mut String, s: &SampleResult, exists: &dyn Fn(&str) -> bool) {
    out.push_str("<figure class=\"mistake\">");
    let thumb = s.thumbnail.as_deref().unwrap_or_default();
    match relative_url(thumb).filter(|_| exists(thumb)) {
        Some(url) => {
            let _ = write!(
                out,
                "<img src=\"{}\" alt=\"{}\">",
                escape(&url),
                escape(&s.path)
            );
        }
        None => {
            let _ = write!(
                out,
                "<div class=\"missing\">thumbnail missing: {}</div>",
                escape(thumb)
            );
        }
    }
    let truth = class_name(s.label, &s.label_synset);
    let _ = write!(
        out,
        "<figcaption><code>{}</code><div class=\"label\">true: <b>{}</b> {}</div><ol>",
        escape(&s.path),
        escape(&truth),
        escape(&s.label_synset)
    );
    for p in &s.top5 {
        let class = if p.synset == s.label_synset {
            " class=\"truth\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<li{class}>{} <small>{}</small><span class=\"prob\">{:.1} %</span></li>",
            escape(&class_name(p.index, &p.synset)),
            escape(&p.synset),
            p.probability * 100.0
        );
    }
    out.push_str("</ol></figcaption></figure>\n");
}
