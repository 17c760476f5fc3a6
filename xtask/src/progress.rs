//! Progress for long tasks: one [`MultiProgress`] per command, one bar per
//! bootstrap, download or build step, all on stderr (stdout carries a
//! command's results only, e.g. `eval --json`, `export --json`, even when
//! the command had to build its image first). On a terminal the bars
//! animate; when stderr is not a terminal they stay hidden and each task
//! prints plain log lines stamped with the time since the command started,
//! and its duration.
//!
//! May use: nothing else of the crate.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of one command.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    tty: bool,
    start: Instant,
}

/// One task on the display: a spinner or a byte counter.
pub struct Task {
    bar: ProgressBar,
    label: String,
    tty: bool,
    start: Instant,
    origin: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Bars on a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        Self::with_tty(tty)
    }

    /// No bars: plain log lines only (tests, `--quiet`-like use).
    pub fn plain() -> Self {
        Self::with_tty(false)
    }

    fn with_tty(tty: bool) -> Self {
        let target = if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            tty,
            start: Instant::now(),
        }
    }

    /// A spinner showing `label` and the last line reported to it.
    pub fn spinner(&self, label: impl Into<String>) -> Task {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} [{elapsed}] {wide_msg}")
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        self.task(bar, label.into())
    }

    /// A counter of `total` items whose message carries byte counts.
    pub fn counter(&self, label: impl Into<String>, total: u64) -> Task {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:.bold} [{elapsed}] {bar:30} {pos}/{len} {wide_msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        self.task(bar, label.into())
    }

    /// A byte counter (context upload, archive load); `total` when known.
    pub fn bytes(&self, label: impl Into<String>, total: Option<u64>) -> Task {
        let bar = self
            .multi
            .add(total.map_or_else(ProgressBar::no_length, ProgressBar::new));
        let template = if total.is_some() {
            "{spinner:.cyan} {prefix:.bold} [{elapsed}] {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {wide_msg}"
        } else {
            "{spinner:.cyan} {prefix:.bold} [{elapsed}] {bytes} {binary_bytes_per_sec} {wide_msg}"
        };
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(120));
        self.task(bar, label.into())
    }

    fn task(&self, bar: ProgressBar, label: String) -> Task {
        bar.set_prefix(label.clone());
        let task = Task {
            bar,
            label,
            tty: self.tty,
            start: Instant::now(),
            origin: self.start,
        };
        task.log("started");
        task
    }

    /// A line above the bars (or a plain stamped line).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.tty {
            let _ = self.multi.println(line.as_ref());
        } else {
            eprintln!("[{}] {}", stamp(self.start.elapsed()), line.as_ref());
        }
    }
}

impl Task {
    /// The latest line of output: the spinner's message on a terminal;
    /// nothing in plain mode (see [`Task::log`]).
    pub fn line(&self, line: &str) {
        if self.tty {
            self.bar.set_message(line.to_string());
        }
    }

    /// A line worth keeping in plain logs too (a build step, a phase).
    pub fn log(&self, line: &str) {
        if self.tty {
            self.bar.set_message(line.to_string());
        } else {
            eprintln!("[{}] {}: {line}", stamp(self.origin.elapsed()), self.label);
        }
    }

    /// The bar itself, for counting bytes from another task.
    pub fn bar_handle(&self) -> ProgressBar {
        self.bar.clone()
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn set_length(&self, n: u64) {
        self.bar.set_length(n);
    }

    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Ends the task with `summary` and how long it took.
    pub fn finish(self, summary: &str) -> Duration {
        let took = self.start.elapsed();
        let line = format!("{summary} in {}", seconds(took));
        if self.tty {
            self.bar.set_style(
                ProgressStyle::with_template("  {prefix:.bold.green} {wide_msg}")
                    .expect("valid template"),
            );
            self.bar.finish_with_message(line);
        } else {
            eprintln!("[{}] {}: {line}", stamp(self.origin.elapsed()), self.label);
        }
        took
    }

    /// Ends the task as failed (the error itself is reported by the caller).
    pub fn fail(self, what: &str) {
        let took = self.start.elapsed();
        if self.tty {
            self.bar.abandon_with_message(format!("failed: {what}"));
        } else {
            eprintln!(
                "[{}] {}: failed after {}: {what}",
                stamp(self.origin.elapsed()),
                self.label,
                seconds(took)
            );
        }
    }
}

/// `12.3s`
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `+  12.3s`: time since the command started.
fn stamp(d: Duration) -> String {
    format!("+{:>7.1}s", d.as_secs_f64())
}

/// `1.2 GiB`
pub fn bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}
