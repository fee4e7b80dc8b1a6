//! `inspector trace`: one line per packet per hook (or, with --hops, one per packet with its
//! hops), filtered in the kernel, named; lifecycle events with --events; drops and the
//! kernel's counters at the end. Events lost to a full ring buffer are counted and reported.
use std::time::{Duration, Instant};

use super::args::{self, FilterArgs, Output};
use crate::{
    output::{
        self, Printer,
        capture::SNAP_MAX,
        files::{Files, Rotate},
    },
    probe::EventReader,
    session::{
        Measure, Session, Ticker,
        replay::{self, Selection},
        trace::{TraceItem, Tracer},
    },
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
    /// Default 8192, and 65536 with -w (a capture writes every event: a deeper ring rides
    /// out the moments its writer is not scheduled).
    #[arg(long, value_parser = parse_ring_kib)]
    pub ring_kib: Option<u32>,
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
    /// Write the packets to this capture file instead of printing them (`-` for stdout, as
    /// in `inspector trace -w - | tshark -r -`): pcapng, one interface per namespace and
    /// device (`netns/ifname`), each packet at each hook with its direction and a comment
    /// naming the hook, the workloads, the Service and the NAT. Whole packets up to 16384
    /// bytes are kept (see -s). The end summary goes to stderr.
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE",
        conflicts_with = "hops"
    )]
    pub write: Option<std::path::PathBuf>,
    /// With -w: classic pcap (nanosecond timestamps; no interfaces or comments) for tools
    /// that cannot read pcapng.
    #[arg(long, requires = "write")]
    pub pcap: bool,
    /// With -w: keep at most this many bytes of each packet (1-16384, default 16384: whole
    /// frames up to jumbo MTUs), as tcpdump's -s. The original length is recorded either
    /// way. The kernel copies no more than this; up to 128 costs least (fixed-size
    /// records). The global hooks read a packet's linear part only (its head; data in
    /// pages past it is not copied): `--attach tcx` copies paged data too.
    #[arg(short = 's', long, requires = "write", value_parser = parse_snaplen)]
    pub snaplen: Option<u32>,
    /// Read packets from this capture file (pcapng or pcap; `-` for stdin) instead of the
    /// kernel, and print them as `trace` does (or write them again with -w), with the same
    /// filters: the expression, --proto/--host/--port, --netns and -i (against the
    /// `netns/ifname` interface names of the inspector's files), -c. Needs no privileges.
    /// With -w FILE: start a new file once the current one holds this many million bytes
    /// (as tcpdump's -C): FILE, FILE1, FILE2, ...
    #[arg(short = 'C', long = "file-size", value_name = "MB", requires = "write", value_parser = clap::value_parser!(u64).range(1..))]
    pub file_size: Option<u64>,
    /// With -w FILE: start a new file when a packet comes this many seconds after the
    /// current one was opened (as tcpdump's -G). FILE may hold strftime fields (%Y %m %d
    /// %H %M %S, UTC); without any, files are numbered as with -C.
    #[arg(short = 'G', long = "rotate-seconds", value_name = "SECS", requires = "write", value_parser = clap::value_parser!(u64).range(1..))]
    pub rotate_seconds: Option<u64>,
    #[arg(short = 'r', long = "read", value_name = "FILE", conflicts_with_all = ["hops", "events", "duration"])]
    pub read: Option<std::path::PathBuf>,
}

fn parse_snaplen(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if (1..=SNAP_MAX).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a snap length from 1 to {SNAP_MAX} (the kernel copies at most {SNAP_MAX} bytes of a packet)"
        )),
    }
}

impl Args {
    /// Bytes kept of each packet: -s, or whole packets (up to `SNAP_MAX`) with -w; none
    /// without -w (the text shows headers, which the fixed records hold).
    fn snaplen(&self) -> u32 {
        if self.write.is_some() {
            self.snaplen.unwrap_or(SNAP_MAX)
        } else {
            0
        }
    }
}

fn parse_ring_kib(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if v >= 4 && v.is_power_of_two() && v <= 1 << 20 => Ok(v),
        _ => Err(format!("'{s}' is not a power of two between 4 and 1048576")),
    }
}

