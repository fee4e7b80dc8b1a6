//! `inspector path SRC DST[:PORT]`: one bounded probe connection from a workload or
//! namespace (or, with `--watch`, the next real one), and every hop it took in order: the
//! interfaces that saw it, the NAT kube-proxy's rules applied (Service chain -> endpoint
//! chain -> pod), masquerade, and the verdict - delivered, refused, or dropped with the
//! kernel's reason, the interface, and the rule when it can be known.
use std::{
    collections::HashSet,
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::common::{self, FilterArgs, IdentityArgs};
use crate::{
    flows::{FlowRecord, drops::DropRecord, filter::Filter, path::role},
    output::{self, Format},
    probe::preflight,
    services::{
        attrib::{Attribution, BackendRef, NatRef, ServiceRef},
        conntrack::Tuple,
        counters::{self, RuleHit},
        read,
    },
    topology,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the connection starts: a container, pod or lab workload (name or id), or a
    /// network namespace (`ip netns` name, /proc/PID/ns/net, inode, "host").
    pub src: String,
    /// Where it goes: IP:PORT, a Service NAMESPACE/NAME[:PORT] (its `ClusterIP`), or a
    /// workload NAME:PORT.
    pub dst: String,
    /// tcp or udp.
    #[arg(long, default_value = "tcp")]
    pub proto: String,
    /// Do not connect: wait for the next real connection from SRC to DST and show its path.
    #[arg(long)]
    pub watch: bool,
    /// Give up after this many seconds (the probe's connect, or the wait with --watch).
    #[arg(long, default_value_t = 3.0, value_parser = common::parse_secs)]
    pub timeout: f64,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// One step of the path: an interface that saw the packet, or a rewrite.
#[derive(Clone, Debug, Serialize)]
pub struct Hop {
    /// "interface" or "nat".
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    /// The packet's addresses at this hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuple: Option<String>,
    /// veth and peer, bridge port, ... (interfaces); what was rewritten and by which chains
    /// (NAT).
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_ns: Option<u64>,
}

/// Where a dropped packet died.
#[derive(Clone, Debug, Serialize)]
pub struct DropWhere {
    pub reason: String,
    /// The kernel function that freed the packet.
    pub location: String,
    pub netns_name: String,
    pub ifname: String,
    /// The rule or chain that decided, when it can be known.
    pub rule: Option<String>,
}

/// The whole answer (`type: "probe"` JSON).
#[derive(Clone, Debug, Serialize)]
pub struct PathReport {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub src: String,
    pub dst: String,
    pub proto: String,
    pub src_endpoint: Option<String>,
    pub hops: Vec<Hop>,
    pub reply_hops: Vec<Hop>,
    pub service: Option<ServiceRef>,
    pub backend: Option<BackendRef>,
    pub nat: Option<NatRef>,
    /// delivered, refused, dropped, unreachable, no-answer.
    pub verdict: String,
    pub verdict_detail: String,
    pub drop_reason: Option<String>,
    pub drop: Option<DropWhere>,
    /// Netfilter DROP/REJECT rules that counted packets during the probe.
    pub rules_hit: Vec<RuleHit>,
    /// Every packet of this connection the kernel freed as a drop (also after a delivered
    /// exchange, e.g. a late segment to a closed socket).
    pub drops: Vec<DropWhere>,
}

/// The source: a namespace to connect from, and what it is.
struct Source {
    netns: PathBuf,
    label: String,
    ips: Vec<IpAddr>,
    /// The lab node namespace the source belongs to (its Services are the lab's).
    node: Option<String>,
}

/// The lab a workload id ("lab/name") or namespace name ("lab-...") belongs to.
fn lab_node(id_or_ns: &str) -> Option<String> {
    crate::identity::lab::LabRecord::all()
        .into_iter()
        .find(|r| {
            id_or_ns.starts_with(&format!("{}/", r.lab))
                || r.namespaces.iter().any(|n| n == id_or_ns)
        })
        .map(|r| format!("{}-node", r.lab))
}

fn split_port(s: &str) -> (&str, Option<u16>) {
    match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, p.parse().ok())
        }
        _ => (s, None),
    }
}

