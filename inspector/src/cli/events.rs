//! `inspector events`: namespaces and links appearing and disappearing as containers, pods
//! and lab workloads start and stop, each named with its owner, and the runtimes' own
//! container events. Needs no eBPF: it follows the node with the same scans as `trace`.
use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;

use super::args::{self, IdentityArgs, Output};
use crate::{
    identity::lifecycle,
    output::{self, Printer},
    probe::preflight,
    session::Ticker,
    topology::{self, NsidCache},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub out: Output,
    /// Stop after this many seconds.
    #[arg(long, value_parser = args::parse_secs)]
    pub duration: Option<f64>,
    /// How often to rescan the node (milliseconds).
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub rescan_ms: u64,
    /// Write this file once the first scan is done (for scripts and tests).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    preflight::privileges()?;
    let mut tracker = a.identity.tracker();
    let mut cache = NsidCache::default();
    let mut topo = topology::scan(&mut cache);
    crate::identity::owners::name_namespaces(&tracker.identity, &mut topo);
    let mut ticker = Ticker::new(
        a.duration.map(Duration::from_secs_f64),
        Duration::from_millis(a.rescan_ms),
    )?;
    let mut namer = lifecycle::Namer::default();
    let patience = u32::try_from(2000 / a.rescan_ms.max(1)).unwrap_or(8);
    let mut p = Printer::stdout(a.out.output.into());
    if let Some(f) = &a.ready_file {
        std::fs::write(f, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the ready file {}", f.display()))?;
    }
    let watch = topology::watch::LinkWatch::new().ok();
    while !ticker.stopped() {
        {
            let fds: Vec<_> = watch.iter().map(std::os::fd::AsFd::as_fd).collect();
            ticker.wait(&fds, None);
        }
        if watch
            .as_ref()
            .is_some_and(topology::watch::LinkWatch::changed)
        {
            ticker.rescan_soon();
        }
        if !ticker.rescan_due() {
            continue;
        }
        let mut now = topology::scan(&mut cache);
        for n in tracker.refresh() {
            eprintln!("inspector: warning: {n}");
        }
        crate::identity::owners::name_namespaces(&tracker.identity, &mut now);
        for e in tracker.drain_docker_events() {
            output::lifecycle::render(&mut p, &lifecycle::from_docker(&e, &tracker.identity))?;
        }
        let found = lifecycle::diff(&topo, &now, &tracker.identity);
        for e in namer.ready(found, &tracker.identity, &now, patience) {
            output::lifecycle::render(&mut p, &e)?;
        }
        topo = now;
    }
    Ok(())
}
