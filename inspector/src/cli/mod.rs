//! Command-line interface: flag definitions (clap) and dispatch, one file per subcommand.
//! Raw flags become validated settings in `common` before anything touches the kernel.
mod bench;
mod bench_modes;
mod common;
mod demo;
mod events;
mod explain;
mod flows;
mod lab;
mod path;
mod services;
mod topology;
mod trace;

use clap::{Parser, Subcommand};

use crate::output::Format;

#[derive(Parser, Debug)]
#[command(
    name = "inspector",
    version,
    about = "eBPF container network inspector: who talks to whom, through which hops"
)]
pub struct Cli {
    /// Output format: aligned table, one JSON object per line, or Graphviz (topology).
    #[arg(short = 'o', long = "output", value_enum, global = true, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Live per-packet events, hop by hop.
    Trace(trace::Args),
    /// Per-flow counters at every hop: refreshed, or once after --duration.
    Flows(flows::Args),
    /// The node's map: containers and pods with their mode, namespace, veth pairs, bridges,
    /// addresses, routes and published ports; then every namespace and its links.
    Topology(topology::Args),
    /// Build the embedded demo lab, drive bounded traffic through it, show each flow's path,
    /// and remove everything.
    Demo(demo::Args),
    /// A container's, pod's or lab workload's network mode, with its live kernel objects and
    /// the hops of its packets (to the bridge, out of the node, into a published port).
    Explain(explain::Args),
    /// Namespaces and veths appearing and disappearing as containers start and stop, each
    /// named; and the runtimes' container events.
    Events(events::Args),
    /// The four-mode lab: Docker's bridge, host, none and container modes in namespaces.
    Lab(lab::Args),
    /// Kubernetes Services as kube-proxy programmed them (iptables or nftables mode): frontend,
    /// endpoints and chains, read from the live rules of the host and of lab nodes.
    Services(services::Args),
    /// One probe connection (or the next real one, --watch) from a workload or namespace to
    /// an address, Service or workload, hop by hop: interfaces, kube-proxy's NAT (Service
    /// chain -> endpoint chain -> pod), masquerade, and the verdict with drop reason.
    Path(path::Args),
    /// Benchmarks: network modes side by side (the default), and what the inspector costs
    /// (overhead, scale, pipeline, services).
    Bench(bench::Args),
}

/// Parses the command line and runs the chosen command. Usage errors become one line
/// (`inspector: error: ...`) and exit code 2; --help and --version print as usual.
pub fn run() -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            eprintln!("inspector: error: {first} (see `inspector --help`)");
            std::process::exit(2);
        }
    };
    if cli.output == Format::Dot && !matches!(cli.command, Command::Topology(_)) {
        eprintln!("inspector: error: -o dot is only for `inspector topology`");
        std::process::exit(2);
    }
    match cli.command {
        Command::Trace(a) => trace::run(&a, cli.output),
        Command::Flows(a) => flows::run(&a, cli.output),
        Command::Topology(a) => topology::run(&a, cli.output),
        Command::Demo(a) => demo::run(&a, cli.output),
        Command::Bench(a) => bench::run(&a, cli.output),
        Command::Lab(a) => lab::run(&a, cli.output),
        Command::Explain(a) => explain::run(&a, cli.output),
        Command::Events(a) => events::run(&a, cli.output),
        Command::Services(a) => services::run(&a, cli.output),
        Command::Path(a) => path::run(&a, cli.output),
    }
}
