//! `inspector trace`: one line per packet per hook, filtered in the kernel, with namespace and
//! interface names. Events lost to a full ring buffer are counted and reported at exit.
use std::os::fd::AsRawFd as _;

use inspector_common::{Direction, PacketEvent};
use serde::Serialize;

use super::common::{self, Clock, FilterArgs};
use crate::{
    flows::{self, FlowRecord},
    output::{self, Format},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Stop after this many seconds.
    #[arg(long, value_parser = common::parse_secs)]
    pub duration: Option<f64>,
    /// Stop after this many events.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Size of the kernel -> userspace ring buffer in KiB (a power of two, at least 4).
    /// When it fills, events are lost, counted, and reported as `events_lost`.
    #[arg(long, default_value_t = 8192, value_parser = parse_ring_kib)]
    pub ring_kib: u32,
    /// Also print lifecycle events: namespaces and links appearing and disappearing, each
    /// named with the container, pod or lab workload that owns it.
    #[arg(long)]
    pub events: bool,
    /// One line per packet instead of per hook: its hops in path order with the time from
    /// each hop to the next (events of one packet stitched by IP id, length and TCP seq/ack,
    /// which NAT leaves alone). Packets are printed once quiet for 200 ms. Besides tc on each
    /// interface, the stack's own tracepoints (`tp_btf`) on the same interfaces are hops:
    /// `net_dev_queue` and `net_dev_start_xmit` (the time between them is the qdisc's) and
    /// `netif_receive_skb`.
    #[arg(long)]
    pub hops: bool,
    /// With --hops: tc hooks only, not the stack's tracepoints.
    #[arg(long, requires = "hops")]
    pub tc_only: bool,
}

fn parse_ring_kib(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if v >= 4 && v.is_power_of_two() && v <= 1 << 20 => Ok(v),
        _ => Err(format!("'{s}' is not a power of two between 4 and 1048576")),
    }
}