fn source(a: &Args, tracker: &crate::identity::Tracker) -> anyhow::Result<Source> {
    let all = topology::netns::discover();
    let w = tracker
        .identity
        .live()
        .iter()
        .find(|w| w.name == a.src || w.id == a.src)
        .or_else(|| tracker.identity.find(&a.src));
    if let Some(w) = w {
        let ns = w
            .netns
            .and_then(|ino| all.iter().find(|n| n.inode == ino))
            .with_context(|| {
                format!(
                    "workload '{}' has no network namespace to start from",
                    w.name
                )
            })?;
        return Ok(Source {
            netns: ns.path.clone(),
            label: w.name.clone(),
            ips: w.ips.clone(),
            node: lab_node(&w.id),
        });
    }
    let ns = common::resolve_netns(&a.src, &all).map_err(|_| {
        anyhow::anyhow!(
            "source '{}' is no container, pod, lab workload or network namespace (see `inspector topology`)",
            a.src
        )
    })?;
    Ok(Source {
        netns: ns.path.clone(),
        label: ns.name.clone(),
        ips: Vec::new(),
        node: lab_node(&ns.name),
    })
}

fn destination(
    a: &Args,
    src: &Source,
    tracker: &crate::identity::Tracker,
    services: &crate::services::attrib::Services,
) -> anyhow::Result<SocketAddr> {
    let (host, port) = split_port(&a.dst);
    if let Ok(ip) = host.parse::<IpAddr>() {
        let port =
            port.with_context(|| format!("destination '{}' needs a port (IP:PORT)", a.dst))?;
        return Ok(SocketAddr::new(ip, port));
    }
    if host.contains('/') {
        // A lab workload's Services are its lab's; otherwise the host's (or any node's).
        let mut m = services.entries().filter(|(node, e)| {
            src.node.as_deref().is_none_or(|n| n == *node)
                && e.ns_name() == host
                && e.cluster_ip.is_some()
                && e.protocol == a.proto
                && port.is_none_or(|p| p == e.port)
        });
        if let Some((_, e)) = m.next() {
            if port.is_none() && m.next().is_some() {
                bail!("Service '{host}' has several ports: say which ({host}:PORT)");
            }
            let ip = e.cluster_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
            return Ok(SocketAddr::new(IpAddr::V4(ip), e.port));
        }
        if tracker.identity.find(host).is_none() {
            bail!(
                "no Service '{host}' with a {} port{} in kube-proxy's rules (see `inspector services`)",
                a.proto,
                port.map(|p| format!(" {p}")).unwrap_or_default()
            );
        }
    }
    let w = tracker
        .identity
        .live()
        .iter()
        .find(|w| w.name == host || w.id == host)
        .or_else(|| tracker.identity.find(host))
        .with_context(|| {
            format!(
                "destination '{}' is no IP:PORT, Service or workload (see `inspector topology`)",
                a.dst
            )
        })?;
    let ip = w
        .ips
        .first()
        .copied()
        .with_context(|| format!("workload '{}' has no address", w.name))?;
    let port = port.with_context(|| format!("destination '{}' needs a port (NAME:PORT)", a.dst))?;
    Ok(SocketAddr::new(ip, port))
}

/// What the probe connection saw.
struct Outcome {
    local: Option<SocketAddr>,
    verdict: &'static str,
    detail: String,
}

