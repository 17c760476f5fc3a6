//! House rules of the code layout, checked on the sources of every crate
//! (`xtask/src`, `harness/src`, `report/src`, `gpumon/src`):
//! - no module import cycle (a module is a file; an edge is a `crate::…` or
//!   `super::…` path outside comments and `#[cfg(test)]` modules; a child
//!   using its ancestor is not an edge);
//! - the capability modules never use `crate::error` — only the command
//!   layer (`commands/`), `error.rs` itself and `main.rs` do;
//! - no function outside tests is longer than 100 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 100;

type Module = Vec<String>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn source_dirs() -> Vec<PathBuf> {
    ["xtask/src", "harness/src", "report/src", "gpumon/src"]
        .iter()
        .map(|d| repo().join(d))
        .filter(|d| d.is_dir())
        .collect()
}

/// Every `.rs` file under `dir` (test-only files `tests.rs` left out) with
/// its module path (`foo.rs` and `foo/mod.rs` are `foo`; `lib.rs`/`main.rs`
/// the root).
fn modules(dir: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().with_extension("");
            let mut parts: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let last = parts.last().cloned().unwrap_or_default();
            if last == "tests" {
                continue;
            }
            if ["mod", "lib", "main"].contains(&last.as_str()) {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The text without line comments and without `#[cfg(test)] mod … { … }`.
fn code(text: &str) -> String {
    let no_comments: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = no_comments.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let is_mod = after["#[cfg(test)]".len()..]
            .trim_start()
            .starts_with("mod ");
        match (is_mod, after.find('{')) {
            (true, Some(open)) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (j, c) in after[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            _ => {
                out.push_str("#[cfg(test)]");
                rest = &after["#[cfg(test)]".len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The longest prefix of `path` that is a module.
fn resolve(mods: &BTreeMap<Module, PathBuf>, path: &[String]) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| mods.contains_key(p))
}

/// `a::b::{c, d::e}` after `crate::` or `super::`, as paths.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        if i > 0 {
            let before = code[..i].chars().last().unwrap();
            if before.is_alphanumeric() || before == '_' {
                continue;
            }
        }
        let rest = &code[i + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let head: Vec<String> = rest[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if rest[end..].starts_with('{') {
            let group = &rest[end + 1..rest[end..].find('}').map_or(rest.len(), |j| end + j)];
            for part in group.split(',') {
                let part = part.split_whitespace().next().unwrap_or("");
                let mut p = head.clone();
                p.extend(
                    part.split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
                out.push(p);
            }
        } else {
            out.push(head);
        }
    }
    out
}

/// `use a::b` and `pub use a::{b, c}` paths that start with a plain name
/// (relative to the module itself, i.e. its children).
fn relative_uses(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in code.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("use ") else {
            continue;
        };
        let first = rest.split("::").next().unwrap_or("");
        if ["crate", "super", "self", "std", "core"].contains(&first) {
            continue;
        }
        out.extend(paths_after(&format!("crate::{rest}"), "crate::"));
    }
    out
}

fn edges(dir: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mods = modules(dir);
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, path) in &mods {
        let text = code(&std::fs::read_to_string(path).unwrap());
        let parent: Module = m[..m.len().saturating_sub(1)].to_vec();
        let mut targets = paths_after(&text, "crate::");
        for p in paths_after(&text, "super::") {
            let mut full = parent.clone();
            full.extend(p);
            targets.push(full);
        }
        // A module re-exporting or using its own children (`pub use child::X`)
        // depends on them too.
        for p in relative_uses(&text) {
            let mut full = m.clone();
            full.extend(p);
            targets.push(full);
        }
        let set = graph.entry(m.clone()).or_default();
        for t in targets {
            if let Some(r) = resolve(&mods, &t) {
                if &r != m && !m.starts_with(&r) {
                    set.insert(r);
                }
            }
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_module_import_cycle() {
    for dir in source_dirs() {
        let found = cycles(&edges(&dir));
        assert!(
            found.is_empty(),
            "module import cycles in {}: {:?}",
            dir.display(),
            found
                .iter()
                .map(|c| c.iter().map(|m| m.join("/")).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let m = |s: &str| vec![s.to_string()];
    let graph = BTreeMap::from([
        (m("a"), BTreeSet::from([m("b")])),
        (m("b"), BTreeSet::from([m("c")])),
        (m("c"), BTreeSet::from([m("a")])),
        (m("d"), BTreeSet::from([m("a")])),
    ]);
    let found = cycles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    assert_eq!(
        paths_after("use crate::{a, b::c as d};", "crate::"),
        [vec!["a"], vec!["b", "c"]]
    );
    assert_eq!(
        relative_uses("pub use resolve::{lock, Options};\nuse std::path::Path;"),
        [vec!["resolve", "lock"], vec!["resolve", "Options"]]
    );
}

#[test]
fn only_the_command_layer_uses_the_top_level_error() {
    let dir = repo().join("xtask/src");
    let mut offenders = Vec::new();
    for (m, path) in modules(&dir) {
        let top = m.first().map(String::as_str);
        if matches!(top, None | Some("commands") | Some("error")) {
            continue;
        }
        let text = code(&std::fs::read_to_string(&path).unwrap());
        if text.contains("crate::error") {
            offenders.push(path.display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "capability modules must return their own error types, not crate::error: {offenders:?}"
    );
}

#[test]
fn no_function_over_100_lines_outside_tests() {
    let mut long = Vec::new();
    for dir in source_dirs() {
        for path in modules(&dir).into_values() {
            let text = code(&std::fs::read_to_string(&path).unwrap());
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let t = line.trim_start();
                let t = t.strip_prefix("pub ").unwrap_or(t);
                let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
                let t = t.strip_prefix("async ").unwrap_or(t);
                if !t.starts_with("fn ") {
                    continue;
                }
                if let Some(n) = function_lines(&lines[i..]) {
                    if n > MAX_FN_LINES {
                        long.push(format!("{}:{} ({n} lines)", path.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines: {long:?}"
    );
}

/// Lines from a `fn` line to its closing brace (`None` for a declaration
/// without a body).
fn function_lines(lines: &[&str]) -> Option<usize> {
    let mut depth = 0i64;
    let mut started = false;
    for (n, line) in lines.iter().enumerate() {
        for c in strip_literals(line).chars() {
            match c {
                '{' => {
                    depth += 1;
                    started = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if started && depth == 0 {
            return Some(n + 1);
        }
        if !started && line.trim_end().ends_with(';') {
            return None;
        }
    }
    None
}

/// A line with string and char literals emptied (braces in them do not count).
fn strip_literals(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        match (in_str, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => in_str = false,
            (true, _) => {}
            (false, '"') => in_str = true,
            (false, '\'') => {
                // A char literal ('{', '\'', '\n'); a lifetime has no closing quote.
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    chars.next();
                    chars.next();
                    chars.next();
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                }
            }
            (false, c) => out.push(c),
        }
    }
    out
}