/// One packet at one hook (`inspector trace -o json` line).
#[derive(Serialize)]
struct TraceLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ns: u64,
    time_unix_ns: i128,
    netns: u64,
    netns_name: String,
    ifindex: u32,
    ifname: String,
    direction: &'static str,
    proto: String,
    src: Option<std::net::IpAddr>,
    dst: Option<std::net::IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_id: Option<u16>,
    len: u32,
    tcp_flags: String,
    mark: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    anomalies: String,
    src_endpoint: Option<crate::identity::Endpoint>,
    dst_endpoint: Option<crate::identity::Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a crate::services::attrib::ServiceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'a crate::services::attrib::BackendRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nat: Option<&'a crate::services::attrib::NatRef>,
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    let (mut f, settings) = common::start_with(
        &a.filter,
        |c| {
            c.flags |= inspector_common::config::FLAG_EVENTS;
            if a.hops && !a.tc_only {
                c.flags |= inspector_common::config::FLAG_STACK;
            }
        },
        a.ring_kib * 1024,
    )?;
    f.track_lifecycle = a.events;
    let mut ring = f.probe.take_events()?;
    let mut clock = Clock::new(a.duration, a.filter.rescan_ms)?;
    let offset = common::mono_to_unix_offset();
    let start_ns = common::mono_now_ns();
    let mut seen = 0u64;
    if fmt == Format::Table && !a.hops {
        println!("{}", header());
    }
    let mut batch: Vec<PacketEvent> = Vec::new();
    let mut stitcher = a.hops.then(crate::flows::hops::Stitcher::default);
    'outer: while !clock.stopped() {
        clock.wait(
            &[ring.as_raw_fd()],
            Some(std::time::Instant::now() + common::RING_POLL),
        );
        // Drain in batches: one identity resolver (and one read of the socket owners) per
        // batch, not per packet.
        loop {
            batch.clear();
            while batch.len() < 4096
                && let Some(item) = ring.next()
            {
                if item.len() < std::mem::size_of::<PacketEvent>() {
                    continue;
                }
                // SAFETY: the kernel wrote a whole PacketEvent (checked length); read unaligned.
                let ev: PacketEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                drop(item);
                if settings.filter.matches(&ev.key) {
                    batch.push(ev);
                }
            }
            if batch.is_empty() {
                break;
            }
            // Service attribution: conntrack is re-read when a packet's connection is not
            // in the last dump (its entry appears as the first packet crosses the node).
            let svc = f.services.as_ref().map(|c| {
                let mut s = c.borrow_mut();
                s.refresh_rules(false);
                s.refresh_conntrack(Some(&f.identity.identity));
                if batch.iter().any(|ev| {
                    service_of(&s, ev).is_none()
                        && FlowRecord::decode_key(&ev.key)
                            .is_some_and(|k| s.is_frontend(k.0, k.1, k.2, k.3, k.4))
                }) {
                    s.refresh_conntrack_soon(Some(&f.identity.identity));
                }
                s
            });
            if let Some(st) = stitcher.as_mut() {
                for ev in &batch {
                    if let Some(want) = &settings.filter.service
                        && svc
                            .as_ref()
                            .and_then(|s| service_of(s, ev))
                            .is_none_or(|a| {
                                &format!("{}/{}", a.service.namespace, a.service.name) != want
                            })
                    {
                        continue;
                    }
                    st.push(ev);
                }
                drop(svc);
                continue;
            }
            let done = f.with_resolver(|r| -> anyhow::Result<bool> {
                for ev in &batch {
                    let at = svc.as_ref().and_then(|s| service_of(s, ev));
                    if let Some(want) = &settings.filter.service
                        && at.is_none_or(|a| {
                            &format!("{}/{}", a.service.namespace, a.service.name) != want
                        })
                    {
                        continue;
                    }
                    emit(ev, &f.names, r, fmt, offset, start_ns, at)?;
                    seen += 1;
                    if a.count.is_some_and(|c| seen >= c) {
                        return Ok(true);
                    }
                }
                Ok(false)
            })??;
            drop(svc);
            if done {
                break 'outer;
            }
        }
        if let Some(st) = stitcher.as_mut() {
            let quiet = st.take_quiet(common::mono_now_ns(), HOPS_IDLE_NS);
            seen += emit_packets(
                &f,
                &quiet,
                fmt,
                offset,
                start_ns,
                a.count.map(|c| c.saturating_sub(seen)),
            )?;
            if a.count.is_some_and(|c| seen >= c) {
                break 'outer;
            }
        }
        if clock.rescan_due() {
            let _ = f.probe.clock();
            let changes = f.reconcile();
            common::log_changes(&a.filter, &changes);
            settings.check_pinned(&changes);
            for e in std::mem::take(&mut f.lifecycle) {
                super::events::emit(&e, fmt)?;
            }
        }
    }
    if let Some(st) = stitcher.as_mut() {
        let rest = st.take_quiet(0, 0);
        emit_packets(
            &f,
            &rest,
            fmt,
            offset,
            start_ns,
            a.count.map(|c| c.saturating_sub(seen)),
        )?;
    }
    super::flows::print_drops(&f, &settings, fmt)?;
    super::flows::print_stats(&f, fmt)?;
    Ok(())
}

/// A packet is printed once no hook has seen it for this long.
const HOPS_IDLE_NS: u64 = 200_000_000;

/// One hop of a stitched packet (`hops` entries of `trace --hops -o json`).
#[derive(Serialize)]
struct HopLine {
    netns: u64,
    netns_name: String,
    ifindex: u32,
    ifname: String,
    /// `tc-ingress`, `tc-egress`, `net_dev_queue`, `net_dev_start_xmit` or
    /// `netif_receive_skb`.
    hook: &'static str,
    direction: &'static str,
    #[serde(skip)]
    hook_id: u8,
    ts_ns: u64,
    /// Time since the previous hop (0 at the first).
    delta_ns: u64,
    /// The packet's addresses at this hop (they change across NAT).
    src: String,
    dst: String,
}

