//! `inspector agent`: the long-running front-end (see `agent`): the session of `flows`,
//! served over HTTP as Prometheus metrics, health and a JSON API.
use std::time::Duration;

use super::args::{self, FilterArgs};
use crate::session::{Measure, Sampling};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Where to serve /metrics, /healthz, /readyz and /api/*. The default answers on this
    /// host only; give an address (e.g. `0.0.0.0:9590`, for a Prometheus on another host to
    /// reach it) to expose it.
    #[arg(long, default_value = "127.0.0.1:9590")]
    pub listen: std::net::SocketAddr,
    /// Seconds between rounds (reading the kernel's counters into the metrics).
    #[arg(long, default_value_t = 1.0, value_parser = args::parse_secs)]
    pub interval: f64,
    /// The `node` label (default: this host's name).
    #[arg(long)]
    pub node: Option<String>,
    /// Label sets per metric family; beyond it samples count under `other`
    /// (`inspector_series_folded_total` says how many).
    #[arg(long, default_value_t = 10_000)]
    pub max_series: usize,
    /// Leave per-hop timing off (no `inspector_hop_latency_seconds`, nothing added per
    /// packet for it). On, the kernel times packets from hop to hop into histograms, with
    /// the auto sampling of `flows --latency`.
    #[arg(long)]
    pub no_latency: bool,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_owned())
}

/// The agent's safety-net rescan: what the kernel announces (links and addresses of every
/// namespace the root one has an id for) is followed at once; the period catches the rest.
const AGENT_RESCAN_MS: u64 = 10_000;

pub fn run(a: &Args) -> anyhow::Result<()> {
    let mut opts = a.filter.options()?;
    opts.lifecycle = true;
    if !a.no_latency {
        opts.measure = Measure::HopTiming {
            sample: Sampling::Auto,
            stack: false,
        };
    }
    crate::agent::run(
        &opts,
        &crate::agent::Options {
            listen: a.listen,
            interval: Duration::from_secs_f64(a.interval),
            node: a.node.clone().unwrap_or_else(hostname),
            max_series: a.max_series.max(1),
            rescan: a.filter.rescan_or(AGENT_RESCAN_MS),
        },
    )
}