/// One bounded connection (TCP connect + a line + close; UDP one datagram and one read)
/// from inside `netns`.
fn probe(
    netns: &std::path::Path,
    proto: &str,
    dst: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let tcp = proto == "tcp";
    crate::sys::netns::run_in(netns, move || -> std::io::Result<Outcome> {
        let domain = if dst.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = if tcp {
            Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?
        } else {
            Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?
        };
        // The source address the route gives (a connected UDP socket sends nothing), bound
        // explicitly so the tuple is known even when the connect fails.
        let any: SocketAddr = if dst.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or(dst)
        } else {
            "[::]:0".parse().unwrap_or(dst)
        };
        let route = std::net::UdpSocket::bind(any)?;
        route.connect(dst)?;
        let src_ip = route.local_addr()?.ip();
        drop(route);
        sock.bind(&SockAddr::from(SocketAddr::new(src_ip, 0)))?;
        let local = sock.local_addr()?.as_socket();
        let started = Instant::now();
        let classify = |e: &std::io::Error| -> (&'static str, String) {
            match e.raw_os_error() {
                Some(libc::ECONNREFUSED) => (
                    "refused",
                    "connection refused (TCP RST or ICMP port unreachable)".into(),
                ),
                Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => ("unreachable", e.to_string()),
                Some(libc::ETIMEDOUT | libc::EAGAIN | libc::EINPROGRESS) => (
                    "no-answer",
                    format!("no answer within {:.1} s", timeout.as_secs_f64()),
                ),
                _ if e.kind() == std::io::ErrorKind::TimedOut => (
                    "no-answer",
                    format!("no answer within {:.1} s", timeout.as_secs_f64()),
                ),
                _ => ("error", e.to_string()),
            }
        };
        let (verdict, detail) = if tcp {
            match sock.connect_timeout(&SockAddr::from(dst), timeout) {
                Ok(()) => {
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    let mut st: std::net::TcpStream = sock.into();
                    let _ = st.set_read_timeout(Some(Duration::from_millis(300)));
                    let _ = st.write_all(b"inspector path probe\n");
                    let _ = st.shutdown(std::net::Shutdown::Write);
                    let mut buf = [0u8; 256];
                    let _ = st.read(&mut buf);
                    ("delivered", format!("connected in {ms:.2} ms"))
                }
                Err(e) => classify(&e),
            }
        } else {
            sock.connect(&SockAddr::from(dst))?;
            sock.set_read_timeout(Some(timeout))?;
            let u: std::net::UdpSocket = sock.into();
            u.send(b"inspector path probe\n")?;
            let mut buf = [0u8; 512];
            match u.recv(&mut buf) {
                Ok(n) => ("delivered", format!("answered with {n} bytes")),
                Err(e) => classify(&e),
            }
        };
        Ok(Outcome {
            local,
            verdict,
            detail,
        })
    })?
    .context("probe connection")
}

type Key = (IpAddr, u16, IpAddr, u16);

fn key_of(t: &Tuple) -> Key {
    (t.src, t.sport, t.dst, t.dport)
}

fn rev((a, ap, b, bp): Key) -> Key {
    (b, bp, a, ap)
}

fn rec_key(r: &FlowRecord) -> Option<Key> {
    Some((r.src?, r.sport?, r.dst?, r.dport?))
}

fn tuple_str(k: Key) -> String {
    format!("{}:{} -> {}:{}", k.0, k.1, k.2, k.3)
}

