//! Command-line interface: flags (clap) turned into validated options, then one call into
//! the library and one into `output` per record; one file per subcommand. `-o` is each
//! command's own (with the formats that command has); `inspector -o json CMD ...` still
//! works: a leading `-o` is moved after the subcommand before parsing.
mod agent;
mod args;
mod bench;
mod cleanup;
mod compat;
mod demo;
mod events;
mod explain;
mod flows;
mod lab;
mod path;
mod services;
mod status;
mod topology;
mod trace;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "inspector",
    version,
    about = "eBPF container network inspector: who talks to whom, through which hops"
)]
pub struct Cli {
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
    /// Labs: Docker's four network modes, or a Kubernetes node, rebuilt in namespaces.
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
    /// The long-running node agent: the session of `flows`, served over HTTP as Prometheus
    /// metrics (/metrics), health (/healthz, /readyz) and a JSON API (/api/flows, /api/drops,
    /// /api/stats).
    Agent(agent::Args),
    /// What works on this node and why: kernel, lockdown, privileges, cgroups, the attach
    /// mode, runtimes, kube-proxy's mode, and each kernel feature with what is lost without
    /// it. The first command to run on a new node.
    Status(status::Args),
    /// Remove what an inspector that was killed left behind (legacy tc filters of ours and
    /// the clsact qdiscs it created), never anyone else's.
    Cleanup(cleanup::Args),
}

/// `inspector -o json CMD [SUB] ...` -> `inspector CMD [SUB] -o json ...`: a leading output
/// flag goes after the (nested) subcommand, where each command declares its own.
fn normalize(mut argv: Vec<String>) -> Vec<String> {
    use clap::CommandFactory as _;
    let mut moved = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        if a == "-o" || a == "--output" {
            let end = (i + 2).min(argv.len());
            moved.extend(argv.drain(i..end));
        } else if a.starts_with("--output=") || (a.starts_with("-o") && a.len() > 2) {
            moved.push(argv.remove(i));
        } else if a.starts_with('-') {
            // A global flag such as --help or --version: leave it.
            i += 1;
        } else {
            // The subcommand, and its subcommand if one follows (`bench overhead`).
            let cli = Cli::command();
            let mut at = cli.find_subcommand(a);
            let mut end = i + 1;
            while let Some(sub) = argv
                .get(end)
                .and_then(|next| at.and_then(|c| c.find_subcommand(next)))
            {
                at = Some(sub);
                end += 1;
            }
            argv.splice(end..end, moved);
            return argv;
        }
    }
    argv.extend(moved);
    argv
}

/// A clap error as one line (with the allowed values for a bad value).
fn one_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let text = e.render().to_string();
    let mut lines = text.lines();
    let mut first = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    // A heading ending in ':' lists what it means on the indented lines after it.
    if first.ends_with(':') {
        let listed: Vec<&str> = lines
            .take_while(|l| l.starts_with("  "))
            .map(str::trim)
            .collect();
        first = format!("{first} {}", listed.join(", "));
    }
    match e.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(v)) if !v.is_empty() => {
            format!("{first}: use {}", v.join(", "))
        }
        _ => first,
    }
}

/// Parses the command line and runs the chosen command. Usage errors become one line
/// (`inspector: error: ...`) and exit code 2; --help and --version print as usual.
pub fn run() -> anyhow::Result<()> {
    let argv = normalize(std::env::args().collect());
    let cli = match Cli::try_parse_from(argv) {
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
            eprintln!(
                "inspector: error: {} (see `inspector --help`)",
                one_line(&e)
            );
            std::process::exit(2);
        }
    };
    match cli.command {
        Command::Trace(a) => trace::run(&a),
        Command::Flows(a) => flows::run(&a),
        Command::Topology(a) => topology::run(&a),
        Command::Demo(a) => demo::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Lab(a) => lab::run(&a),
        Command::Explain(a) => explain::run(&a),
        Command::Events(a) => events::run(&a),
        Command::Services(a) => services::run(&a),
        Command::Path(a) => path::run(&a),
        Command::Status(a) => status::run(&a),
        Command::Agent(a) => agent::run(&a),
        Command::Cleanup(a) => cleanup::run(&a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn a_leading_output_flag_moves_after_the_subcommand() {
        assert_eq!(normalize(v("i -o json flows -q")), v("i flows -o json -q"));
        assert_eq!(
            normalize(v("i --output=json lab status")),
            v("i lab status --output=json")
        );
        assert_eq!(
            normalize(v("i -o json bench overhead --repeat 1")),
            v("i bench overhead -o json --repeat 1")
        );
        assert_eq!(
            normalize(v("i -o json bench --modes host")),
            v("i bench -o json --modes host")
        );
        assert_eq!(
            normalize(v("i -o json lab run l w -- /bin/x status")),
            v("i lab run -o json l w -- /bin/x status")
        );
        assert_eq!(normalize(v("i flows -o json")), v("i flows -o json"));
        assert_eq!(normalize(v("i -ojson topology")), v("i topology -ojson"));
        assert_eq!(normalize(v("i --version")), v("i --version"));
    }

    /// clap's own consistency checks (debug builds run them lazily, per subcommand).
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn dot_is_accepted_only_where_it_exists() {
        assert!(Cli::try_parse_from(v("i topology -o dot")).is_ok());
        let e = Cli::try_parse_from(v("i flows -o dot")).unwrap_err();
        assert!(one_line(&e).contains("use table, json"), "{}", one_line(&e));
        assert!(Cli::try_parse_from(normalize(v("i -o json lab status"))).is_ok());
        for cmd in ["overhead", "scale", "services", "pipeline", "modes"] {
            let argv = normalize(v(&format!("i -o json bench {cmd}")));
            assert!(Cli::try_parse_from(&argv).is_ok(), "{argv:?}");
        }
    }
}

/// An error and its causes in one line, `a: b: c`, without a cause its message already
/// says (many messages name their source, and the chain would repeat it).
#[must_use]
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod error_line_tests {
    #[test]
    fn a_cause_the_message_names_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let named = anyhow::Error::from(crate::lab::LabError::Read {
            path: "/nonexistent.toml".into(),
            source: io,
        });
        let line = super::error_line(&named);
        assert_eq!(line.matches("not found").count(), 1, "{line}");
        let chained = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_line(&chained), "outer: inner");
    }
}
