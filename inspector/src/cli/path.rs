//! `inspector path SRC DST[:PORT]`: one bounded probe connection (or the next real one,
//! --watch) and every step it took (see `session::path`).
use std::time::Duration;

use super::args::{self, IdentityArgs, Output};
use crate::{
    net::Proto,
    output::{self, Printer},
    session::path::{self as probe, PathOptions},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the connection starts: a container, pod or lab workload (name or id), or a
    /// network namespace (`ip netns` name, /proc/PID/ns/net, inode, "host").
    pub src: String,
    /// Where it goes: IP:PORT, a Service NAMESPACE/NAME[:PORT] (its `ClusterIP`), or a
    /// workload NAME:PORT.
    pub dst: String,
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

pub fn run(a: &Args) -> anyhow::Result<()> {
    let report = probe::run(&PathOptions {
        src: a.src.clone(),
        dst: a.dst.clone(),
        proto: a.proto,
        watch: a.watch,
        timeout: Duration::from_secs_f64(a.timeout),
        identity: a.identity.options(),
        ready_file: a.ready_file.clone(),
    })?;
    output::probe::render(&mut Printer::stdout(a.out.output.into()), &report)?;
    Ok(())
}
