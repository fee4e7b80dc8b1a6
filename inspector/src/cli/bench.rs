//! `inspector bench overhead`: what attaching the inspector to every hop costs, next to what
//! tcpdump costs on the same interfaces, on the same run. See docs/benchmarks.md.
use crate::{
    bench::{self, Observer, Workload},
    output::{self, Format, Table},
    probe::preflight,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Small-packet UDP, TCP request/response and bulk TCP with no observer, with the
    /// inspector and with tcpdump, interleaved; medians and ratios.
    Overhead(OverheadArgs),
}

#[derive(clap::Args, Debug)]
pub struct OverheadArgs {
    /// Rounds (each runs every observer once); medians are over rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0, value_parser = super::common::parse_secs)]
    pub secs: f64,
    /// Workloads to run: udp, rr, bulk (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "udp,rr,bulk")]
    pub workloads: Vec<String>,
    /// Extra argument for the observed `inspector flows` (repeatable), e.g.
    /// `--inspector-arg=--no-drops`.
    #[arg(long = "inspector-arg", allow_hyphen_values = true)]
    pub inspector_args: Vec<String>,
    /// Small-packet receiver busy-polls instead of sleeping between batches: removes the
    /// wake-up IPIs that make the sender's rate swing, and shows per-packet cost more plainly.
    #[arg(long)]
    pub busy_poll: bool,
}

/// Targets from the foundation issue: (workload, max overhead %).
const TARGETS: [(Workload, f64); 3] = [
    (Workload::UdpSmall, 3.0),
    (Workload::TcpRr, 2.0),
    (Workload::TcpBulk, 1.0),
];

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    let What::Overhead(o) = &a.what;
    preflight::privileges()?;
    if o.rounds == 0 {
        anyhow::bail!("--rounds must be at least 1");
    }
    let workloads = o
        .workloads
        .iter()
        .map(|w| match w.as_str() {
            "udp" => Ok(Workload::UdpSmall),
            "rr" => Ok(Workload::TcpRr),
            "bulk" => Ok(Workload::TcpBulk),
            other => Err(anyhow::anyhow!(
                "unknown workload '{other}': use udp, rr or bulk"
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stop = super::common::stop_flag()?;
    let opts = bench::Options {
        rounds: o.rounds,
        secs: o.secs,
        workloads,
        stop,
        inspector_args: o.inspector_args.clone(),
        busy_poll: o.busy_poll,
    };
    eprintln!(
        "inspector: bench overhead: {} rounds x {} observers x {} workloads x {:.1} s",
        opts.rounds,
        Observer::ALL.len(),
        opts.workloads.len(),
        opts.secs
    );
    let (_samples, summary) = bench::overhead(&opts, |s| {
        if fmt == Format::Json {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["type"] = "sample".into();
            let _ = output::json_line(&v);
        } else {
            eprintln!(
                "  round {} {:<9} {:<9} {:>14.2} {}",
                s.round + 1,
                s.workload.name(),
                s.observer.name(),
                s.value,
                s.workload.unit()
            );
        }
    })?;
    match fmt {
        Format::Json => {
            for s in &summary {
                output::json_line(s)?;
            }
        }
        Format::Table | Format::Dot => {
            let mut t = Table::new(&[
                "WORKLOAD", "OBSERVER", "MEDIAN", "MIN", "MAX", "UNIT", "RATIO", "OVERHEAD",
            ]);
            for s in &summary {
                t.row(vec![
                    s.workload.name().into(),
                    s.observer.name().into(),
                    format!("{:.2}", s.median),
                    format!("{:.2}", s.min),
                    format!("{:.2}", s.max),
                    s.unit.into(),
                    format!("{:.4}", s.ratio),
                    format!("{:+.2}%", s.overhead_pct),
                ]);
            }
            print!("{}", t.render());
            println!();
            for (w, target) in TARGETS {
                let get = |o: Observer| summary.iter().find(|s| s.workload == w && s.observer == o);
                let (Some(i), Some(t)) = (get(Observer::Inspector), get(Observer::Tcpdump)) else {
                    continue;
                };
                let share = if t.overhead_pct > 0.0 {
                    i.overhead_pct / t.overhead_pct
                } else {
                    f64::NAN
                };
                println!(
                    "{:<9} inspector {:+.2}% (target <= {target}%: {})  tcpdump {:+.2}%  inspector/tcpdump overhead {:.2} (target <= 0.25: {})",
                    w.name(),
                    i.overhead_pct,
                    if i.overhead_pct <= target {
                        "met"
                    } else {
                        "MISSED"
                    },
                    t.overhead_pct,
                    share,
                    if share <= 0.25 { "met" } else { "MISSED" },
                );
            }
        }
    }
    Ok(())
}
