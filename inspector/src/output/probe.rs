//! The `probe` record of `inspector path`: the connection's steps in order, the Service and
//! backend, and the verdict with where and why a refused or dropped connection died.
use std::io::Write;

use super::Printer;
use crate::session::path::{PathReport, ProbeStep, StepKind};

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
        p.line(&format!(
            "  rule counted {} packet(s): {} {}",
            h.packets, h.table, h.rule
        ))?;
    }
    Ok(())
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
