//! `inspector flows`: per-flow, per-hop counters, refreshed like `top`, or printed once after
//! `--duration` (or when interrupted); as paths with --paths; per-hop latency with
//! --latency; then the drops and the kernel's counters.
use std::time::{Duration, Instant};

use super::args::{self, FilterArgs, Output};
use crate::{
    output::{self, Printer, flows::SnapshotMark},
    session::{Measure, Sampling, Session, Ticker},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub out: Output,
    /// Print once after this many seconds (or when interrupted) instead of refreshing.
    #[arg(long, value_parser = args::parse_secs)]
    pub duration: Option<f64>,
    /// Refresh interval in seconds (refreshing mode).
    #[arg(long, default_value_t = 1.0, value_parser = args::parse_secs)]
    pub interval: f64,
    /// Show at most this many flows per refresh (busiest first; 0 = all).
    #[arg(long, default_value_t = 0)]
    pub top: usize,
    /// Show each flow as the path it took (hops in the order they first saw it), not one
    /// line per hop.
    #[arg(long)]
    pub paths: bool,
    /// Per-hop latency: p50/p90/p99/max/mean of the time from each hop to the next, per
    /// endpoint pair (the addresses where the packet was first seen).
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
    /// fewer (1 in 2, 4, ...) above, re-set every 250 ms (each change said on stderr).
    #[arg(long, default_value = "auto", value_parser = parse_sample)]
    pub latency_sample: SampleArg,
    /// With `--latency` (kernel): also time the stack's own hooks on the same interfaces -
    /// `net_dev_queue` and `net_dev_start_xmit` (the time between them is the qdisc's) and
    /// `netif_receive_skb` (`tp_btf`; they run for every packet on the node while on).
    #[arg(long, requires = "latency")]
    pub stack: bool,
}

/// See `Args::latency_sample`.
#[derive(Clone, Copy, Debug)]
pub struct SampleArg(Sampling);

fn parse_sample(s: &str) -> Result<SampleArg, String> {
    if s == "auto" {
        return Ok(SampleArg(Sampling::Auto));
    }
    match s.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= 1 << inspector_common::hop::HOP_MAX_SHIFT => {
            Ok(SampleArg(Sampling::Shift(n.trailing_zeros())))
        }
        _ => Err(format!(
            "'{s}' is neither 'auto' nor a power of two from 1 to 1024 (e.g. 1, 8, 64)"
        )),
    }
}

/// See `Args::latency_from`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyFrom {
    Kernel,
    Events,
}

fn measure(a: &Args) -> anyhow::Result<Measure> {
    Ok(match (a.latency, a.latency_from) {
        (false, _) => Measure::Flows,
        (true, LatencyFrom::Events) if a.stack => anyhow::bail!(
            "--stack times the stack's hooks in the kernel: use it without --latency-from events \
             (or see them per packet with `trace --hops`)"
        ),
        (true, LatencyFrom::Events) => Measure::LatencyFromEvents {
            ring_bytes: 8 << 20,
        },
        (true, LatencyFrom::Kernel) => Measure::HopTiming {
            sample: a.latency_sample.0,
            stack: a.stack,
        },
    })
}

/// One snapshot: flows (or paths), JSON-marked with its number. Flows are named as they
/// are written (memory stays flat with their number); paths need them all at once.
fn snapshot(s: &Session, a: &Args, p: &mut Printer, seq: u64, last: bool) -> anyhow::Result<()> {
    let mut flows = s.flow_table()?;
    if a.top > 0 {
        flows.truncate(a.top);
    }
    let refresh = !last;
    let mut mark = SnapshotMark {
        seq,
        time_unix_ns: s.wall_clock().unix_ns(crate::sys::time::mono_now_ns()),
        last,
        records: flows.len(),
    };
    if a.paths {
        let paths = s.paths_of(&flows.collect()?);
        mark.records = paths.len();
        output::flows::snapshot(p, &mark)?;
        output::paths::render(p, &paths, refresh)?;
    } else {
        output::flows::snapshot(p, &mark)?;
        output::flows::render(p, &flows, refresh)?;
    }
    args::log_notes(s);
    Ok(())
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let mut opts = a.filter.options()?;
    opts.measure = measure(a)?;
    let (mut s, changes) = Session::start(&opts)?;
    args::log_changes(&changes, a.filter.quiet);
    let mut p = Printer::stdout(a.out.output.into());
    let mut ticker = Ticker::new(a.duration.map(Duration::from_secs_f64), a.filter.rescan())?;
    let interval = Duration::from_secs_f64(a.interval);
    let mut next_print = Instant::now() + interval;
    let once = a.duration.is_some();
    let mut seq = 0;
    while !ticker.stopped() {
        let until = [(!once).then_some(next_print), s.next_due()]
            .into_iter()
            .flatten()
            .min();
        ticker.wait(&s.fds(), until);
        if s.announced() {
            ticker.rescan_soon();
        }
        if let Some(change) = s.tick()?
            && !a.filter.quiet
        {
            eprintln!("inspector: {change}");
        }
        if ticker.rescan_due() {
            s.sync_clock();
            args::log_changes(&s.reconcile(), a.filter.quiet);
        }
        if !once && Instant::now() >= next_print {
            next_print += interval;
            seq += 1;
            snapshot(&s, a, &mut p, seq, false)?;
        }
    }
    args::log_changes(&s.settle(), a.filter.quiet);
    // Final snapshot: in --duration mode this is the result; interrupted refreshes get one too.
    snapshot(&s, a, &mut p, seq + 1, true)?;
    if let Some(rows) = s.latency_rows()? {
        output::latency::render(&mut p, &rows, s.latency_sampling().as_ref())?;
    }
    output::drops::render(&mut p, &s.drops()?)?;
    output::stats::render(&mut p, &s.stats()?)?;
    Ok(())
}
