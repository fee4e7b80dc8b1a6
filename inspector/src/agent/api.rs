//! The agent's JSON API, answered by the session thread from the session's live queries
//! (the same functions and the same `-o json` records as the CLI's `flows`, `topology`,
//! `services` and `events`). A request's query string is its filter: `proto`, `host`,
//! `port` and `service` as the CLI's flags, plus `netns` (a namespace's name) and
//! `workload` (either end's name); the workload selectors `pod`, `container`, `selector`,
//! `namespace`, `from_pod`, `to_pod`, `from_container`, `to_container` as the CLI's flags
//! (resolved against the workloads known now); and `expr`, a pcap-filter expression asked
//! of each flow's and drop's headers (`flows::frame`). Unknown keys and bad values are a
//! one-line 400.
use std::collections::{HashMap, VecDeque};

use crate::{
    flows::{
        Header,
        filter::{self, Filter, ProtoFilter},
        frame,
    },
    identity::{
        lifecycle::Event,
        map,
        select::{self, Resolved, Selectors},
    },
    output::{self, Format, Printer},
    services::read,
    session::{Flow, FlowTable, Session, SessionError},
    topology::view,
};

/// What is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    Flows,
    Drops,
    Stats,
    Latency,
    Topology,
    Events,
}

/// A request's filter.
#[derive(Debug, Default)]
pub struct ApiFilter {
    packet: Filter,
    netns: Option<String>,
    workload: Option<String>,
    select: Selectors,
}

const KEYS: [&str; 15] = [
    "proto",
    "host",
    "port",
    "service",
    "netns",
    "workload",
    "pod",
    "container",
    "selector",
    "namespace",
    "from_pod",
    "to_pod",
    "from_container",
    "to_container",
    "expr",
];

impl ApiFilter {
    /// # Errors
    /// An unknown key or a value the CLI would refuse, as one line.
    pub fn parse(q: &HashMap<String, String>) -> Result<Self, String> {
        let mut f = Self::default();
        for (k, v) in q {
            match k.as_str() {
                "proto" => {
                    f.packet.proto = Some(ProtoFilter::parse(v).map_err(|e| e.to_string())?);
                }
                "host" => f.packet.host = Some(filter::parse_host(v).map_err(|e| e.to_string())?),
                "port" => f.packet.port = Some(filter::parse_port(v).map_err(|e| e.to_string())?),
                "service" => {
                    crate::session::check_service_name(v).map_err(|e| e.to_string())?;
                    f.packet.service = Some(v.clone());
                }
                "netns" => f.netns = Some(v.clone()),
                "workload" => f.workload = Some(v.clone()),
                "pod" => f.select.either.push(select::parse_pod(v).map_err(str_err)?),
                "container" => {
                    f.select
                        .either
                        .push(select::parse_container(v).map_err(str_err)?);
                }
                "selector" => f
                    .select
                    .labels
                    .push(select::parse_labels(v).map_err(str_err)?),
                "namespace" => f
                    .select
                    .namespaces
                    .push(select::parse_namespace(v).map_err(str_err)?),
                "from_pod" => f.select.from.push(select::parse_pod(v).map_err(str_err)?),
                "to_pod" => f.select.to.push(select::parse_pod(v).map_err(str_err)?),
                "from_container" => {
                    f.select
                        .from
                        .push(select::parse_container(v).map_err(str_err)?);
                }
                "to_container" => {
                    f.select
                        .to
                        .push(select::parse_container(v).map_err(str_err)?);
                }
                "expr" => {
                    f.packet.expression =
                        Some(crate::probe::pcap::Filter::new(v).map_err(str_err)?);
                }
                other => {
                    return Err(format!("unknown filter '{other}': use {}", KEYS.join(", ")));
                }
            }
        }
        Ok(f)
    }

    fn ends(
        &self,
        src: Option<&crate::identity::Endpoint>,
        dst: Option<&crate::identity::Endpoint>,
    ) -> bool {
        self.workload.as_ref().is_none_or(|w| {
            [src, dst]
                .iter()
                .any(|e| e.and_then(|e| e.name.as_deref()) == Some(w.as_str()))
        })
    }

    fn netns(&self, name: &str) -> bool {
        self.netns.as_ref().is_none_or(|n| n == name)
    }

    /// The per-query packet filter, selectors and expression on a flow's or drop's record.
    fn record(
        &self,
        (netns, netns_name): (u64, &str),
        hdr: &Header,
        vlan: Option<u16>,
        selected: Option<&Resolved>,
    ) -> bool {
        self.packet.matches_header(hdr)
            && self.netns(netns_name)
            && selected.is_none_or(|r| r.verdict_at(netns, hdr.src, hdr.dst) == Some(true))
            && self.packet.expression.as_ref().is_none_or(|e| {
                let frame = frame::of_header(hdr, vlan);
                e.matches(&frame, u32::try_from(frame.len()).unwrap_or(u32::MAX))
            })
    }
}

fn str_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The last lifecycle events (for `/api/events`), at most `EVENTS_KEPT`.
pub const EVENTS_KEPT: usize = 1000;

fn render(f: impl FnOnce(&mut Printer<Vec<u8>>) -> std::io::Result<()>) -> String {
    let mut p = Printer::new(Format::Json, Vec::new());
    let _ = f(&mut p);
    String::from_utf8(p.into_inner()).unwrap_or_default()
}

