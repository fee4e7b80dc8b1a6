//! `inspector flows`: per-flow, per-hop counters, refreshed like `top`, or printed once after
//! `--duration` (or when interrupted).
use std::time::{Duration, Instant};

use super::common::{self, Clock, FilterArgs};
use crate::{
    flows::{FlowRecord, drops::DropRecord, filter::Filter, path},
    output::{self, Format, Table},
    probe::follow::Follower,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print once after this many seconds (or when interrupted) instead of refreshing.
    #[arg(long, value_parser = common::parse_secs)]
    pub duration: Option<f64>,
    /// Refresh interval in seconds (refreshing mode).
    #[arg(long, default_value_t = 1.0, value_parser = common::parse_secs)]
    pub interval: f64,
    /// Show at most this many flows per refresh (busiest first; 0 = all).
    #[arg(long, default_value_t = 0)]
    pub top: usize,
    /// Show each flow as the path it took (hops in the order they first saw it), not one
    /// line per hop.
    #[arg(long)]
    pub paths: bool,
    /// Per-hop latency: p50/p90/p99/max of the time from each hop to the next, per endpoint
    /// pair (the addresses where the packet was first seen).
    #[arg(long)]
    pub latency: bool,
    /// Where `--latency` is measured. `kernel`: the programs time each packet from hook to
    /// hook themselves and keep the histograms (IPv4 TCP, UDP and ICMP; no per-packet
    /// events, tens of ns per hop). `events`: a per-packet event at every hook, stitched in
    /// userspace as in `trace --hops` (any IP packet, hundreds of ns per hop).
    #[arg(long, value_enum, default_value_t = LatencyFrom::Kernel, requires = "latency")]
    pub latency_from: LatencyFrom,
    /// With `--latency` (kernel): time 1 packet in N (a power of two up to 1024), picked by
    /// the packet's fingerprint so every hop times the same packets; PACKETS then counts the
    /// timed packets. `auto`: every packet while the node's timed hops stay under 5,000/s,
    /// fewer (1 in 2, 4, ...) above, re-set every 250 ms. Reading the clock is most of the
    /// per-hop cost.
    #[arg(long, default_value = "auto", value_parser = parse_sample)]
    pub latency_sample: Sample,
    /// With `--latency` (kernel): also time the stack's own hooks on the same interfaces -
    /// `net_dev_queue` and `net_dev_start_xmit` (the time between them is the qdisc's) and
    /// `netif_receive_skb` (`tp_btf`; they run for every packet on the node while on).
    #[arg(long, requires = "latency")]
    pub stack: bool,
}

/// See `Args::latency_sample`: `None` is auto, else the shift (N = 2^shift).
#[derive(Clone, Copy, Debug)]
pub struct Sample(Option<u32>);

fn parse_sample(s: &str) -> Result<Sample, String> {
    if s == "auto" {
        return Ok(Sample(None));
    }
    match s.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= 1 << inspector_common::hop::HOP_MAX_SHIFT => {
            Ok(Sample(Some(n.trailing_zeros())))
        }
        _ => Err(format!(
            "'{s}' is neither 'auto' nor a power of two from 1 to 1024 (e.g. 1, 8, 64)"
        )),
    }
}

