//! `inspector demo`: the main job on a fresh machine. Builds the embedded lab (three
//! workloads on a bridge, one external peer routed through the node), attaches to every hop,
//! drives bounded ICMP/TCP/UDP traffic, prints the path each flow took with per-hop counters,
//! and removes the lab.
use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;

use super::common::{self, FilterArgs};
use crate::{
    flows::{filter::Filter, path},
    lab::{self, Lab},
    output::Format,
    probe::{follow::Follower, preflight},
    traffic,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bytes the TCP client sends.
    #[arg(long, default_value_t = 256 * 1024)]
    pub tcp_bytes: usize,
    /// Leave the lab in place afterwards, to explore it with `topology`, `flows`, `trace`.
    #[arg(long, conflicts_with = "clean")]
    pub keep: bool,
    /// Only remove a lab left by `--keep` (or by a demo that was killed).
    #[arg(long)]
    pub clean: bool,
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    preflight::privileges()?;
    // Ctrl-C must not skip the clean-up: the flag is checked between steps and the lab is
    // removed when `lab` goes out of scope.
    let stop = common::stop_flag()?;
    let check = || -> anyhow::Result<()> {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            anyhow::bail!("interrupted; the demo lab was removed");
        }
        Ok(())
    };
    let spec = lab::demo_spec();
    let stale = lab::netns::list_with_prefix(&format!("{}-", spec.prefix));
    for n in &stale {
        lab::netns::delete(n)?;
    }
    if a.clean {
        eprintln!("inspector: removed {} demo namespaces", stale.len());
        return Ok(());
    }
    let mut lab = Lab::up(&spec).context("building the demo lab")?;
    eprintln!(
        "inspector: demo lab up: namespaces {}",
        lab.ns_names().join(", ")
    );
    let args = FilterArgs {
        netns: lab.ns_names().to_vec(),
        quiet: true,
        ..FilterArgs::default()
    };
    let (f, _) = common::start(&args, false)?;
    eprintln!(
        "inspector: attached to {} interfaces; driving traffic",
        f.probe.attached().count()
    );
    check()?;

    let ns = |w: &str| lab::netns::path(&spec.ns_of(w));
    let ip = |w: &str| -> std::net::Ipv4Addr {
        let wl = spec
            .workloads
            .iter()
            .find(|x| x.name == w)
            .map_or("", |x| x.addr.as_str());
        wl.split('/')
            .next()
            .unwrap_or("")
            .parse()
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
    };
    let t = Duration::from_secs(2);
    let r1 = traffic::ping(&ns("a"), ip("b"), 3, t)?;
    let r2 = traffic::ping(&ns("c"), "198.18.0.1".parse()?, 2, t)?;
    check()?;
    let tcp = traffic::tcp_transfer(
        &ns("c"),
        &ns("a"),
        SocketAddr::new(ip("c").into(), 8080),
        a.tcp_bytes,
    )?;
    let udp = traffic::udp_burst(&ns("ext"), &ns("b"), "198.18.1.2:5353".parse()?, 20, 512)?;
    // Nobody listens on port 9 in ext: the kernel drops these with reason NO_SOCKET.
    traffic::udp_send(&ns("a"), "198.18.1.2:9".parse()?, 5, 64)?;
    eprintln!(
        "inspector: traffic done: a->b ping {r1}/3, c->bridge ping {r2}/2, a->c tcp {tcp} bytes, b->ext udp {udp}/20, \
         a->ext:9 udp 5 (closed port)"
    );
    check()?;
    settle(&f);
    let recs = super::flows::records(&f, &Filter::default())?;
    let paths = path::stitch(&recs);
    super::flows::print_paths(&f, &paths, fmt)?;
    let settings = common::Settings {
        filter: Filter::default(),
        selection: f.selection.clone(),
        pinned_ifindex: None,
    };
    super::flows::print_drops(&f, &settings, fmt)?;
    super::flows::print_stats(&f, fmt)?;
    drop(f);
    let n = lab.ns_names().len();
    if a.keep {
        lab.forget();
        eprintln!(
            "inspector: demo lab kept ({n} namespaces); remove it with `inspector demo --clean`"
        );
        return Ok(());
    }
    drop(lab);
    eprintln!("inspector: demo lab removed ({n} namespaces)");
    Ok(())
}

/// Waits (bounded) until the flow counters stop changing: the last ACKs and replies are in.
fn settle(f: &Follower) {
    let total = |f: &Follower| {
        f.probe
            .flows()
            .map_or(0, |v| v.iter().map(|(_, s)| s.packets).sum::<u64>())
    };
    let mut last = total(f);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let now = total(f);
        if now == last {
            return;
        }
        last = now;
    }
}
