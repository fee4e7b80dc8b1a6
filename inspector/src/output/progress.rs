//! A progress bar on stderr: redrawn in place on a terminal, a line at most every 2 s
//! otherwise (a log).
use std::{io::IsTerminal as _, time::Instant};

pub struct Progress {
    start: Instant,
    tty: bool,
    last: Option<Instant>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }
}

impl Progress {
    /// `done` of `total` steps, now doing `what`.
    pub fn show(&mut self, done: usize, total: usize, what: &str) {
        let el = self.start.elapsed().as_secs_f64();
        let left = if done > 0 && done < total {
            #[expect(clippy::cast_precision_loss, reason = "step counts")]
            let s = el / done as f64 * (total - done) as f64;
            #[expect(clippy::cast_possible_truncation, reason = "minutes")]
            let (m, sec) = ((s / 60.0) as u64, (s % 60.0) as u64);
            format!(", about {m}:{sec:02} left")
        } else {
            String::new()
        };
        if self.tty {
            let width = 30;
            let fill = (done * width).checked_div(total).unwrap_or(width);
            eprint!(
                "\r\x1b[2K[{}{}] {done}/{total} {what}{left}",
                "#".repeat(fill),
                "-".repeat(width - fill)
            );
            if done == total {
                eprintln!();
            }
        } else if self.last.is_none_or(|t| t.elapsed().as_secs_f64() >= 2.0) || done == total {
            eprintln!("inspector: bench [{done}/{total}] {what}{left}");
            self.last = Some(Instant::now());
        }
    }
}
