//! Finding where a value sits in block-style YAML, for errors found after
//! parsing (semantic checks): serde_yaml reports locations only for its own
//! errors, so checks that run on the parsed spec point back into the text
//! by walking the key path through the indentation.
//!
//! May use: nothing else of the crate.

/// One step of a path: a mapping key or the n-th `- ` item of a sequence.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    Key(&'a str),
    Item(usize),
}

/// Byte span `(offset, len)` of the value (or key, when the value is a
/// block) at `path`, or of the deepest ancestor that could be found.
pub fn locate(source: &str, path: &[Step<'_>]) -> (usize, usize) {
    walk(source, path).0
}

/// The span of [`locate`], but only when the whole of `path` is in the text.
pub fn find(source: &str, path: &[Step<'_>]) -> Option<(usize, usize)> {
    match walk(source, path) {
        (span, depth) if depth == path.len() => Some(span),
        _ => None,
    }
}

/// How many leading steps of `path` are in the text.
pub fn depth(source: &str, path: &[Step<'_>]) -> usize {
    walk(source, path).1
}

/// The span of the deepest step of `path` found, and how many steps were.
fn walk(source: &str, path: &[Step<'_>]) -> ((usize, usize), usize) {
    let lines: Vec<(usize, &str)> = line_offsets(source);
    // The block we search in: a range of line indices and the minimum
    // indentation a child must have.
    let (mut start, mut end) = (0usize, lines.len());
    let mut parent_indent: isize = -1;
    let mut found = (0usize, 0usize);
    for (depth, step) in path.iter().enumerate() {
        let mut hit = None;
        let mut item_no = 0usize;
        for (i, &(offset, text)) in lines.iter().enumerate().take(end).skip(start) {
            let trimmed = text.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = (text.len() - trimmed.len()) as isize;
            if indent <= parent_indent {
                break;
            }
            match *step {
                Step::Key(key) => {
                    // A key directly in this block, possibly as the first key of a `- ` item.
                    let (indent, body) = match trimmed.strip_prefix("- ") {
                        Some(rest) => (indent + 2, rest),
                        None => (indent, trimmed),
                    };
                    let unquoted = body.trim_start_matches(['"', '\'']);
                    if let Some(rest) = unquoted.strip_prefix(key) {
                        let rest = rest.trim_start_matches(['"', '\'']);
                        if rest.starts_with(':') {
                            let key_col = text.len() - body.len();
                            hit = Some((i, indent, offset + key_col, rest));
                            break;
                        }
                    }
                }
                Step::Item(n) => {
                    if trimmed.starts_with("- ") || trimmed == "-" {
                        if item_no == n {
                            hit = Some((i, indent, offset + indent as usize, trimmed));
                            break;
                        }
                        item_no += 1;
                    }
                }
            }
        }
        let Some((line_idx, indent, col_offset, rest)) = hit else {
            return (found, depth);
        };
        let line = lines[line_idx].1;
        let line_end = lines[line_idx].0 + line.len();
        // Point at the inline value when there is one, else at the key.
        let value = rest.trim_start_matches(':').trim();
        found = if matches!(step, Step::Key(_)) && !value.is_empty() && !value.starts_with('#') {
            let value_offset = line_end - rest.trim_start_matches(':').trim_start().len();
            (
                value_offset,
                value.split(" #").next().unwrap_or(value).trim_end().len(),
            )
        } else {
            (col_offset, line_end - col_offset)
        };
        if matches!(step, Step::Item(_)) {
            // An item's block is its dash line (holding its first key) and
            // the lines after it indented deeper than the dash.
            start = line_idx;
            parent_indent = indent - 1;
            end = lines
                .iter()
                .enumerate()
                .skip(line_idx + 1)
                .find(|(_, (_, t))| {
                    let tr = t.trim_start();
                    !tr.is_empty()
                        && !tr.starts_with('#')
                        && (t.len() - tr.len()) as isize <= indent
                })
                .map_or(lines.len(), |(i, _)| i);
        } else {
            start = line_idx + 1;
            parent_indent = indent;
            end = lines.len();
        }
    }
    (found, path.len())
}

fn line_offsets(source: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        out.push((offset, line.trim_end_matches(['\n', '\r'])));
        offset += line.len();
    }
    out
}

/// 1-based line and column of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

/// Byte offset of a 1-based line and column.
pub fn offset_of(source: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (offset + column.saturating_sub(1)).min(source.len());
        }
        offset += l.len();
    }
    source.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
version: 1
environments:
  a:
    torch: 2.6.0   # pinned
    volumes:
      - source: ./data
        target: /data
      - source: cache
        target: /cache
  b:
    torch: 9.9.9
";

    fn text(path: &[Step]) -> &'static str {
        let (o, l) = locate(YAML, path);
        &YAML[o..o + l]
    }

    #[test]
    fn finds_values_keys_and_items() {
        use Step::*;
        assert_eq!(
            text(&[Key("environments"), Key("a"), Key("torch")]),
            "2.6.0"
        );
        assert_eq!(
            text(&[Key("environments"), Key("b"), Key("torch")]),
            "9.9.9"
        );
        assert_eq!(
            text(&[
                Key("environments"),
                Key("a"),
                Key("volumes"),
                Item(1),
                Key("target")
            ]),
            "/cache"
        );
        assert_eq!(
            text(&[
                Key("environments"),
                Key("a"),
                Key("volumes"),
                Item(0),
                Key("source")
            ]),
            "./data"
        );
        // Missing leaf: falls back to the deepest ancestor found.
        assert_eq!(text(&[Key("environments"), Key("b"), Key("cuda")]), "b:");
        assert_eq!(
            find(YAML, &[Key("environments"), Key("b"), Key("cuda")]),
            None
        );
        assert_eq!(
            depth(YAML, &[Key("environments"), Key("b"), Key("cuda")]),
            2
        );
        assert_eq!(
            find(YAML, &[Key("environments"), Key("b"), Key("torch")]),
            Some(locate(YAML, &[Key("environments"), Key("b"), Key("torch")]))
        );
    }

    #[test]
    fn line_and_column() {
        let (o, _) = locate(
            YAML,
            &[
                Step::Key("environments"),
                Step::Key("b"),
                Step::Key("torch"),
            ],
        );
        assert_eq!(line_col(YAML, o), (11, 12));
        assert_eq!(offset_of(YAML, 11, 12), o);
    }
}
