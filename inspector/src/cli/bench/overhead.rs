//! `inspector bench overhead`: what the inspector costs next to no observer and tcpdump.
use crate::{
    bench::{LoadKind, overhead},
    cli::args::parse_secs,
    output::{self, Format, Printer},
    sys::signals::StopFlag,
};

#[derive(clap::Args, Debug)]
pub struct OverheadArgs {
    /// Repetitions (each runs every observer once); medians are over repetitions.
    #[arg(long)]
    pub repeat: Option<u16>,
    /// The old spelling of --repeat.
    #[arg(long, hide = true)]
    pub rounds: Option<u16>,
    /// Seconds of each measured run.
    #[arg(long, value_parser = parse_secs)]
    pub run_secs: Option<f64>,
    /// The old spelling of --run-secs.
    #[arg(long, hide = true, value_parser = parse_secs)]
    pub secs: Option<f64>,
    /// Workloads, comma-separated: udp-flood (built-in: pinned, sendmmsg, 32 MiB buffer),
    /// iperf3-udp (the same flood as a user runs it: plain iperf3, unpinned, default
    /// buffers), rr, stream (crr and udp-rr too); udp-drops (the flood to a closed port: a
    /// drop storm, counted by the kernel as it drops; with --bpf-stats the drop program's
    /// time per drop, the BTF tracepoint and the classic one side by side).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "udp-flood,iperf3-udp,rr,stream"
    )]
    pub workloads: Vec<String>,
    /// Extra argument for the observed `inspector flows` (repeatable), e.g.
    /// `--inspector-arg=--no-drops`.
    #[arg(long = "inspector-arg", allow_hyphen_values = true)]
    pub inspector_args: Vec<String>,
    /// The flood's receiver busy-polls instead of sleeping between batches: removes the
    /// wake-up IPIs that make the sender's rate swing, and shows per-packet cost more plainly.
    #[arg(long)]
    pub busy_poll: bool,
    /// Also observe with `inspector flows --latency` (per-hop times kept in the kernel) and
    /// with `--latency-from events` (an event per packet per hop, stitched in userspace), and
    /// report what each adds per hop.
    #[arg(long)]
    pub per_hop: bool,
    /// Also observe with `inspector flows --attach tc` (legacy tc filters, what kernels
    /// before 6.6 get), side by side with TCX.
    #[arg(long)]
    pub legacy_tc: bool,
    /// Also observe with the global hooks selecting only the host's namespace: what they
    /// cost on the lab's packets when its devices are not selected (node-wide cost).
    #[arg(long)]
    pub unselected: bool,
    /// Turn the kernel's BPF run-time statistics on for the run (restored after) and report
    /// the tc programs' own run time per run (they add ~50 ns of accounting to each).
    #[arg(long)]
    pub bpf_stats: bool,
}

pub fn run(a: &OverheadArgs, fmt: Format) -> anyhow::Result<()> {
    crate::probe::preflight::privileges()?;
    let mut workloads = Vec::new();
    for w in &a.workloads {
        let (w, note) = LoadKind::parse(w)?;
        if let Some(n) = note {
            eprintln!("inspector: note: {n}");
        }
        if !workloads.contains(&w) {
            workloads.push(w);
        }
    }
    let opts = overhead::Options {
        repeat: super::repeat(a.repeat, a.rounds, 5),
        run_secs: crate::cli::compat::renamed(a.run_secs, a.secs, ("--secs", "--run-secs"), 3.0),
        workloads,
        inspector_args: a.inspector_args.clone(),
        busy_poll: a.busy_poll,
        per_hop: a.per_hop,
        legacy_tc: a.legacy_tc,
        unselected: a.unselected,
        bpf_stats: a.bpf_stats,
        stop: StopFlag::register()?,
    };
    eprintln!(
        "inspector: bench overhead: {} repetitions x {} observers x {} workloads x {:.1} s",
        opts.repeat,
        opts.observers().len(),
        opts.workloads.len(),
        opts.run_secs
    );
    let mut p = Printer::stdout(fmt);
    let (_, summary) = overhead::run(&opts, |s| {
        if p.json() {
            let _ = p.record("overhead_sample", s);
        } else {
            eprintln!(
                "  repetition {} {:<9} {:<20} {:>14.2} {}",
                s.repetition + 1,
                s.workload.name(),
                s.observer.name(),
                s.value,
                s.unit
            );
        }
    })?;
    let per_hop = if a.per_hop {
        overhead::per_hop(&summary)
    } else {
        Vec::new()
    };
    output::bench::overhead(&mut p, &summary, &per_hop, &overhead::targets(&summary))?;
    Ok(())
}
