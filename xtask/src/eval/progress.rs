//! The progress of a running eval, from the harness's progress lines
//! (`report::ProgressEvent` on its stderr): one indicatif bar on stderr
//! when it is a terminal (images, img/s, ETA, unreadable count), plain
//! lines otherwise (at most one every few seconds, and the last). Lines
//! that are not events are the harness's own messages and are printed as
//! they are.
//!
//! May use: nothing else of the crate.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use report::ProgressEvent;

/// How often a plain progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The display of one model's eval.
pub struct EvalProgress {
    label: String,
    bar: Option<ProgressBar>,
    last_plain: Option<Instant>,
    /// The newest batch event (for the final line).
    last: Option<ProgressEvent>,
    /// Messages of the harness that are not progress, kept for the error
    /// report and echoed.
    echo: bool,
}

impl EvalProgress {
    /// A bar when stderr (where it is drawn) is a terminal, plain lines
    /// otherwise; `quiet` (for `--json`) draws nothing and echoes nothing.
    pub fn new(label: &str, quiet: bool) -> EvalProgress {
        let tty = !quiet && std::io::stderr().is_terminal();
        EvalProgress {
            label: label.to_string(),
            bar: tty.then(|| {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} images  {msg}  ETA {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(label.to_string());
                bar
            }),
            last_plain: None,
            last: None,
            echo: !quiet,
        }
    }

    /// One line of the harness's stderr.
    pub fn line(&mut self, line: &str) {
        match ProgressEvent::parse(line) {
            Some(event) => self.event(event),
            // The harness's `error: …` comes back in the eval's error,
            // with host paths; anything else it says is shown as it comes.
            None if self.echo && !line.trim().is_empty() && !line.starts_with("error: ") => {
                match &self.bar {
                    Some(bar) => bar.println(format!("  {line}")),
                    None => eprintln!("  {line}"),
                }
            }
            None => {}
        }
    }

    fn event(&mut self, event: ProgressEvent) {
        match &event {
            ProgressEvent::Start { total, device, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*total as u64);
                    bar.set_message(format!("on {device}"));
                } else if self.echo {
                    eprintln!("{}: {total} images on {device}", self.label);
                }
            }
            ProgressEvent::Batch {
                done,
                failed,
                total,
                seconds,
            } => {
                let rate = rate(*done, *seconds);
                if let Some(bar) = &self.bar {
                    bar.set_length(*total as u64);
                    bar.set_position(*done as u64);
                    bar.set_message(format!("{rate:.1} img/s, {failed} unreadable"));
                } else if self.echo
                    && (done == total || self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY))
                {
                    self.last_plain = Some(Instant::now());
                    eprintln!(
                        "{}: {done}/{total} images, {rate:.1} img/s, ETA {}, {failed} unreadable",
                        self.label,
                        eta(*done, *total, *seconds)
                    );
                }
                self.last = Some(event);
            }
            ProgressEvent::Writing => match &self.bar {
                Some(bar) => bar.set_message("writing the report".to_string()),
                None if self.echo => eprintln!("{}: writing the report", self.label),
                None => {}
            },
        }
    }

    /// Clears the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Images done and unreadable as last reported.
    pub fn counts(&self) -> Option<(usize, usize)> {
        match self.last {
            Some(ProgressEvent::Batch { done, failed, .. }) => Some((done, failed)),
            _ => None,
        }
    }
}

fn rate(done: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    }
}

/// Time left at the rate so far, `12 s` / `3 min` / `-`.
fn eta(done: usize, total: usize, seconds: f64) -> String {
    if done == 0 || seconds <= 0.0 {
        return "-".into();
    }
    let left = (total.saturating_sub(done)) as f64 * seconds / done as f64;
    if left < 120.0 {
        format!("{left:.0} s")
    } else {
        format!("{:.0} min", left / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_the_rate_so_far() {
        assert_eq!(eta(0, 100, 1.0), "-");
        assert_eq!(eta(50, 100, 10.0), "10 s");
        assert_eq!(eta(10, 1000, 10.0), "16 min");
        assert_eq!(eta(100, 100, 3.0), "0 s");
    }

    #[test]
    fn events_are_counted_and_messages_are_not() {
        let mut p = EvalProgress::new("b0", true);
        p.line("note: TF32 off");
        p.line(r#"{"event":"start","total":30,"model":"efficientnet_b0","device":"cpu"}"#);
        p.line(r#"{"event":"batch","done":16,"failed":1,"total":30,"seconds":1.0}"#);
        assert_eq!(p.counts(), Some((16, 1)));
        p.line(r#"{"event":"batch","done":30,"failed":1,"total":30,"seconds":2.0}"#);
        assert_eq!(p.counts(), Some((30, 1)));
        p.finish();
    }
}
