//! The `stats` record: kernel-side counters (events sent and lost, parse anomalies) and the
//! attach count. For people it goes to stderr, one line, so it never mixes with a table.
use std::io::Write;

use super::Printer;
use crate::session::Stats;

pub fn render<W: Write>(p: &mut Printer<W>, s: &Stats) -> std::io::Result<()> {
    if p.json() {
        return p.record("stats", s);
    }
    let mut parts = vec![format!("attached_interfaces={}", s.attached_interfaces)];
    parts.extend(s.counters.iter().map(|(k, v)| format!("{k}={v}")));
    eprintln!("inspector: {}", parts.join(" "));
    Ok(())
}