/// How often auto sampling looks at the timed rate.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// See `Args::latency_from`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyFrom {
    Kernel,
    Events,
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    let events = a.latency && a.latency_from == LatencyFrom::Events;
    if events && a.stack {
        anyhow::bail!(
            "--stack times the stack's hooks in the kernel: use it without --latency-from events \
             (or see them per packet with `trace --hops`)"
        );
    }
    let kernel = a.latency && a.latency_from == LatencyFrom::Kernel;
    let (mut f, settings) = if events {
        common::start_with(
            &a.filter,
            |c| c.flags |= inspector_common::config::FLAG_EVENTS,
            8 << 20,
        )?
    } else if kernel {
        let fixed = a.latency_sample.0;
        common::start_with(
            &a.filter,
            |c| {
                c.flags |= inspector_common::config::FLAG_HOPTIME;
                if a.stack {
                    c.flags |= inspector_common::config::FLAG_STACK;
                }
                c.hop_sample_shift = fixed.map_or(inspector_common::config::HOP_SHIFT_AUTO, |s| {
                    u8::try_from(s).unwrap_or(0)
                });
            },
            4096,
        )?
    } else {
        common::start(&a.filter, false)?
    };
    let mut ring = if events {
        Some(f.probe.take_events()?)
    } else {
        None
    };
    let mut latency = crate::flows::hops::Aggregator::default();
    // Per-hop timing's sampling: (shift, when and at what count the rate was last read).
    let auto = kernel && a.latency_sample.0.is_none();
    let mut shift = a.latency_sample.0.unwrap_or(0);
    let mut shifts_used = vec![shift];
    if auto {
        f.probe.set_hop_shift(shift)?;
    }
    let mut last_rate = (Instant::now(), 0u64);
    let mut clock = Clock::new(a.duration, a.filter.rescan_ms)?;
    let interval = Duration::from_secs_f64(a.interval);
    let mut next_print = Instant::now() + interval;
    let once = a.duration.is_some();
    while !clock.stopped() {
        let fds: Vec<std::os::fd::RawFd> =
            ring.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        let poll = if ring.is_some() {
            Some(Instant::now() + common::RING_POLL)
        } else {
            auto.then(|| last_rate.0 + SAMPLE_EVERY)
        };
        let until = match ((!once).then_some(next_print), poll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        clock.wait(&fds, until);
        if let Some(r) = ring.as_mut() {
            drain_latency(r, &settings.filter, &mut latency, false);
        }
        if auto && last_rate.0.elapsed() >= SAMPLE_EVERY {
            let timed = f.probe.stats()?[inspector_common::Stat::HopTimed as usize];
            let secs = last_rate.0.elapsed().as_secs_f64();
            #[expect(clippy::cast_precision_loss, reason = "a rate")]
            let per_sec = timed.saturating_sub(last_rate.1) as f64 / secs;
            last_rate = (Instant::now(), timed);
            let next =
                crate::flows::hops::auto_shift(shift, per_sec, crate::flows::hops::TIMED_PER_SEC);
            if next != shift {
                shift = next;
                f.probe.set_hop_shift(shift)?;
                if !shifts_used.contains(&shift) {
                    shifts_used.push(shift);
                }
            }
        }
        if clock.rescan_due() {
            let _ = f.probe.clock();
            let changes = f.reconcile();
            common::log_changes(&a.filter, &changes);
        }
        if !once && Instant::now() >= next_print {
            next_print += interval;
            print(&f, a, &settings.filter, fmt, true)?;
        }
    }
    // Final snapshot: in --duration mode this is the result; interrupted refreshes get one too.
    print(&f, a, &settings.filter, fmt, false)?;
    if let Some(r) = ring.as_mut() {
        drain_latency(r, &settings.filter, &mut latency, true);
        print_latency(&f, Latency::Events(&latency), fmt)?;
    }
    if kernel {
        let hists = f.probe.hop_hists()?;
        print_latency(&f, Latency::Kernel(&hists), fmt)?;
        shifts_used.sort_unstable();
        let one_in: Vec<u32> = shifts_used.iter().map(|s| 1u32 << s).collect();
        match fmt {
            Format::Json => output::json_line(&serde_json::json!({
                "type": "latency_sampling",
                "auto": auto,
                "timed_one_in": one_in,
            }))?,
            Format::Table | Format::Dot if !hists.is_empty() => {
                let n: Vec<String> = one_in.iter().map(u32::to_string).collect();
                println!(
                    "(packets timed: 1 in {}{})",
                    n.join(", 1 in "),
                    if auto { " (auto)" } else { "" }
                );
            }
            Format::Table | Format::Dot => {}
        }
    }
    print_drops(&f, &settings, fmt)?;
    print_stats(&f, fmt)?;
    Ok(())
}

/// Reads the events waiting in the ring into the per-hop aggregator and closes the packets
/// first seen more than 200 ms ago (all of them when `all`).
fn drain_latency(
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    filter: &Filter,
    latency: &mut crate::flows::hops::Aggregator,
    all: bool,
) {
    while let Some(item) = ring.next() {
        if item.len() < std::mem::size_of::<inspector_common::PacketEvent>() {
            continue;
        }
        // SAFETY: the kernel wrote a whole PacketEvent (checked length); read unaligned.
        let ev: inspector_common::PacketEvent =
            unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        drop(item);
        if filter.matches(&ev.key) {
            latency.push(&ev);
        }
    }
    if all {
        latency.close_quiet(0, 0);
    } else {
        latency.close_quiet(common::mono_now_ns(), 200_000_000);
    }
}

