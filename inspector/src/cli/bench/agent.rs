//! `inspector bench agent`: the agent's CPU, memory and scrape time at rest, with many
//! flows, and under a flood.
use crate::{
    bench::agent::{self, AgentBench},
    output::{self, Format, Printer},
    sys::signals::StopFlag,
};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Workloads in the lab (bridge-mode namespaces), 2..2000.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(2..=2000))]
    pub workloads: u16,
    /// Distinct UDP 5-tuples sent in the flows phase (each is counted at 4 hooks).
    #[arg(long, default_value_t = 25_000, value_parser = clap::value_parser!(u32).range(1..=250_000))]
    pub flows: u32,
    /// Each phase's window, seconds.
    #[arg(long, default_value_t = 10.0, value_parser = super::super::args::parse_secs)]
    pub run_secs: f64,
    /// The agent's --interval, seconds.
    #[arg(long, default_value_t = 1.0, value_parser = super::super::args::parse_secs)]
    pub interval: f64,
    /// Scrapes of /metrics timed per phase.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub scrapes: u16,
    /// A flag for the measured agent (repeatable), e.g. `--agent-arg=--no-latency`.
    #[arg(long = "agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

pub fn run(a: &AgentArgs, fmt: Format) -> anyhow::Result<()> {
    crate::probe::preflight::privileges()?;
    let stop = StopFlag::register()?;
    let o = AgentBench {
        workloads: usize::from(a.workloads),
        flows: a.flows as usize,
        secs: a.run_secs,
        interval: a.interval,
        scrapes: usize::from(a.scrapes),
        agent_args: a.extra.clone(),
    };
    eprintln!(
        "inspector: bench agent: {} workloads, {} flows, 3 phases x {:.0} s",
        o.workloads, o.flows, o.secs
    );
    let phases = agent::run(&o, stop.flag(), |p| {
        eprintln!(
            "inspector: {}: cpu {:.2}% (ps {:.2}%), rss {:.1} MiB, {} flow records, {} series, scrape {:.1} ms",
            p.phase,
            p.cpu_percent,
            p.ps_cpu_percent,
            p.rss_mib,
            p.flow_records,
            p.series,
            p.scrape_p50_ms
        );
    })?;
    output::bench::agent(&mut Printer::stdout(fmt), &phases)?;
    Ok(())
}
