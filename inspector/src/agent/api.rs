//! The agent's JSON API, answered by the session thread from the session's live queries
//! (the same functions and the same `-o json` records as the CLI's `flows`, `topology`,
//! `services` and `events`). A request's query string is its filter: `proto`, `host`,
//! `port` and `service` as the CLI's flags, plus `netns` (a namespace's name) and
//! `workload` (either end's name). Unknown keys and bad values are a one-line 400.
use std::collections::{HashMap, VecDeque};

use crate::{
    flows::filter::{self, Filter, ProtoFilter},
    identity::{lifecycle::Event, map},
    output::{self, Format, Printer},
    services::read,
    session::{Session, SessionError},
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
}

const KEYS: [&str; 6] = ["proto", "host", "port", "service", "netns", "workload"];

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
            let flows = s.flows()?;
            render(|p| {
                for x in flows.iter().filter(|x| {
                    f.packet.matches_header(&x.rec.hdr)
                        && f.netns(&x.rec.netns_name)
                        && f.ends(x.src_endpoint.as_ref(), x.dst_endpoint.as_ref())
                        && f.packet.service.as_ref().is_none_or(|want| {
                            x.service.as_ref().is_some_and(|sv| &sv.ns_name() == want)
                        })
                }) {
                    p.record("flow", x)?;
                }
                Ok(())
            })
        }
        Ask::Drops => {
            let drops = s.drops()?;
            render(|p| {
                for d in drops.iter().filter(|d| {
                    f.packet.matches_header(&d.rec.hdr)
                        && f.netns(&d.rec.netns_name)
                        && f.ends(d.src_endpoint.as_ref(), d.dst_endpoint.as_ref())
                }) {
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