/// Where the latency rows come from.
#[derive(Clone, Copy)]
enum Latency<'a> {
    Events(&'a crate::flows::hops::Aggregator),
    /// Filtered in the kernel (by the load-time filter, at every hop).
    Kernel(&'a [inspector_common::hop::HopHist]),
}

/// The per-hop latency table (`type: "latency"` lines in JSON).
fn print_latency(f: &Follower, l: Latency<'_>, fmt: Format) -> anyhow::Result<()> {
    let rows = f.with_resolver(|r| {
        let end = |ip: Option<std::net::IpAddr>, e: Option<&crate::identity::Endpoint>| {
            e.and_then(|e| e.name.clone())
                .unwrap_or_else(|| ip.map_or_else(|| "-".into(), |i| i.to_string()))
        };
        let hop_name = |ev: &inspector_common::PacketEvent| {
            let rec = crate::cli::trace::record(ev, &f.names);
            path::hook_label(&rec.netns_name, &rec.ifname, ev.key.hook, rec.direction)
        };
        let pair_name = |ev: &inspector_common::PacketEvent| {
            let mut head = crate::cli::trace::record(ev, &f.names);
            head.attribute(r);
            format!(
                "{} -> {} {}",
                end(head.src, head.src_endpoint.as_ref()),
                end(head.dst, head.dst_endpoint.as_ref()),
                head.proto
            )
        };
        match l {
            Latency::Events(a) => a.rows(hop_name, pair_name),
            Latency::Kernel(h) => crate::flows::hops::kernel_rows(h, hop_name, pair_name),
        }
    })?;
    match fmt {
        Format::Json => {
            for r in &rows {
                output::json_line(&LatencyLine {
                    kind: "latency",
                    row: r,
                })?;
            }
        }
        Format::Table | Format::Dot => {
            if rows.is_empty() {
                return Ok(());
            }
            let us = |ns: u64| {
                #[expect(clippy::cast_precision_loss, reason = "display only")]
                let v = ns as f64 / 1e3;
                format!("{v:.1}")
            };
            let mut t = Table::new(&[
                "PAIR", "FROM", "TO", "PACKETS", "P50 US", "P90 US", "P99 US", "MAX US", "MEAN US",
            ]);
            for r in &rows {
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
            println!();
            print!("{}", t.render());
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct LatencyLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    row: &'a crate::flows::hops::LatencyRow,
}

/// Drops in the selected namespaces (all drops if no namespace was selected) that pass the
/// packet filter.
pub fn drop_records(f: &Follower, s: &super::common::Settings) -> anyhow::Result<Vec<DropRecord>> {
    let mut v: Vec<DropRecord> = f
        .probe
        .drops()?
        .iter()
        .filter(|(k, _)| {
            s.selection.netns.is_empty() || s.selection.netns.contains(&u64::from(k.netns))
        })
        .filter(|(k, _)| s.filter.matches(&crate::flows::drops::flow_key(k)))
        .map(|(k, st)| DropRecord::new(k, st, f.probe.drop_reason(k.reason), &f.names))
        .collect();
    for d in &mut v {
        if d.reason == "NETFILTER_DROP" {
            d.rule = f.dropping_rule(d.netns);
        }
    }
    f.with_resolver(|r| {
        for d in &mut v {
            d.attribute(r);
        }
    })?;
    v.sort_by_key(|d| std::cmp::Reverse(d.packets));
    Ok(v)
}

/// Prints flows as paths: each direction of each flow with its hops in order, and what each
/// hop is (veth and its peer, bridge, bridge port). ARP is left out (it has no path).
pub fn print_paths(f: &Follower, paths: &[path::FlowPath], fmt: Format) -> anyhow::Result<()> {
    for p in paths.iter().filter(|p| p.proto != "arp") {
        let roles: Vec<String> = p
            .hops
            .iter()
            .map(|h| path::role(&f.topology, h.netns, h.ifindex))
            .collect();
        match fmt {
            Format::Json => output::json_line(&PathLine {
                kind: "path",
                path: p,
                roles,
            })?,
            Format::Table | Format::Dot => {
                let who = |e: Option<&crate::identity::Endpoint>| {
                    e.and_then(|e| e.name.as_deref())
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                };
                println!(
                    "{} {}{} -> {}{}",
                    p.proto,
                    p.src,
                    who(p.src_endpoint.as_ref()),
                    p.dst,
                    who(p.dst_endpoint.as_ref())
                );
                for (i, (h, r)) in p.hops.iter().zip(&roles).enumerate() {
                    println!(
                        "  {:>2}. {:<28} {:<7} {:>6} pkts {:>9} bytes  {}",
                        i + 1,
                        format!("{}/{}", h.netns_name, h.ifname),
                        h.direction,
                        h.packets,
                        h.bytes,
                        r
                    );
                }
                println!();
            }
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct PathLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    path: &'a path::FlowPath,
    roles: Vec<String>,
}

pub fn print_drops(f: &Follower, s: &super::common::Settings, fmt: Format) -> anyhow::Result<()> {
    let drops = drop_records(f, s)?;
    match fmt {
        Format::Json => {
            for d in &drops {
                output::json_line(&DropLine {
                    kind: "drop",
                    rec: d,
                })?;
            }
        }
        Format::Table | Format::Dot => {
            if drops.is_empty() {
                return Ok(());
            }
            let mut t = Table::new(&[
                "DROPPED AT",
                "REASON",
                "FREED IN",
                "PROTO",
                "SRC",
                "DST",
                "PACKETS",
                "RULE",
            ]);
            for d in &drops {
                let who = |s: String, e: Option<&crate::identity::Endpoint>| match e
                    .and_then(|e| e.name.as_deref())
                {
                    Some(n) => format!("{s} ({n})"),
                    None => s,
                };
                t.row(vec![
                    format!("{}/{}", d.netns_name, d.ifname),
                    d.reason.clone(),
                    d.location.clone(),
                    d.proto.clone(),
                    who(d.src_str(), d.src_endpoint.as_ref()),
                    who(d.dst_str(), d.dst_endpoint.as_ref()),
                    d.packets.to_string(),
                    d.rule.clone().unwrap_or_default(),
                ]);
            }
            println!();
            print!("{}", t.render());
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct DropLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    rec: &'a DropRecord,
}

/// Current records that pass the filter, busiest first.
pub fn records(f: &Follower, filter: &Filter) -> anyhow::Result<Vec<FlowRecord>> {
    let flows = f.probe.flows()?;
    let mut v: Vec<FlowRecord> = f.with_resolver(|r| {
        flows
            .iter()
            .filter(|(k, s)| s.packets > 0 && filter.matches(k))
            .map(|(k, s)| {
                let mut rec = FlowRecord::new(k, s, &f.names);
                rec.attribute(r);
                rec
            })
            .collect()
    })?;
    f.attribute_services(&mut v);
    if let Some(want) = &filter.service {
        v.retain(|r| r.service_name().as_ref() == Some(want));
    }
    v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.first_ns.cmp(&b.first_ns)));
    Ok(v)
}

fn print(
    f: &Follower,
    a: &Args,
    filter: &Filter,
    fmt: Format,
    refresh: bool,
) -> anyhow::Result<()> {
    let mut recs = records(f, filter)?;
    if a.top > 0 {
        recs.truncate(a.top);
    }
    if a.paths {
        if refresh && fmt == Format::Table && is_tty() {
            print!("\x1b[2J\x1b[H");
        }
        return print_paths(f, &path::stitch(&recs), fmt);
    }
    match fmt {
        Format::Json => {
            for r in &recs {
                output::json_line(&Line {
                    kind: "flow",
                    rec: r,
                })?;
            }
        }
        Format::Table | Format::Dot => {
            // Connections to Services get a column: the Service and the backend chosen.
            let svc_col = recs.iter().any(|r| r.service.is_some());
            let mut header = vec![
                "NETNS", "IFACE", "DIR", "PROTO", "SRC", "DST", "PACKETS", "BYTES", "FLAGS",
            ];
            if svc_col {
                header.push("SERVICE -> BACKEND");
            }
            let mut t = Table::new(&header);
            for r in &recs {
                let mut row = vec![
                    r.netns_name.clone(),
                    r.ifname.clone(),
                    r.direction.into(),
                    r.proto.clone(),
                    r.src_label(),
                    r.dst_label(),
                    r.packets.to_string(),
                    r.bytes.to_string(),
                    [
                        r.icmp_type
                            .zip(r.icmp_code)
                            .map(|(t, c)| crate::flows::icmp_name(r.proto == "icmp6", t, c))
                            .unwrap_or_default()
                            .as_str(),
                        r.tcp_flags.as_str(),
                        r.anomalies.as_str(),
                    ]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" "),
                ];
                if svc_col {
                    row.push(service_label(r));
                }
                t.row(row);
            }
            if refresh && is_tty() {
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", t.render());
            if refresh {
                println!();
            }
        }
    }
    Ok(())
}

/// `shop/web:http -> web-2 (198.18.30.4:8080)`, or "" for flows not to a Service.
#[must_use]
pub fn service_label(r: &FlowRecord) -> String {
    let (Some(s), Some(b)) = (&r.service, &r.backend) else {
        return String::new();
    };
    let spn = crate::services::spn(&s.namespace, &s.name, &s.port_name);
    match &b.workload {
        Some(w) => format!("{spn} -> {w} ({})", b.endpoint),
        None => format!("{spn} -> {}", b.endpoint),
    }
}

#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    rec: &'a FlowRecord,
}

/// Kernel-side counters (lost events, parse anomalies) and attach count.
pub fn print_stats(f: &Follower, fmt: Format) -> anyhow::Result<()> {
    let stats = f.probe.stats()?;
    let mut m = serde_json::Map::new();
    m.insert("type".into(), "stats".into());
    m.insert(
        "attached_interfaces".into(),
        f.probe.attached().count().into(),
    );
    for s in inspector_common::Stat::ALL {
        m.insert(s.name().into(), stats[s as usize].into());
    }
    match fmt {
        Format::Json => output::json_line(&m)?,
        Format::Table | Format::Dot => {
            let parts: Vec<String> = m
                .iter()
                .filter(|(k, _)| *k != "type")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            eprintln!("inspector: {}", parts.join(" "));
        }
    }
    Ok(())
}

fn is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(1) == 1 }
}
