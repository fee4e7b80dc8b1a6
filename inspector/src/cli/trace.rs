//! `inspector trace`: one line per packet per hook (or, with --hops, one per packet with its
//! hops), filtered in the kernel, named; lifecycle events with --events; drops and the
//! kernel's counters at the end. Events lost to a full ring buffer are counted and reported.
use std::time::{Duration, Instant};

use super::args::{self, FilterArgs, Output};
use crate::{
    output::{self, Printer},
    probe::EventReader,
    session::{Measure, Session, Ticker, trace::Tracer},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub out: Output,
    /// Stop after this many seconds.
    #[arg(long, value_parser = args::parse_secs)]
    pub duration: Option<f64>,
    /// Stop after this many packets (as tcpdump's -c): every hook a counted packet crosses
    /// is shown.
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

pub fn run(a: &Args) -> anyhow::Result<()> {
    let mut opts = a.filter.options()?;
    opts.measure = Measure::Events {
        ring_bytes: a.ring_kib * 1024,
        stack: a.hops && !a.tc_only,
        hops: a.hops,
    };
    opts.lifecycle = a.events;
    let (mut s, changes) = Session::start(&opts)?;
    args::log_changes(&changes, a.filter.quiet);
    let mut tracer = Tracer::new(&mut s, a.hops, a.count)?;
    let mut p = Printer::stdout(a.out.output.into());
    let mut ticker = Ticker::new(a.duration.map(Duration::from_secs_f64), a.filter.rescan())?;
    let start_ns = crate::sys::time::mono_now_ns();
    if !a.hops {
        output::trace::header(&mut p)?;
    }
    while !ticker.stopped() && !tracer.done() {
        let mut fds = vec![tracer.fd()];
        fds.extend(s.fds());
        ticker.wait(&fds, Some(Instant::now() + EventReader::POLL));
        drop(fds);
        if s.announced() {
            ticker.rescan_soon();
        }
        s.tick()?;
        for item in tracer.poll(&s)? {
            output::trace::render(&mut p, &item, start_ns)?;
        }
        if ticker.rescan_due() {
            s.sync_clock();
            args::log_changes(&s.reconcile(), a.filter.quiet);
            for e in s.take_lifecycle() {
                output::lifecycle::render(&mut p, &e)?;
            }
        }
        args::log_notes(&s);
    }
    for item in tracer.finish(&s)? {
        output::trace::render(&mut p, &item, start_ns)?;
    }
    output::drops::render(&mut p, &s.drops()?)?;
    output::stats::render(&mut p, &s.stats()?)?;
    Ok(())
}
