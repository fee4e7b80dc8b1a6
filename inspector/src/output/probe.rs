//! The `probe` record of `inspector path`: the connection's steps in order, the Service and
//! backend, and the verdict with where and why a refused or dropped connection died.
use std::io::Write;

use super::Printer;
use crate::session::path::{Attempt, Fate, PathReport, ProbeStep, StepKind};

pub fn render<W: Write>(p: &mut Printer<W>, r: &PathReport) -> std::io::Result<()> {
    if p.json() {
        return p.record("probe", r);
    }
    let svc = r
        .service
        .as_ref()
        .map(|s| {
            format!(
                " ({}, {}, kube-proxy {} on {})",
                crate::services::spn(&s.namespace, &s.name, &s.port_name),
                s.via,
                s.mode,
                s.node
            )
        })
        .unwrap_or_default();
    p.line(&format!(
        "{} {} ({}) -> {}{svc}",
        r.proto,
        r.source,
        crate::net::endpoint(Some(r.src), Some(r.sport)),
        crate::net::endpoint(Some(r.dst), Some(r.dport))
    ))?;
    steps(p, &r.hops)?;
    if !r.reply_hops.is_empty() {
        p.line("  reply:")?;
        steps(p, &r.reply_hops)?;
    }
    let verdict = serde_json::to_value(r.verdict)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    p.line(&format!("verdict: {verdict} ({})", r.verdict_detail))?;
    if let Some(d) = &r.drop {
        let place = if d.ifname.is_empty() {
            String::new()
        } else {
            format!(" at {}/{}", d.netns_name, d.ifname)
        };
        let reason = if d.reason.is_empty() {
            String::new()
        } else if d.location.is_empty() {
            format!(", reason {}", d.reason)
        } else {
            format!(", reason {} in {}", d.reason, d.location)
        };
        let rule = d
            .rule
            .as_ref()
            .map(|x| format!(", by {x}"))
            .unwrap_or_default();
        p.line(&format!("  dropped{place}{reason}{rule}"))?;
    }
    for h in &r.rules_hit {
        let at = if h.node.is_empty() {
            String::new()
        } else {
            format!(" in {}", h.node)
        };
        p.line(&format!(
            "  rule counted {} packet(s){at}: {} {}",
            h.packets, h.table, h.rule
        ))?;
    }
    if r.attempts.len() > 1 || r.attempts.iter().any(|a| a.fate != Fate::Answered) {
        p.line("attempts:")?;
        for a in &r.attempts {
            attempt(p, a)?;
        }
    }
    if let Some(c) = &r.cause {
        p.line(&format!("cause: {c}"))?;
    }
    Ok(())
}

/// `  #2 +1003 ms -> 198.18.30.4:8080 (web3)  dropped at node/veth (NETFILTER_DROP in
/// nf_hook_slow+0x..., rule ...)`, then its hops.
fn attempt<W: Write>(p: &mut Printer<W>, a: &Attempt) -> std::io::Result<()> {
    let to = a.backend.as_ref().map_or_else(String::new, |b| {
        let w = a
            .backend_workload
            .as_ref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        format!(" -> DNAT {b}{w}")
    });
    let fate = match (a.fate, &a.drop) {
        (Fate::Dropped, Some(d)) => {
            let rule = d
                .rule
                .as_ref()
                .map(|r| format!(", rule {r}"))
                .unwrap_or_default();
            format!(
                "dropped at {}/{} ({} in {}{rule})",
                d.netns_name, d.ifname, d.reason, d.location
            )
        }
        (f, _) => serde_json::to_value(f)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    };
    p.line(&format!("  #{} +{:.0} ms{to}: {fate}", a.n, a.after_ms))?;
    p.line(&format!("      {}", a.hops.join(" > ")))
}

fn steps<W: Write>(p: &mut Printer<W>, steps: &[ProbeStep]) -> std::io::Result<()> {
    for (i, h) in steps.iter().enumerate() {
        let line = match h.kind {
            StepKind::Nat => format!(
                "  {:>2}. [{}] {}",
                i + 1,
                h.netns_name.as_deref().unwrap_or(""),
                h.detail
            ),
            StepKind::Interface => format!(
                "  {:>2}. {:<34} {:<7} {:<44} {}",
                i + 1,
                format!(
                    "{}/{}",
                    h.netns_name.as_deref().unwrap_or(""),
                    h.ifname.as_deref().unwrap_or("")
                ),
                h.direction.unwrap_or(""),
                format!(
                    "{} -> {}",
                    crate::net::endpoint(h.src, h.sport),
                    crate::net::endpoint(h.dst, h.dport)
                ),
                h.detail
            ),
        };
        p.line(&line)?;
    }
    Ok(())
}