fn iface_hop(f: &crate::probe::follow::Follower, r: &FlowRecord) -> Hop {
    Hop {
        kind: "interface",
        netns_name: Some(r.netns_name.clone()),
        ifname: Some(r.ifname.clone()),
        direction: Some(r.direction),
        tuple: rec_key(r).map(tuple_str),
        detail: role(&f.topology, r.netns, r.ifindex),
        first_ns: Some(r.first_ns),
    }
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    if a.proto != "tcp" && a.proto != "udp" {
        bail!("--proto '{}': path probes tcp or udp", a.proto);
    }
    preflight::privileges()?;
    let tracker = a.identity.tracker();
    let src = source(a, &tracker)?;
    let mut services = crate::services::attrib::Services::new();
    services.refresh_rules(true);
    let dst = destination(a, &src, &tracker, &services)?;
    let timeout = Duration::from_secs_f64(a.timeout);
    let fa = FilterArgs {
        quiet: true,
        rescan_ms: 1000,
        identity: a.identity.clone(),
        ..FilterArgs::default()
    };
    let (f, settings) = common::start(&fa, false)?;
    let nodes = read::nodes();
    let before: Vec<_> = nodes
        .iter()
        .map(|n| counters::snapshot(n.netns.as_deref()))
        .collect();
    let (local, verdict, detail) = if a.watch {
        watch(&f, &src, dst, &a.proto, timeout)?
    } else {
        let o = probe(&src.netns, &a.proto, dst, timeout)?;
        (o.local, o.verdict.to_owned(), o.detail)
    };
    // Let the last packets (FIN, RST, ICMP) reach every hook and the drop tracepoint.
    std::thread::sleep(Duration::from_millis(250));
    let rules_hit: Vec<RuleHit> = nodes
        .iter()
        .zip(&before)
        .flat_map(|(n, b)| counters::snapshot(n.netns.as_deref()).grown_since(b))
        .collect();
    let Some(local) = local else {
        bail!("the probe socket had no local address");
    };
    let recs = super::flows::records(&f, &Filter::default())?;
    let proto_num = if a.proto == "tcp" { 6 } else { 17 };
    let t0: Key = (local.ip(), local.port(), dst.ip(), dst.port());
    let attribution: Option<Attribution> = f.services.as_ref().and_then(|s| {
        s.borrow()
            .lookup(proto_num, t0.0, t0.1, t0.2, t0.3)
            .cloned()
    });
    // The tuples of this connection: as sent, after NAT, and the two replies.
    let after_nat = attribution.as_ref().map(|at| rev(key_of(&at.conn.reply)));
    let fwd: HashSet<Key> = std::iter::once(t0).chain(after_nat).collect();
    let back: HashSet<Key> = fwd.iter().map(|k| rev(*k)).collect();
    let pick = |set: &HashSet<Key>| {
        let mut v: Vec<&FlowRecord> = recs
            .iter()
            .filter(|r| r.proto == a.proto && rec_key(r).is_some_and(|k| set.contains(&k)))
            .collect();
        v.sort_by_key(|r| (r.first_ns, r.direction == "ingress"));
        v
    };
    let mut hops: Vec<Hop> = Vec::new();
    let mut nat_done = false;
    for r in pick(&fwd) {
        if !nat_done
            && let (Some(at), Some(k)) = (&attribution, rec_key(r))
            && Some(k) == after_nat
            && after_nat != Some(t0)
        {
            hops.push(nat_hop(at));
            nat_done = true;
        }
        hops.push(iface_hop(&f, r));
    }
    if !nat_done && let Some(at) = &attribution {
        hops.push(nat_hop(at));
    }
    let reply_hops: Vec<Hop> = pick(&back).into_iter().map(|r| iface_hop(&f, r)).collect();
    // Drops of this connection's packets (either direction, either side of the NAT).
    let drops: Vec<DropRecord> = super::flows::drop_records(&f, &settings)?
        .into_iter()
        .filter(|d| {
            d.proto == a.proto
                && d.src
                    .zip(d.sport)
                    .zip(d.dst.zip(d.dport))
                    .is_some_and(|((s, sp), (ds, dp))| {
                        let k = (s, sp, ds, dp);
                        fwd.contains(&k) || back.contains(&k)
                    })
        })
        .collect();
    let mut report = PathReport {
        kind: "probe",
        src: format!("{} ({})", src.label, local),
        dst: dst.to_string(),
        proto: a.proto.clone(),
        src_endpoint: Some(src.label.clone()),
        hops,
        reply_hops,
        service: attribution.as_ref().map(|x| x.service.clone()),
        backend: attribution.as_ref().map(|x| x.backend.clone()),
        nat: attribution.as_ref().map(|x| x.nat.clone()),
        verdict,
        verdict_detail: detail,
        drop_reason: None,
        drop: None,
        rules_hit,
        drops: Vec::new(),
    };
    if report.service.is_none() {
        // No DNAT happened (no endpoints, or refused before NAT): name the Service the
        // address belongs to from the rules.
        report.service = frontend_of(&services, src.node.as_deref(), dst, &a.proto);
    }
    explain_failure(&mut report, &drops, &services, dst, &a.proto);
    match fmt {
        Format::Json => output::json_line(&report)?,
        Format::Table | Format::Dot => print(&report),
    }
    Ok(())
}

