//! `inspector bench` as a test runs it: started with its stderr (the progress lines)
//! collected as they come, so a test can act while it runs; its one JSON report read at the
//! end.
use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

/// `inspector bench ARGS` running, its stderr collected line by line.
pub struct Bench {
    child: std::process::Child,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Bench {
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(super::bin())
            .arg("bench")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn inspector bench");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(l);
            }
        });
        Self {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    pub fn said(&self, needle: &str) -> bool {
        self.stderr
            .lock()
            .expect("lock")
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Waits (up to 2 minutes) until stderr says `needle` (a progress line); panics with
    /// stderr otherwise.
    pub fn wait_said(&self, needle: &str) {
        assert!(
            super::eventually(Duration::from_mins(2), || self.said(needle)),
            "never said '{needle}': {}",
            self.stderr_text()
        );
    }

    /// SIGINT (Ctrl-C) once `left` (what the run made) is not empty; it must then end with
    /// "interrupted". Returns its output.
    pub fn interrupt(self, left: &[String]) -> Output {
        assert!(
            !left.is_empty(),
            "the run made nothing to remove (a check after it could not fail)"
        );
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGINT) };
        let out = self.finish(Duration::from_mins(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("interrupted"),
            "{err}"
        );
        out
    }

    pub fn finish(mut self, limit: Duration) -> Output {
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().expect("true"));
        let mut out = super::wait_bounded(child, limit);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        out.stderr = self.stderr.lock().expect("lock").join("\n").into_bytes();
        out
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).expect("one JSON report");
    super::schema::check(&v);
    v
}

pub fn entry<'a>(r: &'a Value, mode: &str, w: &str) -> &'a Value {
    r["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|e| e["mode"] == mode && e["workload"] == w)
        .unwrap_or_else(|| panic!("no result for {w} over {mode}"))
}
