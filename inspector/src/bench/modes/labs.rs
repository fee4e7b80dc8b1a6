//! The labs `bench` runs on, from the embedded specs (`lab/specs/bench-*.toml`) with what a
//! run decides set in code: the published ports and the Service's ports (one per workload),
//! and for each Kubernetes node its name, subnet, kube-proxy mode and Service count. Then how
//! each mode is reached once its lab is up.
use std::net::{IpAddr, Ipv4Addr};

use super::{catalogue::BenchMode, target::Reach};
use crate::identity::tracker;
use crate::{
    bench::{BenchError, LoadKind, loadgen::Ends},
    lab::{
        LabSpec, Plan,
        spec::{BENCH_KUBE_SPEC, BENCH_MODES_SPEC, ServicePortSpec},
    },
    sys::netns::named,
};

/// Published host port = container port + this (so host-mode traffic to the node's own
/// address is not caught by the published ports' DNAT).
pub(super) const PUBLISH_OFFSET: u16 = 10_000;

/// The target Service's `ClusterIP` (in the kube spec).
pub(super) const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 128, 10);

/// The Docker-style lab: the server publishes every workload's port.
pub(super) fn docker_spec() -> LabSpec {
    let mut s = LabSpec::embedded(BENCH_MODES_SPEC);
    if let Some(srv) = s.workloads.iter_mut().find(|w| w.name == "srv") {
        srv.publish = LoadKind::TESTS
            .iter()
            .map(|t| format!("{}:{}/{}", t.port() + PUBLISH_OFFSET, t.port(), t.proto()))
            .collect();
    }
    s
}

/// The lab name of a Kubernetes node: `insp-b` + i(ptables)/n(ftables) + Services.
pub(super) fn kube_name(nft: bool, services: u32) -> String {
    format!("insp-b{}{services}", if nft { 'n' } else { 'i' })
}

/// A Kubernetes node with `services` Services (the target last), the `index`th of the run.
pub(super) fn kube_spec(nft: bool, services: u32, index: usize) -> LabSpec {
    let mut s = LabSpec::embedded(BENCH_KUBE_SPEC);
    s.name = kube_name(nft, services);
    s.subnet = format!("198.18.{}.0/24", 42 + index);
    s.kube_proxy = Some(if nft { "nftables" } else { "iptables" }.into());
    s.extra_services = usize::try_from(services.saturating_sub(1)).unwrap_or(0);
    if let Some(target) = s.services.first_mut() {
        target.ports = LoadKind::TESTS
            .iter()
            .map(|t| ServicePortSpec {
                name: t.name().into(),
                port: t.port(),
                target_port: None,
                protocol: t.proto().into(),
                node_port: None,
            })
            .collect();
    }
    s
}

fn ns_of<'a>(plan: &'a Plan, workload: &str) -> Result<&'a str, BenchError> {
    Ok(plan.workload(workload)?.netns.as_str())
}

fn addr_of(plan: &Plan, workload: &str) -> Result<IpAddr, BenchError> {
    plan.workload(workload)?
        .addr
        .map(IpAddr::V4)
        .ok_or_else(|| BenchError::Input(format!("no address for {workload} in the bench lab")))
}

pub(super) fn reach(mode: BenchMode, plan: &Plan) -> Result<Reach, BenchError> {
    let srv = addr_of(plan, "srv")?;
    let srv_ns = ns_of(plan, "srv")?.to_owned();
    let same = |ns: &str, ip: IpAddr, lo: bool| Reach {
        ends: Ends {
            client_ns: named(ns),
            server_ns: named(ns),
            bind: ip,
            target: ip,
            port_offset: 0,
            shift: 0,
            user_port: None,
        },
        trace_ns: vec![ns.to_owned()],
        lo,
        identity: tracker::Options::default(),
    };
    Ok(match mode {
        BenchMode::Host => same(&plan.node_ns, IpAddr::V4(plan.gateway), true),
        BenchMode::None => same(ns_of(plan, "iso")?, IpAddr::V4(Ipv4Addr::LOCALHOST), true),
        BenchMode::Bridge | BenchMode::ClusterIp { .. } => {
            let cli = ns_of(plan, "cli")?.to_owned();
            Reach {
                ends: Ends {
                    client_ns: named(&cli),
                    server_ns: named(&srv_ns),
                    bind: srv,
                    target: if mode == BenchMode::Bridge {
                        srv
                    } else {
                        IpAddr::V4(VIP)
                    },
                    port_offset: 0,
                    shift: 0,
                    user_port: None,
                },
                trace_ns: vec![cli, plan.node_ns.clone(), srv_ns],
                lo: false,
                identity: tracker::Options::default(),
            }
        }
        BenchMode::Container => Reach {
            ends: Ends {
                client_ns: named(ns_of(plan, "side")?),
                server_ns: named(&srv_ns),
                bind: srv,
                target: srv,
                port_offset: 0,
                shift: 0,
                user_port: None,
            },
            trace_ns: vec![srv_ns],
            lo: true,
            identity: tracker::Options::default(),
        },
        BenchMode::Dnat => {
            let ext = plan
                .external
                .clone()
                .ok_or_else(|| BenchError::Input("the bench lab has no outside client".into()))?;
            Reach {
                ends: Ends {
                    client_ns: named(&ext.netns),
                    server_ns: named(&srv_ns),
                    bind: srv,
                    target: IpAddr::V4(ext.node_ip),
                    port_offset: PUBLISH_OFFSET,
                    shift: 0,
                    user_port: None,
                },
                trace_ns: vec![ext.netns, plan.node_ns.clone(), srv_ns],
                lo: false,
                identity: tracker::Options::default(),
            }
        }
    })
}
