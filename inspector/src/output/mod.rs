//! Rendering: one renderer per record kind, each with its table, JSON lines and (where it
//! exists) DOT form. Front-ends (`cli`, the coming agent) hand records to a [`Printer`];
//! nothing here computes a record.
//!
//! JSON: one object per line, each with a `"type"` naming its record kind, whose schema is
//! published in `docs/schema/<type>.json` (the tests validate every line they read).
pub mod bench;
pub mod bench_modes;
pub mod capture;
pub mod charts;
pub mod cleanup;
pub mod drops;
pub mod explain;
pub mod files;
pub mod flows;
pub mod lab;
pub mod latency;
pub mod lifecycle;
pub mod paths;
pub mod probe;
pub mod progress;
pub mod services;
pub mod stats;
pub mod status;
pub mod svg;
mod table;
pub mod topology;
pub mod trace;

use std::io::Write;

use serde::Serialize;

pub use table::{Columns, Table};

/// Every record kind the renderers write (its `"type"`); each has a published schema,
/// docs/schema/<kind>.json (a test holds the two lists together).
pub const KINDS: &[&str] = &[
    "agent_phase",
    "bench",
    "capture_sample",
    "capture_summary",
    "cleanup",
    "drop",
    "explain",
    "flow",
    "ipvs",
    "lab",
    "latency",
    "latency_sampling",
    "lifecycle",
    "netns",
    "overhead_per_hop",
    "overhead_sample",
    "overhead_summary",
    "overhead_target",
    "packet",
    "packet_hops",
    "path",
    "pipeline_paced",
    "pipeline_throughput",
    "probe",
    "scale_sample",
    "scale_summary",
    "service",
    "services_sample",
    "services_setup",
    "services_summary",
    "snapshot",
    "stats",
    "status",
    "workload",
];

/// How records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned tables and lines for people.
    #[default]
    Table,
    /// One JSON object per line.
    Json,
    /// Graphviz (`topology` only).
    Dot,
}

/// A record with its kind as `"type"`, flattened into one JSON object.
#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    rec: &'a T,
}

/// Where records go, and in which format.
pub struct Printer<W: Write = std::io::Stdout> {
    pub fmt: Format,
    w: W,
}

impl Printer {
    /// Records to stdout.
    #[must_use]
    pub fn stdout(fmt: Format) -> Self {
        Self {
            fmt,
            w: std::io::stdout(),
        }
    }
}

impl<W: Write> Printer<W> {
    #[must_use]
    pub fn new(fmt: Format, w: W) -> Self {
        Self { fmt, w }
    }

    #[must_use]
    pub fn json(&self) -> bool {
        self.fmt == Format::Json
    }

    /// One record as a JSON line tagged `kind`, flushed (consumers read line by line).
    pub fn record<T: Serialize>(&mut self, kind: &str, rec: &T) -> std::io::Result<()> {
        debug_assert!(KINDS.contains(&kind), "record kind {kind} is not in KINDS");
        serde_json::to_writer(&mut self.w, &Tagged { kind, rec })?;
        self.w.write_all(b"\n")?;
        self.w.flush()
    }

    /// Text for people (written as is, flushed).
    pub fn text(&mut self, s: &str) -> std::io::Result<()> {
        self.w.write_all(s.as_bytes())?;
        self.w.flush()
    }

    /// A line of text for people.
    pub fn line(&mut self, s: &str) -> std::io::Result<()> {
        self.w.write_all(s.as_bytes())?;
        self.w.write_all(b"\n")?;
        self.w.flush()
    }

    /// Where it writes.
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    /// What was written (for tests and in-memory renders).
    pub fn into_inner(self) -> W {
        self.w
    }
}

/// An error with its sources, "outer: inner: innermost".
#[must_use]
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Microseconds with one decimal, from nanoseconds.
#[must_use]
pub fn us(ns: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let v = ns as f64 / 1e3;
    format!("{v:.1}")
}

/// "198.18.0.2:41234 (web)" when the end is attributed, else just the address.
#[must_use]
pub fn labelled(addr: String, e: Option<&crate::identity::Endpoint>) -> String {
    match e.and_then(|e| e.name.as_deref()) {
        Some(n) => format!("{addr} ({n})"),
        None => addr,
    }
}

/// Whether stdout is a terminal (refreshing tables clear the screen only there).
#[must_use]
pub fn stdout_is_tty() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal()
}
