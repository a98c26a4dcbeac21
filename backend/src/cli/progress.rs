//! A progress line on stderr for long runs: done/total, rate and time left.
//! On a terminal it redraws in place; otherwise (logs, CI) it prints a line
//! every tenth of the way.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a terminal line is redrawn.
const REDRAW: Duration = Duration::from_millis(200);

/// Progress of `total` units of work.
pub struct Progress {
    what: &'static str,
    total: usize,
    start: Instant,
    last: Option<Instant>,
    tty: bool,
    printed_tenths: usize,
}

impl Progress {
    /// Starts timing `total` units named `what` (plural, e.g. "questions").
    pub fn new(what: &'static str, total: usize) -> Self {
        Self {
            what,
            total,
            start: Instant::now(),
            last: None,
            tty: std::io::stderr().is_terminal(),
            printed_tenths: 0,
        }
    }

    /// Reports `done` units finished.
    pub fn update(&mut self, done: usize) {
        let now = Instant::now();
        let finished = done >= self.total;
        if self.tty {
            if !finished && self.last.is_some_and(|t| now - t < REDRAW) {
                return;
            }
            eprint!("\r{}", self.line(done));
            if finished {
                eprintln!();
            }
        } else {
            let tenths = done * 10 / self.total.max(1);
            if tenths <= self.printed_tenths && !(finished && self.printed_tenths < 10) {
                return;
            }
            self.printed_tenths = tenths;
            eprintln!("{}", self.line(done));
        }
        let _ = std::io::stderr().flush();
        self.last = Some(now);
    }

    fn line(&self, done: usize) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = done as f64 / elapsed.max(1e-9);
        let left = if done > 0 {
            (self.total - done.min(self.total)) as f64 / rate
        } else {
            f64::NAN
        };
        let width = 30;
        let filled = (done * width / self.total.max(1)).min(width);
        format!(
            "[{}{}] {done}/{} {}  {rate:.1}/s  ETA {}",
            "=".repeat(filled),
            " ".repeat(width - filled),
            self.total,
            self.what,
            clock(left)
        )
    }
}

/// `h:mm:ss` or `m:ss`, `?` when unknown.
fn clock(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_naturally() {
        assert_eq!(clock(5.2), "0:05");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(f64::NAN), "?");
    }
}
