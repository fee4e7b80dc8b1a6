//! `path SRC DST`: one bounded probe connection from a workload or namespace (or, watching,
//! the next real one), and every step it took in order: the interfaces that saw it, the NAT
//! kube-proxy's rules applied (Service chain -> endpoint chain -> pod), masquerade, and the
//! verdict - delivered, refused, or dropped with the kernel's reason, the interface, and
//! the rule when it can be known.
mod attempts;
mod connect;
mod drop_times;
mod report;
mod target;

use std::{net::SocketAddr, time::Duration};

use serde::Serialize;

pub use attempts::{Attempt, DropWhere, Fate};
pub use report::{PathReport, ProbeStep, StepKind};
pub use target::{Source, endpoint};

use super::{
    Measure, Options, Session, SessionError,
    records::PacketHops,
    start::write_ready,
    trace::{TraceItem, Tracer},
};
use crate::{
    flows::filter::{Filter, ProtoFilter},
    identity::{Tracker, tracker},
    net::Proto,
    services::{attrib::Services, counters, read},
};

/// What `path` is asked.
#[derive(Clone, Debug)]
pub struct PathOptions {
    /// A container, pod or lab workload (name or id), or a network namespace.
    pub src: String,
    /// IP:PORT, a Service NAMESPACE/NAME[:PORT], or a workload NAME:PORT.
    pub dst: String,
    /// `--from-pod`/`--from-container`: the source, named as a selector names it (instead
    /// of `src`, which then only labels it).
    pub src_pick: Option<crate::identity::select::Pick>,
    /// `--to-pod`/`--to-container` with `--port`: the destination, likewise.
    pub dst_pick: Option<(crate::identity::select::Pick, u16)>,
    /// TCP or UDP.
    pub proto: Proto,
    /// Wait for the next real connection instead of making one.
    pub watch: bool,
    /// The probe's connect (or the watch) gives up after this long.
    pub timeout: Duration,
    pub identity: tracker::Options,
    /// Written once everything is attached and, for a watch, the connections already seen
    /// are noted: a connection made after it exists is the one reported.
    pub ready_file: Option<std::path::PathBuf>,
}

/// What became of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Delivered,
    Refused,
    Dropped,
    Unreachable,
    NoAnswer,
    Error,
}

/// Why a path question has no answer; each says what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("--proto '{0}': path probes tcp or udp")]
    Proto(String),
    #[error(
        "source '{0}' is no container, pod, lab workload or network namespace (see `inspector \
         topology`)"
    )]
    NoSource(String),
    #[error("workload '{0}' has no network namespace to start from")]
    SourceWithoutNetns(String),
    #[error("destination '{0}' needs a port ({1})")]
    NeedsPort(String, &'static str),
    #[error("Service '{0}' has several ports: say which ({0}:PORT)")]
    SeveralPorts(String),
    #[error(
        "no Service '{name}' with a {proto} port{port} in kube-proxy's rules (see `inspector services`)"
    )]
    NoService {
        name: String,
        proto: Proto,
        port: String,
    },
    #[error("destination '{0}' is no IP:PORT, Service or workload (see `inspector topology`)")]
    NoDestination(String),
    #[error("workload '{0}' has no address")]
    NoAddress(String),
    #[error("no new {proto} connection to {dst} within {secs:.1} s")]
    NothingSeen {
        proto: Proto,
        dst: SocketAddr,
        secs: f64,
    },
    #[error("the probe connection: {0}")]
    Connect(std::io::Error),
    #[error("the probe socket had no local address")]
    NoLocalAddress,
    #[error("the probe's thread panicked")]
    ProbeThread,
}

/// Runs one path question: resolves source and destination, starts a session over every
/// namespace, makes (or waits for) the connection, and explains what happened to it.
pub fn run(o: &PathOptions) -> Result<PathReport, SessionError> {
    if !matches!(o.proto, Proto::Tcp | Proto::Udp) {
        return Err(PathError::Proto(o.proto.to_string()).into());
    }
    crate::probe::preflight::privileges()?;
    let (mut tracker, _) = Tracker::new(&o.identity);
    let _ = tracker.refresh();
    let src = target::source(o, &tracker)?;
    let mut services = Services::new();
    services.refresh_rules(true);
    let dst = target::destination(o, &src, &tracker, &services)?;
    // Every packet of the protocol, each stitched across NAT into one record with its
    // hops: how each attempt went.
    let (mut session, _) = Session::start(&Options {
        identity: o.identity.clone(),
        filter: Filter {
            proto: Some(ProtoFilter::Ip {
                proto: o.proto.number().unwrap_or(0),
                v: None,
            }),
            ..Filter::default()
        },
        measure: Measure::Events {
            ring_bytes: 8 << 20,
            stack: false,
            hops: true,
            snaplen: u32::try_from(inspector_common::flow::SNAP_LEN).unwrap_or(128),
        },
        ..Options::default()
    })?;
    let mut tracer = Tracer::new(&mut session, true, None)?;
    let mut packets: Vec<PacketHops> = Vec::new();
    let mut drop_times = drop_times::DropTimes::default();
    let mut pump = |s: &Session, all: bool| -> Result<(), SessionError> {
        drop_times.sample(s)?;
        let items = if all {
            tracer.finish(s)?
        } else {
            tracer.poll(s)?
        };
        packets.extend(items.into_iter().filter_map(|i| match i {
            TraceItem::Hops(h) => Some(*h),
            _ => None,
        }));
        Ok(())
    };
    let nodes = read::nodes();
    let before: Vec<_> = nodes
        .iter()
        .map(|n| counters::snapshot(n.netns.as_deref()))
        .collect();
    // Ready once the connections already known are noted, so that the next one counts.
    let ready = || o.ready_file.as_deref().map_or(Ok(()), write_ready);
    let seen = if o.watch {
        connect::watch(&session, &src, dst, o.proto, o.timeout, ready, &mut |s| {
            pump(s, false)
        })?
    } else {
        ready()?;
        let (netns, proto, timeout) = (src.netns.clone(), o.proto, o.timeout);
        let probe = std::thread::spawn(move || connect::probe(&netns, proto, dst, timeout));
        while !probe.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
            pump(&session, false)?;
        }
        probe
            .join()
            .map_err(|_| SessionError::from(PathError::ProbeThread))??
    };
    // Let the last packets (FIN, RST, ICMP) reach every hook and the drop tracepoint.
    std::thread::sleep(Duration::from_millis(250));
    pump(&session, true)?;
    let rules_hit = nodes
        .iter()
        .zip(&before)
        .flat_map(|(n, b)| {
            let mut hits = counters::snapshot(n.netns.as_deref()).grown_since(b);
            for h in &mut hits {
                h.node.clone_from(&n.name);
            }
            hits
        })
        .collect();
    let local = seen.local.ok_or(PathError::NoLocalAddress)?;
    report::build(&report::Inputs {
        session: &session,
        services: &services,
        src: &src,
        local,
        dst,
        proto: o.proto,
        verdict: seen.verdict,
        detail: seen.detail,
        connected_ms: seen.connected_ms,
        rules_hit,
        packets,
        drop_times: &drop_times,
    })
}