/// `--watch`: the first new connection from the source's addresses (or any, for a bare
/// namespace) to `dst` seen at a hook.
fn watch(
    f: &crate::probe::follow::Follower,
    src: &Source,
    dst: SocketAddr,
    proto: &str,
    timeout: Duration,
) -> anyhow::Result<(Option<SocketAddr>, String, String)> {
    let deadline = Instant::now() + timeout;
    let old: HashSet<Key> = super::flows::records(f, &Filter::default())?
        .iter()
        .filter_map(rec_key)
        .collect();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let recs = super::flows::records(f, &Filter::default())?;
        if let Some(r) = recs.iter().find(|r| {
            r.proto == proto
                && r.dst == Some(dst.ip())
                && r.dport == Some(dst.port())
                && rec_key(r).is_some_and(|k| !old.contains(&k))
                && (src.ips.is_empty() || r.src.is_some_and(|s| src.ips.contains(&s)))
        }) {
            // Give the connection time to complete, then judge it from what was seen.
            std::thread::sleep(Duration::from_millis(500));
            let local = r.src.zip(r.sport).map(|(ip, p)| SocketAddr::new(ip, p));
            let answered = super::flows::records(f, &Filter::default())?
                .iter()
                .any(|x| {
                    x.dst == r.src
                        && x.dport == r.sport
                        && (x.src == Some(dst.ip()) || x.service.is_some())
                });
            let (v, d) = if answered {
                ("delivered", "a reply was seen")
            } else {
                ("no-answer", "no reply seen within 0.5 s")
            };
            return Ok((local, v.into(), d.into()));
        }
    }
    bail!(
        "no new {proto} connection to {dst} within {:.1} s",
        timeout.as_secs_f64()
    )
}

/// The Service whose ClusterIP:port is `dst`, from the rules alone.
fn frontend_of(
    services: &crate::services::attrib::Services,
    node: Option<&str>,
    dst: SocketAddr,
    proto: &str,
) -> Option<ServiceRef> {
    let (n, e) = services.entries().find(|(n, e)| {
        node.is_none_or(|want| want == *n)
            && e.protocol == proto
            && e.cluster_ip.map(IpAddr::V4) == Some(dst.ip())
            && e.port == dst.port()
    })?;
    Some(ServiceRef {
        namespace: e.namespace.clone(),
        name: e.name.clone(),
        port_name: e.port_name.clone(),
        via: "ClusterIP",
        frontend: dst.to_string(),
        cluster_ip: e.cluster_ip,
        port: e.port,
        protocol: e.protocol.clone(),
        chain: e.chain.clone(),
        mode: e.mode,
        node: n.to_owned(),
    })
}

fn nat_hop(at: &Attribution) -> Hop {
    let s = &at.service;
    let spn = crate::services::spn(&s.namespace, &s.name, &s.port_name);
    let mut detail = format!(
        "DNAT {} by {} -> {} ({spn} {} -> {}{})",
        at.nat.dnat.clone().unwrap_or_default(),
        s.chain,
        at.backend.chain.clone().unwrap_or_else(|| "?".into()),
        s.via,
        at.backend
            .workload
            .as_ref()
            .map(|w| format!("pod {w}, "))
            .unwrap_or_default(),
        at.backend.endpoint,
    );
    if at.backend.affinity {
        detail.push_str("; the Service has ClientIP affinity: this client stays on this pod");
    }
    if let Some(sn) = &at.nat.snat {
        let _ = write!(
            detail,
            "; SNAT {sn} ({})",
            if s.mode == "nftables" {
                "masquerade: mark-for-masquerade, then chain masquerading"
            } else {
                "masquerade: KUBE-MARK-MASQ, then KUBE-POSTROUTING"
            }
        );
    }
    Hop {
        kind: "nat",
        netns_name: Some(s.node.clone()),
        ifname: None,
        direction: None,
        tuple: None,
        detail,
        first_ns: None,
    }
}

