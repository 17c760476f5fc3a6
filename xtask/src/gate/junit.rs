//! JUnit XML (the layout CI systems read: `testsuites` > `testsuite` >
//! `testcase` with `failure`/`error` children), one testsuite per
//! environment and one testcase per check.
//!
//! May use: `gate::check`.

use std::fmt::Write as _;

use super::check::{CaseResult, Outcome};

/// A testsuite: an environment, or the cross-environment comparisons.
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    /// Shown as `<properties>` (torch, CUDA, …).
    pub properties: Vec<(String, String)>,
    pub cases: Vec<CaseResult>,
}

impl Suite {
    fn count(&self, outcome: Outcome) -> usize {
        self.cases.iter().filter(|c| c.outcome == outcome).count()
    }
    fn seconds(&self) -> f64 {
        self.cases.iter().map(|c| c.seconds).sum()
    }
}

/// Escapes text for XML content and attribute values; drops characters XML
/// 1.0 cannot carry.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

pub fn render(suites: &[Suite]) -> String {
    let total = |o| suites.iter().map(|s| s.count(o)).sum::<usize>();
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"torchenv gate\" tests=\"{tests}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
        total(Outcome::Fail),
        total(Outcome::Error),
        suites.iter().map(Suite::seconds).sum::<f64>()
    );
    for (id, suite) in suites.iter().enumerate() {
        let _ = writeln!(
            x,
            "  <testsuite id=\"{id}\" name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{:.3}\">",
            escape(&suite.name),
            suite.cases.len(),
            suite.count(Outcome::Fail),
            suite.count(Outcome::Error),
            suite.seconds()
        );
        if !suite.properties.is_empty() {
            x.push_str("    <properties>\n");
            for (k, v) in &suite.properties {
                let _ = writeln!(
                    x,
                    "      <property name=\"{}\" value=\"{}\"/>",
                    escape(k),
                    escape(v)
                );
            }
            x.push_str("    </properties>\n");
        }
        for case in &suite.cases {
            let _ = write!(
                x,
                "    <testcase classname=\"torchenv.{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&suite.name),
                escape(&case.name),
                case.seconds
            );
            let element = match case.outcome {
                Outcome::Pass => None,
                Outcome::Fail => Some(("failure", "regression")),
                Outcome::Error => Some(("error", "error")),
            };
            match element {
                None if case.detail.is_empty() => x.push_str("/>\n"),
                None => {
                    let _ = writeln!(
                        x,
                        ">\n      <system-out>{}</system-out>\n    </testcase>",
                        escape(&case.detail)
                    );
                }
                Some((tag, kind)) => {
                    let _ = writeln!(
                        x,
                        ">\n      <{tag} message=\"{}\" type=\"{kind}\">{}</{tag}>\n    </testcase>",
                        escape(&case.message),
                        escape(&case.detail)
                    );
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}
