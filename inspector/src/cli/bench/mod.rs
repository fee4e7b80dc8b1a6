//! `inspector bench`: the same workloads over every network mode, side by side (the
//! default, `modes`); and `overhead`, `scale`, `services`, `pipeline`, `agent`. See
//! docs/benchmarks.md and docs/overhead.md. Vocabulary shared by all: `--repeat` (how many
//! times everything runs), `--run-secs` (one run's length), `--workloads` (rr, crr, stream,
//! udp-rr, udp-flood).
mod agent;
mod capture;
mod modes;
mod overhead;
mod pipeline;
mod scale;
mod services;

use super::args::Form;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub what: Option<What>,
    /// Without a subcommand: `bench modes`.
    #[command(flatten)]
    pub modes: modes::ModesArgs,
    /// Output format: aligned table, or JSON (one document for `modes`, one object per
    /// line for the others).
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value_t,
        global = true
    )]
    pub output: Form,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// The same workloads over each network mode (host, bridge, container, none, published
    /// port, a Service's cluster IP through kube-proxy iptables and nftables at
    /// 1/1,000/10,000 Services), interleaved over repetitions; medians, spread, per-hop
    /// in-kernel time. The default.
    Modes(modes::ModesArgs),
    /// The small-packet UDP flood, TCP request/response and a TCP stream with no observer,
    /// with the inspector and with tcpdump, interleaved; medians and ratios.
    Overhead(overhead::OverheadArgs),
    /// Identity resolution and attach time for N workloads (a lab of N bridge-mode
    /// namespaces with veth pairs and cgroups); medians over repetitions.
    Scale(scale::ScaleArgs),
    /// The userspace event pipeline (decode, filter, stitch, per-hop histograms) fed by a
    /// synthetic producer: events/s on one core, and loss at a paced rate through a ring of
    /// the kernel ring's size.
    Pipeline(pipeline::PipelineArgs),
    /// Parse time of kube-proxy's rules for N Services x M endpoints (iptables-save text and
    /// nft JSON, programmed into a scratch namespace and dumped back); medians over
    /// repetitions.
    Services(services::ServicesArgs),
    /// Capture files written at the small-packet flood's rate: the inspector (`trace -w`)
    /// and tcpdump (`-w`) on the same two interfaces, side by side with no observer; rate
    /// kept, events and bytes written per second, loss counted exactly against the
    /// kernel's interface counters.
    Capture(capture::CaptureArgs),
    /// The agent's own footprint: CPU and memory at rest, with many flows, under the
    /// small-packet flood; the time of a scrape of /metrics (ours, and as ps and curl say).
    Agent(agent::AgentArgs),
    /// Keeps a container of `bench --runtime docker` alive (its one process) until stopped.
    #[command(hide = true)]
    Hold,
}

/// The process of a bench container: waits for SIGTERM or SIGINT (as PID 1 it needs the
/// handlers to be stopped by them at all).
fn hold() -> anyhow::Result<()> {
    let stop = crate::sys::signals::StopFlag::register()?;
    while !stop.raised() {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let fmt = a.output.into();
    match &a.what {
        Some(What::Overhead(o)) => overhead::run(o, fmt),
        Some(What::Scale(s)) => scale::run(s, fmt),
        Some(What::Services(s)) => services::run(s, fmt),
        Some(What::Agent(s)) => agent::run(s, fmt),
        Some(What::Pipeline(p)) => pipeline::run(p, fmt),
        Some(What::Capture(c)) => capture::run(c, fmt),
        Some(What::Modes(m)) => modes::run(m, fmt),
        Some(What::Hold) => hold(),
        None => modes::run(&a.modes, fmt),
    }
}

/// `--repeat`, or the old `--rounds` (with its note); at least 1.
fn repeat(new: Option<u16>, old: Option<u16>, default: u16) -> usize {
    usize::from(super::compat::renamed(new, old, ("--rounds", "--repeat"), default).max(1))
}