/// `/api/services`: kube-proxy's Services of every node, read now (off the session thread:
/// reading a large node's rules takes a while).
///
/// # Errors
/// Rules that cannot be read.
pub fn services(f: &ApiFilter) -> anyhow::Result<String> {
    let nodes = read::node_services(None)?;
    Ok(render(|p| {
        output::services::render(p, &nodes, |e| {
            f.packet.service.as_ref().is_none_or(|s| &e.ns_name() == s)
        })
    }))
}

/// Whether a flow is wanted by the request (`selected`: its selectors, resolved now).
pub(super) fn wants_flow(f: &ApiFilter, x: &Flow, selected: Option<&Resolved>) -> bool {
    let r = &x.rec;
    let ends = (x.src_endpoint.as_ref(), x.dst_endpoint.as_ref());
    wants_place(f, (r.netns, &r.netns_name), &r.hdr, r.vlan, ends, selected)
        && f.packet
            .service
            .as_ref()
            .is_none_or(|want| x.service.as_ref().is_some_and(|sv| &sv.ns_name() == want))
}

/// Whether a drop is wanted by the request: as a flow, without a VLAN or a Service (a drop
/// record has neither).
fn wants_drop(f: &ApiFilter, d: &crate::session::Drop, selected: Option<&Resolved>) -> bool {
    let r = &d.rec;
    let ends = (d.src_endpoint.as_ref(), d.dst_endpoint.as_ref());
    wants_place(f, (r.netns, &r.netns_name), &r.hdr, None, ends, selected)
}

/// What flows and drops are filtered by alike: where the record was seen, its header, and
/// its two ends.
fn wants_place(
    f: &ApiFilter,
    netns: (u64, &str),
    hdr: &Header,
    vlan: Option<u16>,
    (src, dst): (
        Option<&crate::identity::Endpoint>,
        Option<&crate::identity::Endpoint>,
    ),
    selected: Option<&Resolved>,
) -> bool {
    f.record(netns, hdr, vlan, selected) && f.ends(src, dst)
}

/// The request's workload selectors resolved now (`None` without any).
pub(super) fn selectors_now(s: &Session, f: &ApiFilter) -> Option<Resolved> {
    (!f.select.is_empty()).then(|| s.resolve_selectors(&f.select))
}

/// Writes the flows of `flows` the request wants, in chunks of about `chunk` bytes, to
/// `sink` (each record named as it is written).
///
/// # Errors
/// The session cannot name the flows, or `sink` refuses a chunk.
pub fn write_flows<E: From<SessionError>>(
    s: &Session,
    flows: &FlowTable<'_>,
    f: &ApiFilter,
    chunk: usize,
    mut sink: impl FnMut(Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let selected = selectors_now(s, f);
    let mut p = Printer::new(Format::Json, Vec::new());
    flows.each(|x| {
        if wants_flow(f, &x, selected.as_ref()) {
            // Writing to memory does not fail.
            let _ = p.record("flow", &x);
            if p.get_ref().len() >= chunk {
                let full = std::mem::replace(&mut p, Printer::new(Format::Json, Vec::new()));
                sink(full.into_inner())?;
            }
        }
        Ok::<(), E>(())
    })?;
    let rest = p.into_inner();
    if rest.is_empty() { Ok(()) } else { sink(rest) }
}

/// Answers one request with NDJSON records.
///
/// # Errors
/// The session could not read the kernel or the node.
pub fn answer(
    s: &mut Session,
    ask: Ask,
    f: &ApiFilter,
    events: &VecDeque<Event>,
) -> Result<String, SessionError> {
    Ok(match ask {
        Ask::Flows => {
            // Whole (the agent streams it instead: `stream::flows`).
            let mut out = Vec::new();
            write_flows(s, &s.flow_table()?, f, usize::MAX, |chunk| {
                out.extend(chunk);
                Ok::<(), SessionError>(())
            })?;
            String::from_utf8(out).unwrap_or_default()
        }
        Ask::Drops => {
            let drops = s.drops()?;
            let selected = selectors_now(s, f);
            render(|p| {
                for d in drops.iter().filter(|d| wants_drop(f, d, selected.as_ref())) {
                    p.record("drop", d)?;
                }
                Ok(())
            })
        }
        Ask::Stats => {
            let st = s.stats()?;
            render(|p| p.record("stats", &st))
        }
        Ask::Latency => {
            let rows = s.latency_rows()?.unwrap_or_default();
            let sampling = s.latency_sampling();
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|r| {
                    f.workload.as_ref().is_none_or(|w| {
                        r.pair.split(" -> ").any(|e| e.split(' ').next() == Some(w))
                    }) && f.netns.as_ref().is_none_or(|n| {
                        [&r.from, &r.to]
                            .iter()
                            .any(|h| h.starts_with(&format!("{n}/")))
                    })
                })
                .collect();
            render(|p| output::latency::render(p, &rows, sampling.as_ref()))
        }
        Ask::Topology => {
            let topo = s.topology();
            let workloads: Vec<map::WorkloadView> = map::build(s.identity(), topo)
                .into_iter()
                .filter(|w| f.workload.as_ref().is_none_or(|n| w.name == *n))
                .collect();
            let namespaces = view::namespaces(topo, &[]);
            render(|p| output::topology::render(p, &workloads, &namespaces, topo))
        }
        Ask::Events => render(|p| {
            for e in events.iter().filter(|e| {
                f.netns
                    .as_ref()
                    .is_none_or(|n| e.netns_name.as_deref() == Some(n.as_str()))
            }) {
                output::lifecycle::render(p, e)?;
            }
            Ok(())
        }),
    })
}
