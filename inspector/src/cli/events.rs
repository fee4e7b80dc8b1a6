//! `inspector events`: namespaces and links appearing and disappearing as containers, pods and
//! lab workloads start and stop, each named with its owner, and the runtimes' own container
//! events. Needs no eBPF: it follows the node with the same scans `trace` and `flows` use.
use std::path::PathBuf;

use anyhow::Context as _;

use super::common::{self, Clock, IdentityArgs};
use crate::{
    identity::lifecycle::{self, Event},
    output::{self, Format},
    probe::preflight,
    topology::{self, NsidCache},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Stop after this many seconds.
    #[arg(long, value_parser = common::parse_secs)]
    pub duration: Option<f64>,
    /// How often to rescan the node (milliseconds).
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub rescan_ms: u64,
    /// Write this file once the first scan is done (for scripts and tests).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

pub fn emit(e: &Event, fmt: Format) -> anyhow::Result<()> {
    match fmt {
        Format::Json => output::json_line(e)?,
        Format::Table | Format::Dot => println!("{}", e.line()),
    }
    Ok(())
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    preflight::privileges()?;
    let mut tracker = a.identity.tracker();
    let mut cache = NsidCache::default();
    let mut topo = topology::scan(&mut cache);
    let mut clock = Clock::new(a.duration, a.rescan_ms)?;
    let mut namer = lifecycle::Namer::default();
    let patience = u32::try_from(2000 / a.rescan_ms.max(1)).unwrap_or(8);
    if let Some(p) = &a.ready_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the ready file {}", p.display()))?;
    }
    while !clock.stopped() {
        clock.wait(&[], None);
        if !clock.rescan_due() {
            continue;
        }
        let now = topology::scan(&mut cache);
        for n in tracker.refresh() {
            eprintln!("inspector: warning: {n}");
        }
        for e in tracker.drain_docker_events() {
            emit(&lifecycle::from_docker(&e, &tracker.identity), fmt)?;
        }
        let found = lifecycle::diff(&topo, &now, &tracker.identity);
        for e in namer.ready(found, &tracker.identity, &now, patience) {
            emit(&e, fmt)?;
        }
        topo = now;
    }
    Ok(())
}
