//! `packet` records (one packet at one hook, streamed with fixed column widths) and
//! `packet_hops` records (one packet with its hops and the time between them).
use std::io::Write;

use super::{Printer, labelled};
use crate::session::{
    records::{Packet, PacketHops},
    trace::TraceItem,
};

/// The column header of per-hook lines (table only).
pub fn header<W: Write>(p: &mut Printer<W>) -> std::io::Result<()> {
    if p.json() {
        return Ok(());
    }
    p.line(&format!(
        "{:>11}  {:<16}  {:<12}  {:<7}  {:<6}  {:<30}  {:<30}  {:>5}  {}",
        "TIME", "NETNS", "IFACE", "DIR", "PROTO", "SRC", "DST", "LEN", "INFO"
    ))
}

/// One item; `start_ns` is the trace's start (table times are relative to it).
pub fn render<W: Write>(
    p: &mut Printer<W>,
    item: &TraceItem,
    start_ns: u64,
) -> std::io::Result<()> {
    match item {
        TraceItem::Packet(x) if p.json() => p.record("packet", x),
        TraceItem::Hops(x) if p.json() => p.record("packet_hops", x),
        TraceItem::Packet(x) => p.line(&packet_line(x, start_ns)),
        TraceItem::Hops(x) => p.line(&hops_line(x, start_ns)),
        TraceItem::Again(first, again) => render(
            p,
            &TraceItem::Packet(Box::new(again.packet(first))),
            start_ns,
        ),
    }
}

fn secs_since(ts: u64, start_ns: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let s = ts.saturating_sub(start_ns) as f64 / 1e9;
    s
}

fn packet_line(x: &Packet, start_ns: u64) -> String {
    let mut info = vec![];
    if let (Some(t), Some(c)) = (x.hdr.icmp_type, x.hdr.icmp_code) {
        info.push(crate::flows::icmp_name(
            x.hdr.proto == crate::net::Proto::Icmp6,
            t,
            c,
        ));
    }
    if !x.tcp_flags.is_empty() {
        info.push(x.tcp_flags.clone());
    }
    if !x.anomalies.is_empty() {
        info.push(x.anomalies.clone());
    }
    if let Some(a) = &x.service {
        let spn = crate::services::spn(&a.service.namespace, &a.service.name, &a.service.port_name);
        info.push(format!(
            "{spn} -> {}",
            a.backend.workload.as_deref().unwrap_or(&a.backend.endpoint)
        ));
    }
    // Fixed widths keep lines aligned while streaming.
    format!(
        "{:>11}  {:<16}  {:<12}  {:<7}  {:<6}  {:<30}  {:<30}  {:>5}  {}",
        format!("{:.6}", secs_since(x.ts_ns, start_ns)),
        x.netns_name,
        x.ifname,
        x.direction,
        x.hdr.proto.to_string(),
        labelled(x.hdr.src_str(), x.src_endpoint.as_ref()),
        labelled(x.hdr.dst_str(), x.dst_endpoint.as_ref()),
        x.len,
        info.join(" ")
    )
}

fn hops_line(x: &PacketHops, start_ns: u64) -> String {
    let path = x
        .hops
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                h.label()
            } else {
                format!("+{}us {}", super::us(h.delta_ns), h.label())
            }
        })
        .collect::<Vec<_>>()
        .join(" -> ");
    format!(
        "{:>11.6}  {} {} -> {} {} {}B: {path} (total {}us)",
        secs_since(x.ts_ns, start_ns),
        x.hdr.proto,
        labelled(x.hdr.src_str(), x.src_endpoint.as_ref()),
        labelled(x.hdr.dst_str(), x.dst_endpoint.as_ref()),
        x.tcp_flags,
        x.len,
        super::us(x.total_ns)
    )
}