/// `-r FILE`: the file's packets, selected, printed or written again.
fn replay(a: &Args, path: &std::path::Path) -> anyhow::Result<()> {
    let filter = a.filter.filter()?;
    let sel = Selection {
        filter: &filter,
        netns: &a.filter.netns,
        interfaces: &a.filter.interface,
    };
    let mut capture = open_capture(a)?;
    let text: Box<dyn std::io::Write> = if capture.is_some() {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut p = Printer::new(a.out.output.into(), text);
    let mut start = None;
    let mut shown = 0u64;
    let mut failed = None;
    let total = replay::read(path, &sel, |pkt| {
        if a.count.is_some_and(|c| shown >= c) {
            return Ok(false);
        }
        shown += 1;
        if start.is_none()
            && capture.is_none()
            && let Err(e) = output::trace::header(&mut p)
        {
            failed = Some(e.into());
            return Ok(false);
        }
        let start_ns = *start.get_or_insert(pkt.ts_ns);
        let item = TraceItem::Packet(Box::new(pkt));
        if let Err(e) = emit(
            &mut p,
            capture.as_mut(),
            std::slice::from_ref(&item),
            start_ns,
        ) {
            failed = Some(e);
            return Ok(false);
        }
        Ok(true)
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if shown == 0 && capture.is_none() {
        output::trace::header(&mut p)?;
    }
    if !a.filter.quiet {
        eprintln!(
            "inspector: {shown} packets {} ({total} read from {})",
            match &capture {
                Some(c) => format!("written to {}", written_to(c)),
                None => "shown".to_owned(),
            },
            path.display()
        );
    }
    Ok(())
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    if let Some(path) = &a.read {
        return replay(a, path);
    }
    let mut opts = a.filter.options()?;
    opts.measure = Measure::Events {
        ring_bytes: a
            .ring_kib
            .unwrap_or(if a.write.is_some() { 65536 } else { 8192 })
            * 1024,
        stack: a.hops && !a.tc_only,
        hops: a.hops,
        snaplen: a.snaplen(),
    };
    opts.lifecycle = a.events;
    // The file first, so a path that cannot be written fails before anything is attached;
    // if the session cannot start, the file goes again.
    let mut capture = open_capture(a)?;
    let (mut s, changes) = match Session::start(&opts) {
        Ok(started) => started,
        Err(e) => {
            if let Some(c) = capture {
                c.discard();
            }
            return Err(e.into());
        }
    };
    args::log_changes(&changes, a.filter.quiet);
    let mut tracer = Tracer::new(&mut s, a.hops, a.count)?;
    if capture.is_some() {
        tracer.reuse();
    }
    // With a capture file the text (the end summary) goes to stderr: stdout may be the file.
    let text: Box<dyn std::io::Write> = if capture.is_some() {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut p = Printer::new(a.out.output.into(), text);
    let mut ticker = Ticker::new(a.duration.map(Duration::from_secs_f64), a.filter.rescan())?;
    let start_ns = crate::sys::time::mono_now_ns();
    if !a.hops && capture.is_none() {
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
        emit(&mut p, capture.as_mut(), &tracer.poll(&s)?, start_ns)?;
        if ticker.rescan_due() {
            s.sync_clock();
            args::log_changes(&s.reconcile(), a.filter.quiet);
            for e in s.take_lifecycle() {
                output::lifecycle::render(&mut p, &e)?;
            }
        }
        args::log_notes(&s);
    }
    args::log_changes(&s.settle(), a.filter.quiet);
    emit(&mut p, capture.as_mut(), &tracer.finish(&s)?, start_ns)?;
    if let (Some(c), false) = (&capture, a.filter.quiet) {
        eprintln!(
            "inspector: {} packets written to {}",
            c.packets,
            written_to(c)
        );
    }
    output::drops::render(&mut p, &s.drops()?)?;
    output::stats::render(&mut p, &s.stats()?)?;
    Ok(())
}

/// Where packets go: printed, or written to the capture file.
fn emit<W: std::io::Write>(
    p: &mut Printer<W>,
    capture: Option<&mut Files>,
    items: &[TraceItem],
    start_ns: u64,
) -> anyhow::Result<()> {
    let Some(c) = capture else {
        for item in items {
            output::trace::render(p, item, start_ns)?;
        }
        return Ok(());
    };
    let mut write = || -> std::io::Result<()> {
        for item in items {
            match item {
                TraceItem::Packet(x) => c.write(x)?,
                TraceItem::Again(first, again) => c.write_again(first, again)?,
                TraceItem::Hops(_) => {}
            }
        }
        if !items.is_empty() {
            c.flush()?;
        }
        Ok(())
    };
    // A full disk ends the trace with the file's name, in one line; a closed pipe too, and
    // `main` ends quietly on it (the error keeps its cause).
    write().map_err(|e| {
        anyhow::Error::new(e).context(format!("writing the capture {}", c.current_name()))
    })
}

/// The capture output of `-w` (`-`: stdout), its first header written; none without -w.
fn open_capture(a: &Args) -> anyhow::Result<Option<Files>> {
    let Some(path) = a.write.as_deref() else {
        return Ok(None);
    };
    let rotate = Rotate {
        secs: a.rotate_seconds,
        bytes: a.file_size.map(|m| m * 1_000_000),
    };
    if path.as_os_str() == "-" && (rotate.secs.is_some() || rotate.bytes.is_some()) {
        anyhow::bail!("-C and -G rotate files: give -w a file name, not '-'");
    }
    Ok(Some(Files::open(path, a.pcap, a.snaplen(), rotate)?))
}

/// "FILE" or "FILE .. FILE3 (4 files)", or "stdout".
fn written_to(c: &Files) -> String {
    match c.files.as_slice() {
        [] => "stdout".to_owned(),
        [one] => one.display().to_string(),
        [first, .., last] => format!(
            "{} .. {} ({} files)",
            first.display(),
            last.display(),
            c.files.len()
        ),
    }
}
