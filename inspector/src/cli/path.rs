//! `inspector path SRC DST[:PORT]`: one bounded probe connection (or the next real one,
//! --watch) and every step it took (see `session::path`).
use std::time::Duration;

use super::args::{self, IdentityArgs, Output};
use crate::{
    identity::select::{self, Pick},
    net::Proto,
    output::{self, Printer},
    session::path::{self as probe, PathOptions},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the connection starts: a container, pod or lab workload (name or id), or a
    /// network namespace (`ip netns` name, /proc/PID/ns/net, inode, "host"). Or give
    /// --from-pod / --from-container.
    #[arg(required_unless_present_any = ["from_pod", "from_container"])]
    pub src: Option<String>,
    /// Where it goes: IP:PORT, a Service NAMESPACE/NAME[:PORT] (its `ClusterIP`), or a
    /// workload NAME:PORT. Or give --to-pod / --to-container with --port.
    #[arg(required_unless_present_any = ["to_pod", "to_container"])]
    pub dst: Option<String>,
    /// The source: this pod (NAMESPACE/NAME), as the workload selectors name it.
    #[arg(long, value_name = "NS/NAME", conflicts_with_all = ["src", "from_container"])]
    pub from_pod: Option<String>,
    /// The source: this container (name, id or 4+ characters of it; a pod's container:
    /// its pod).
    #[arg(long, value_name = "NAME|ID", conflicts_with = "src")]
    pub from_container: Option<String>,
    /// The destination: this pod's address, at --port.
    #[arg(long, value_name = "NS/NAME", requires = "port", conflicts_with_all = ["dst", "to_container"])]
    pub to_pod: Option<String>,
    /// The destination: this container's address, at --port.
    #[arg(
        long,
        value_name = "NAME|ID",
        requires = "port",
        conflicts_with = "dst"
    )]
    pub to_container: Option<String>,
    /// The destination port with --to-pod / --to-container.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// tcp or udp (any case).
    #[arg(long, default_value = "tcp", value_parser = parse_proto)]
    pub proto: Proto,
    /// Do not connect: wait for the next real connection from SRC to DST and show its path.
    #[arg(long)]
    pub watch: bool,
    /// Give up after this many seconds (the probe's connect, or the wait with --watch).
    #[arg(long, default_value_t = 3.0, value_parser = args::parse_secs)]
    pub timeout: f64,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub out: Output,
    /// Write this file once everything is attached (before the probe, or the watch).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<std::path::PathBuf>,
}

/// `--proto` as the filter takes it (any case), and then only tcp or udp.
fn parse_proto(s: &str) -> Result<Proto, String> {
    // (a clap value parser: its error is the message)
    match s.parse::<Proto>() {
        Ok(p @ (Proto::Tcp | Proto::Udp)) => Ok(p),
        _ => Err(format!("'{s}': path probes tcp or udp")),
    }
}

/// A selector flag's workload, checked (no kernel access).
fn pick(pod: Option<&String>, container: Option<&String>) -> anyhow::Result<Option<Pick>> {
    Ok(match (pod, container) {
        (Some(p), _) => Some(select::parse_pod(p)?),
        (None, Some(c)) => Some(select::parse_container(c)?),
        (None, None) => None,
    })
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let src_pick = pick(a.from_pod.as_ref(), a.from_container.as_ref())?;
    let dst_pick = pick(a.to_pod.as_ref(), a.to_container.as_ref())?;
    if a.port.is_some() && dst_pick.is_none() {
        anyhow::bail!("--port goes with --to-pod or --to-container (else give DST as HOST:PORT)");
    }
    let port = a.port.unwrap_or(0);
    let report = probe::run(&PathOptions {
        src: src_pick.as_ref().map_or_else(
            || a.src.clone().unwrap_or_default(),
            |p| p.name().to_owned(),
        ),
        dst: dst_pick.as_ref().map_or_else(
            || a.dst.clone().unwrap_or_default(),
            |p| format!("{}:{port}", p.name()),
        ),
        src_pick,
        dst_pick: dst_pick.map(|p| (p, port)),
        proto: a.proto,
        watch: a.watch,
        timeout: Duration::from_secs_f64(a.timeout),
        identity: a.identity.options(),
        ready_file: a.ready_file.clone(),
    })?;
    output::probe::render(&mut Printer::stdout(a.out.output.into()), &report)?;
    Ok(())
}
