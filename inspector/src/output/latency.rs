//! `latency` rows (per-hop p50/p90/p99/max/mean per endpoint pair, in path order) and the
//! `latency_sampling` record (which rates per-hop timing used).
use std::io::Write;

use super::{Printer, Table, us};
use crate::{flows::hops::LatencyRow, session::latency::SamplingReport};

pub fn render<W: Write>(
    p: &mut Printer<W>,
    rows: &[LatencyRow],
    sampling: Option<&SamplingReport>,
) -> std::io::Result<()> {
    if p.json() {
        for r in rows {
            p.record("latency", r)?;
        }
        if let Some(s) = sampling {
            p.record("latency_sampling", s)?;
        }
        return Ok(());
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut t = Table::new(&[
        "PAIR", "FROM", "TO", "PACKETS", "P50 US", "P90 US", "P99 US", "MAX US", "MEAN US",
    ]);
    for r in rows {
        t.row(vec![
            r.pair.clone(),
            r.from.clone(),
            r.to.clone(),
            r.packets.to_string(),
            us(r.p50_ns),
            us(r.p90_ns),
            us(r.p99_ns),
            us(r.max_ns),
            us(r.mean_ns),
        ]);
    }
    p.line("")?;
    p.text(&t.render())?;
    if let Some(s) = sampling {
        let n: Vec<String> = s.timed_one_in.iter().map(u32::to_string).collect();
        p.line(&format!(
            "(packets timed: 1 in {}{})",
            n.join(", 1 in "),
            if s.auto { " (auto)" } else { "" }
        ))?;
    }
    Ok(())
}