/// One packet with all its hops (`type: "packet_hops"`).
#[derive(Serialize)]
struct PacketHops {
    #[serde(rename = "type")]
    kind: &'static str,
    time_unix_ns: i128,
    proto: String,
    src: String,
    dst: String,
    src_endpoint: Option<crate::identity::Endpoint>,
    dst_endpoint: Option<crate::identity::Endpoint>,
    len: u32,
    tcp_flags: String,
    hops: Vec<HopLine>,
    /// First hop to last.
    total_ns: u64,
}

/// Prints stitched packets (at most `limit`); returns how many were printed.
fn emit_packets(
    f: &crate::probe::follow::Follower,
    packets: &[Vec<PacketEvent>],
    fmt: Format,
    offset: i128,
    start_ns: u64,
    limit: Option<u64>,
) -> anyhow::Result<u64> {
    let mut n = 0u64;
    f.with_resolver(|r| -> anyhow::Result<()> {
        for evs in packets {
            if limit.is_some_and(|l| n >= l) {
                break;
            }
            let Some(first) = evs.first() else { continue };
            let rec = |ev: &PacketEvent| record(ev, &f.names);
            let mut head = rec(first);
            head.attribute(r);
            let mut prev = first.ts_ns;
            let hops: Vec<HopLine> = evs
                .iter()
                .map(|ev| {
                    let h = rec(ev);
                    let d = Direction::from_u8(ev.key.direction);
                    let line = HopLine {
                        netns: h.netns,
                        netns_name: h.netns_name.clone(),
                        ifindex: h.ifindex,
                        ifname: h.ifname.clone(),
                        hook: inspector_common::flow::hook_name(ev.key.hook, ev.key.direction),
                        hook_id: ev.key.hook,
                        direction: d.as_str(),
                        ts_ns: ev.ts_ns,
                        delta_ns: ev.ts_ns.saturating_sub(prev),
                        src: h.src_str(),
                        dst: h.dst_str(),
                    };
                    prev = ev.ts_ns;
                    line
                })
                .collect();
            let p = PacketHops {
                kind: "packet_hops",
                time_unix_ns: i128::from(first.ts_ns) + offset,
                proto: head.proto.clone(),
                src: head.src_str(),
                dst: head.dst_str(),
                src_endpoint: head.src_endpoint.clone(),
                dst_endpoint: head.dst_endpoint.clone(),
                len: first.len,
                tcp_flags: head.tcp_flags.clone(),
                total_ns: evs
                    .last()
                    .map_or(0, |l| l.ts_ns.saturating_sub(first.ts_ns)),
                hops,
            };
            match fmt {
                Format::Json => output::json_line(&p)?,
                Format::Table | Format::Dot => {
                    #[expect(clippy::cast_precision_loss, reason = "display only")]
                    let rel = first.ts_ns.saturating_sub(start_ns) as f64 / 1e9;
                    let path = p
                        .hops
                        .iter()
                        .enumerate()
                        .map(|(i, h)| {
                            let at = crate::flows::path::hook_label(
                                &h.netns_name,
                                &h.ifname,
                                h.hook_id,
                                h.direction,
                            );
                            if i == 0 {
                                at
                            } else {
                                #[expect(clippy::cast_precision_loss, reason = "display only")]
                                let us = h.delta_ns as f64 / 1e3;
                                format!("+{us:.1}us {at}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" -> ");
                    #[expect(clippy::cast_precision_loss, reason = "display only")]
                    let total = p.total_ns as f64 / 1e3;
                    println!(
                        "{rel:>11.6}  {} {} -> {} {} {}B: {path} (total {total:.1}us)",
                        p.proto,
                        head.src_label(),
                        head.dst_label(),
                        p.tcp_flags,
                        p.len
                    );
                }
            }
            n += 1;
        }
        Ok(())
    })??;
    Ok(n)
}

fn header() -> String {
    format!(
        "{:>11}  {:<16}  {:<12}  {:<7}  {:<6}  {:<30}  {:<30}  {:>5}  {}",
        "TIME", "NETNS", "IFACE", "DIR", "PROTO", "SRC", "DST", "LEN", "INFO"
    )
}

/// One event as a one-packet flow record (names, decoded addresses).
pub fn record(ev: &PacketEvent, names: &crate::topology::names::Names) -> FlowRecord {
    let stats = crate::probe::Counts {
        packets: 1,
        bytes: u64::from(ev.len),
        first_ns: ev.ts_ns,
        last_ns: ev.ts_ns,
        tcp_flags: ev.tcp_flags,
        status: ev.status,
    };
    FlowRecord::new(&ev.key, &stats, names)
}

/// The Service attribution of the connection an event's packet belongs to.
fn service_of<'a>(
    s: &'a crate::services::attrib::Services,
    ev: &PacketEvent,
) -> Option<&'a crate::services::attrib::Attribution> {
    let k = FlowRecord::decode_key(&ev.key)?;
    s.lookup(k.0, k.1, k.2, k.3, k.4)
}

fn emit(
    ev: &PacketEvent,
    names: &crate::topology::names::Names,
    resolver: &crate::identity::Resolver<'_>,
    fmt: Format,
    offset: i128,
    start_ns: u64,
    at: Option<&crate::services::attrib::Attribution>,
) -> anyhow::Result<()> {
    let mut r = record(ev, names);
    r.attribute(resolver);
    match fmt {
        Format::Json => output::json_line(&TraceLine {
            kind: "packet",
            ts_ns: ev.ts_ns,
            time_unix_ns: i128::from(ev.ts_ns) + offset,
            netns: r.netns,
            netns_name: r.netns_name.clone(),
            ifindex: r.ifindex,
            ifname: r.ifname.clone(),
            direction: Direction::from_u8(ev.key.direction).as_str(),
            proto: r.proto.clone(),
            src: r.src,
            dst: r.dst,
            sport: r.sport,
            dport: r.dport,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
            icmp_id: r.icmp_id,
            len: ev.len,
            tcp_flags: r.tcp_flags.clone(),
            mark: ev.mark,
            anomalies: r.anomalies.clone(),
            src_endpoint: r.src_endpoint.clone(),
            dst_endpoint: r.dst_endpoint.clone(),
            service: at.map(|a| &a.service),
            backend: at.map(|a| &a.backend),
            nat: at.map(|a| &a.nat),
        })?,
        Format::Table | Format::Dot => {
            let rel = ev.ts_ns.saturating_sub(start_ns) as f64 / 1e9;
            let mut info = vec![];
            if let (Some(t), Some(c)) = (r.icmp_type, r.icmp_code) {
                info.push(flows::icmp_name(r.proto == "icmp6", t, c));
            }
            if !r.tcp_flags.is_empty() {
                info.push(r.tcp_flags.clone());
            }
            if !r.anomalies.is_empty() {
                info.push(r.anomalies.clone());
            }
            if let Some(a) = at {
                let spn = crate::services::spn(
                    &a.service.namespace,
                    &a.service.name,
                    &a.service.port_name,
                );
                info.push(format!(
                    "{spn} -> {}",
                    a.backend.workload.as_deref().unwrap_or(&a.backend.endpoint)
                ));
            }
            // Fixed widths keep lines aligned while streaming.
            println!(
                "{:>11}  {:<16}  {:<12}  {:<7}  {:<6}  {:<30}  {:<30}  {:>5}  {}",
                format!("{rel:.6}"),
                r.netns_name,
                r.ifname,
                r.direction,
                r.proto,
                r.src_label(),
                r.dst_label(),
                ev.len,
                info.join(" ")
            );
        }
    }
    Ok(())
}