/// Fills in drop reason, place and rule for refused / dropped probes.
fn explain_failure(
    r: &mut PathReport,
    drops: &[DropRecord],
    services: &crate::services::attrib::Services,
    dst: SocketAddr,
    proto: &str,
) {
    let no_eps = services.entries().find(|(_, e)| {
        e.endpoints.is_empty()
            && e.protocol == proto
            && e.cluster_ip.map(IpAddr::V4) == Some(dst.ip())
            && e.port == dst.port()
    });
    r.drops = drops
        .iter()
        .map(|d| DropWhere {
            reason: d.reason.clone(),
            location: d.location.clone(),
            netns_name: d.netns_name.clone(),
            ifname: d.ifname.clone(),
            rule: None,
        })
        .collect();
    if r.verdict == "delivered" {
        return;
    }
    if let Some(d) = drops.first() {
        let rule = if let Some((_, e)) = no_eps {
            Some(format!("{} ({} has no endpoints)", e.no_endpoints, e.spn()))
        } else {
            r.rules_hit
                .first()
                .map(|h| format!("{} {}: {}", h.table, h.chain, h.rule))
        };
        r.drop_reason = Some(d.reason.clone());
        r.drop = Some(DropWhere {
            reason: d.reason.clone(),
            location: d.location.clone(),
            netns_name: d.netns_name.clone(),
            ifname: d.ifname.clone(),
            rule,
        });
        if r.verdict != "refused" {
            r.verdict = "dropped".into();
        }
    } else if let Some((_, e)) = no_eps {
        r.drop = Some(DropWhere {
            reason: String::new(),
            location: String::new(),
            netns_name: String::new(),
            ifname: String::new(),
            rule: Some(format!("{} ({} has no endpoints)", e.no_endpoints, e.spn())),
        });
    }
}

fn print(r: &PathReport) {
    let svc = r
        .service
        .as_ref()
        .map(|s| {
            format!(
                " ({}, {}, kube-proxy {} on {})",
                crate::services::spn(&s.namespace, &s.name, &s.port_name),
                s.via,
                s.mode,
                s.node
            )
        })
        .unwrap_or_default();
    println!("{} {} -> {}{svc}", r.proto, r.src, r.dst);
    let show = |hops: &[Hop]| {
        for (i, h) in hops.iter().enumerate() {
            match h.kind {
                "nat" => println!(
                    "  {:>2}. [{}] {}",
                    i + 1,
                    h.netns_name.as_deref().unwrap_or(""),
                    h.detail
                ),
                _ => println!(
                    "  {:>2}. {:<34} {:<7} {:<44} {}",
                    i + 1,
                    format!(
                        "{}/{}",
                        h.netns_name.as_deref().unwrap_or(""),
                        h.ifname.as_deref().unwrap_or("")
                    ),
                    h.direction.unwrap_or(""),
                    h.tuple.as_deref().unwrap_or(""),
                    h.detail
                ),
            }
        }
    };
    show(&r.hops);
    if !r.reply_hops.is_empty() {
        println!("  reply:");
        show(&r.reply_hops);
    }
    println!("verdict: {} ({})", r.verdict, r.verdict_detail);
    if let Some(d) = &r.drop {
        let place = if d.ifname.is_empty() {
            String::new()
        } else {
            format!(" at {}/{}", d.netns_name, d.ifname)
        };
        println!(
            "  dropped{place}{}{}",
            if d.reason.is_empty() {
                String::new()
            } else if d.location.is_empty() {
                format!(", reason {}", d.reason)
            } else {
                format!(", reason {} in {}", d.reason, d.location)
            },
            d.rule
                .as_ref()
                .map(|x| format!(", by {x}"))
                .unwrap_or_default()
        );
    }
    for h in &r.rules_hit {
        println!(
            "  rule counted {} packet(s): {} {}",
            h.packets, h.table, h.rule
        );
    }
}
