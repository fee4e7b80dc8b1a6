//! Reads kube-proxy's iptables-mode service table from `iptables-save` text (nat and filter
//! tables). The chain graph decides - KUBE-SERVICES / KUBE-NODEPORTS frontends, KUBE-EXT ->
//! KUBE-SVC/SVL, SVC -> SEP jumps, SEP DNAT targets - and comments only name things, because
//! kube-proxy leaves the per-endpoint comments out above 1000 endpoints. Both the quoting of
//! real nodes (`"ns/svc:p"`) and kube-proxy's unquoted test dumps are accepted, as is the
//! normalisation iptables-save applies (`-d x/32`, reordered options, `0.33333333349`).
//! (Just over 500 lines: the last 140 are its tests against real and upstream dumps.)
use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
};

use super::{Backend, ServiceEntry, split_spn};

/// Splits a rule line into arguments, honouring double quotes and `\"` inside them.
fn tokens(line: &str) -> Vec<Cow<'_, str>> {
    let b = line.as_bytes();
    let mut out = Vec::with_capacity(24);
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            let mut escaped = false;
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' && j + 1 < b.len() {
                    escaped = true;
                    j += 1;
                }
                j += 1;
            }
            let raw = &line[start..j.min(b.len())];
            out.push(if escaped {
                Cow::Owned(raw.replace("\\\"", "\"").replace("\\\\", "\\"))
            } else {
                Cow::Borrowed(raw)
            });
            i = j + 1;
        } else {
            let start = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            out.push(Cow::Borrowed(&line[start..i]));
        }
    }
    out
}

/// The parts of a rule the service table needs.
#[derive(Default)]
struct Rule<'a> {
    comment: Option<Cow<'a, str>>,
    dst: Option<&'a str>,
    proto: Option<&'a str>,
    dport: Option<&'a str>,
    target: Option<&'a str>,
    to_destination: Option<&'a str>,
    probability: Option<&'a str>,
    recent_rcheck: bool,
}

fn parse_rule<'a>(toks: &'a [Cow<'a, str>]) -> Rule<'a> {
    let mut r = Rule::default();
    let mut i = 0;
    let mut negate = false;
    while i < toks.len() {
        let t = toks[i].as_ref();
        let next = toks.get(i + 1).map(AsRef::as_ref);
        match t {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "--comment" => r.comment = toks.get(i + 1).cloned(),
            "-d" | "--destination" if !negate => r.dst = next,
            "-p" | "--protocol" if !negate => r.proto = next,
            "--dport" | "--destination-port" if !negate => r.dport = next,
            "-j" | "--jump" | "-g" | "--goto" => r.target = next,
            "--to-destination" => r.to_destination = next,
            "--probability" => r.probability = next,
            "--rcheck" => r.recent_rcheck = true,
            _ => {}
        }
        negate = false;
        i += 1;
    }
    r
}

struct Frontend {
    spn: Option<String>,
    ip: Option<Ipv4Addr>,
    proto: String,
    port: u16,
    chain: String,
}

#[derive(Default)]
struct SvcChain {
    seps: Vec<(String, Option<String>)>,
    affinity: bool,
    spn: Option<String>,
}

/// The service table in an `iptables-save` dump (any tables; nat and filter are read).
#[must_use]
pub fn parse(text: &str) -> Vec<ServiceEntry> {
    let mut table = "";
    let mut cluster: Vec<Frontend> = Vec::new();
    let mut nodeports: Vec<Frontend> = Vec::new();
    let mut ext: HashMap<String, String> = HashMap::new();
    let mut svcs: HashMap<String, SvcChain> = HashMap::new();
    let mut seps: HashMap<String, (String, Option<String>)> = HashMap::new();
    let mut rejects: Vec<Frontend> = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = if t == "nat" {
                "nat"
            } else if t == "filter" {
                "filter"
            } else {
                ""
            };
            continue;
        }
        // Counters (`iptables-save -c`) come first: "[p:b] -A CHAIN ...".
        let line = if line.starts_with('[') {
            line.split_once("] ").map_or(line, |(_, r)| r)
        } else {
            line
        };
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        if table.is_empty() {
            continue;
        }
        let rest = rest.trim_start();
        let (chain, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let interesting = chain == "KUBE-SERVICES"
            || chain == "KUBE-NODEPORTS"
            || chain == "KUBE-EXTERNAL-SERVICES"
            || chain.starts_with("KUBE-SVC-")
            || chain.starts_with("KUBE-SVL-")
            || chain.starts_with("KUBE-EXT-")
            || chain.starts_with("KUBE-SEP-");
        if !interesting {
            continue;
        }
        let toks = tokens(args);
        let r = parse_rule(&toks);
        let Some(target) = r.target else { continue };
        let front = |r: &Rule<'_>, spn: Option<String>, chain: &str| {
            Some(Frontend {
                spn,
                ip: r
                    .dst
                    .map(|d| d.trim_end_matches("/32"))
                    .and_then(|d| d.parse().ok()),
                proto: r.proto?.to_owned(),
                port: r.dport?.parse().ok()?,
                chain: chain.to_owned(),
            })
        };
        match (table, chain) {
            ("nat", "KUBE-SERVICES") => {
                let c = r.comment.as_deref();
                let svc_target = target.starts_with("KUBE-SVC-")
                    || target.starts_with("KUBE-SVL-")
                    || (target.starts_with("KUBE-EXT-")
                        && c.is_none_or(|c| c.ends_with(" cluster IP")));
                if svc_target {
                    let spn = c.map(|c| c.trim_end_matches(" cluster IP").to_owned());
                    cluster.extend(front(&r, spn, target));
                }
            }
            ("nat", "KUBE-NODEPORTS") if target.starts_with("KUBE-EXT-") => {
                nodeports.extend(front(&r, r.comment.as_deref().map(str::to_owned), target));
            }
            ("nat", c)
                if c.starts_with("KUBE-EXT-")
                    && (target.starts_with("KUBE-SVC-") || target.starts_with("KUBE-SVL-")) =>
            {
                ext.insert(c.to_owned(), target.to_owned());
            }
            ("nat", c) if c.starts_with("KUBE-SVC-") || c.starts_with("KUBE-SVL-") => {
                let s = svcs.entry(c.to_owned()).or_default();
                if s.spn.is_none()
                    && let Some(cm) = r.comment.as_deref()
                {
                    let spn = cm
                        .split_once(" -> ")
                        .map_or_else(|| cm.trim_end_matches(" cluster IP"), |(a, _)| a);
                    s.spn = Some(spn.to_owned());
                }
                if target.starts_with("KUBE-SEP-") {
                    if r.recent_rcheck {
                        s.affinity = true;
                    }
                    if !s.seps.iter().any(|(n, _)| n == target) {
                        s.seps
                            .push((target.to_owned(), r.probability.map(str::to_owned)));
                    } else if let Some(p) = r.probability {
                        // The affinity check came first; the probability rule has the odds.
                        if let Some(e) = s.seps.iter_mut().find(|(n, _)| n == target) {
                            e.1 = Some(p.to_owned());
                        }
                    }
                }
            }
            ("nat", c) if c.starts_with("KUBE-SEP-") => {
                if target == "DNAT"
                    && let Some(to) = r.to_destination
                {
                    seps.insert(
                        c.to_owned(),
                        (to.to_owned(), r.comment.as_deref().map(str::to_owned)),
                    );
                }
            }
            ("filter", "KUBE-SERVICES" | "KUBE-EXTERNAL-SERVICES")
                if target == "REJECT" || target == "DROP" =>
            {
                let spn = r.comment.as_deref().map(|c| {
                    c.trim_end_matches(" has no endpoints")
                        .trim_end_matches(" has no local endpoints")
                        .to_owned()
                });
                let what = if chain == "KUBE-SERVICES" {
                    format!("{} in filter KUBE-SERVICES", target.to_lowercase())
                } else {
                    format!("{} in filter KUBE-EXTERNAL-SERVICES", target.to_lowercase())
                };
                if let Some(f) = front(&r, spn, &what) {
                    rejects.push(f);
                }
            }
            _ => {}
        }
    }
    assemble(&cluster, &nodeports, &ext, &svcs, &seps, rejects)
}

fn assemble(
    cluster: &[Frontend],
    nodeports: &[Frontend],
    ext: &HashMap<String, String>,
    svcs: &HashMap<String, SvcChain>,
    seps: &HashMap<String, (String, Option<String>)>,
    rejects: Vec<Frontend>,
) -> Vec<ServiceEntry> {
    let mut out: Vec<ServiceEntry> = Vec::with_capacity(cluster.len());
    let mut by_suffix: HashMap<String, usize> = HashMap::new();
    let entry = |f: &Frontend| -> ServiceEntry {
        let svc_chain = ext
            .get(&f.chain)
            .cloned()
            .unwrap_or_else(|| f.chain.clone());
        let sc = svcs.get(&svc_chain);
        let backends: Vec<Backend> = sc
            .map(|s| {
                s.seps
                    .iter()
                    .filter_map(|(sep, p)| {
                        seps.get(sep).map(|(to, _)| Backend {
                            endpoint: to.clone(),
                            chain: sep.clone(),
                            probability: p.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Names: the frontend's comment, else the service chain's, else an endpoint's.
        let spn = f
            .spn
            .clone()
            .or_else(|| sc.and_then(|s| s.spn.clone()))
            .or_else(|| {
                sc.and_then(|s| s.seps.iter().find_map(|(sep, _)| seps.get(sep)?.1.clone()))
            })
            .unwrap_or_default();
        let (namespace, name, port_name) = split_spn(&spn);
        ServiceEntry {
            namespace,
            name,
            port_name,
            cluster_ip: f.ip,
            port: f.port,
            protocol: f.proto.clone(),
            node_port: None,
            endpoints: backends.iter().map(|b| b.endpoint.clone()).collect(),
            chain: svc_chain,
            backends,
            affinity: sc.is_some_and(|s| s.affinity),
            no_endpoints: String::new(),
            mode: "iptables",
        }
    };
    for f in cluster {
        let e = entry(f);
        by_suffix.insert(suffix(&e.chain).to_owned(), out.len());
        out.push(e);
    }
    for f in nodeports {
        if let Some(i) = by_suffix.get(suffix(&f.chain)) {
            out[*i].node_port = Some(f.port);
        } else {
            let mut e = entry(f);
            e.node_port = Some(f.port);
            e.port = 0;
            out.push(e);
        }
    }
    // Services without endpoints: only their REJECT rules in the filter table name them.
    let mut seen: HashSet<(String, u16, String)> = HashSet::new();
    let mut rejects = rejects;
    rejects.sort_by_key(|f| f.ip.is_none());
    for f in rejects {
        let spn = f.spn.clone().unwrap_or_default();
        let (namespace, name, port_name) = split_spn(&spn);
        if f.ip.is_none() {
            // The NodePort's REJECT: attach it to the ClusterIP entry of the same name.
            if let Some(e) = out.iter_mut().find(|e| {
                e.endpoints.is_empty()
                    && e.namespace == namespace
                    && e.name == name
                    && e.port_name == port_name
            }) {
                e.node_port = Some(f.port);
                continue;
            }
        }
        if !seen.insert((spn.clone(), f.port, f.proto.clone())) {
            continue;
        }
        out.push(ServiceEntry {
            namespace,
            name,
            port_name,
            cluster_ip: f.ip,
            port: if f.ip.is_some() { f.port } else { 0 },
            node_port: f.ip.is_none().then_some(f.port),
            protocol: f.proto,
            chain: "KUBE-SERVICES".into(),
            no_endpoints: f.chain,
            mode: "iptables",
            ..ServiceEntry::default()
        });
    }
    out
}

/// `KUBE-SVC-ABC` -> `ABC`.
fn suffix(chain: &str) -> &str {
    chain.splitn(3, '-').nth(2).unwrap_or(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kube-proxy's unquoted test-dump style (its `proxier_test.go`) with the normalisation a real
    /// iptables-save applies to the probability.
    const UPSTREAM: &str = include_str!("../../testdata/kube-proxy/upstream-ns1-svc1.txt");

    #[test]
    fn upstream_fixture() {
        let t = parse(UPSTREAM);
        assert_eq!(t.len(), 1);
        let s = &t[0];
        assert_eq!(
            (s.namespace.as_str(), s.name.as_str(), s.port_name.as_str()),
            ("ns1", "svc1", "")
        );
        assert_eq!(s.cluster_ip, Some(Ipv4Addr::new(172, 30, 1, 1)));
        assert_eq!((s.port, s.protocol.as_str()), (80, "tcp"));
        assert_eq!(s.endpoints, ["10.0.1.1:80", "10.0.1.2:80", "10.0.1.5:80"]);
        assert_eq!(s.chain, "KUBE-SVC-AQI2S6QIMU7PVVRP");
        assert_eq!(s.backends[0].chain, "KUBE-SEP-3JOIVZTXZZRGORX4");
        assert_eq!(s.backends[0].probability.as_deref(), Some("0.33333333349"));
        assert_eq!(s.backends[2].probability, None);
        assert!(!s.affinity);
    }

    /// What iptables-save prints on a real node (measured with iptables 1.8.9, `nf_tables)`:
    /// options reordered, `/32`, quoted comments, affinity expanded, counters with -c.
    const REAL: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Sun Nov 29 07:00:00 2026
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
[0:0] -A KUBE-SERVICES -d 198.18.128.20/32 -p tcp -m comment --comment "lab/empty:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
[0:0] -A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "lab/empty:http has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30081 -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
:KUBE-EXT-X5V4HF3JZ3DHH6LW - [0:0]
[3:180] -A KUBE-SERVICES -d 198.18.128.10/32 -p tcp -m comment --comment "lab/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-X5V4HF3JZ3DHH6LW
[1:60] -A KUBE-NODEPORTS -p tcp -m comment --comment "lab/web:http" -m tcp --dport 30080 -j KUBE-EXT-X5V4HF3JZ3DHH6LW
[1:60] -A KUBE-EXT-X5V4HF3JZ3DHH6LW -m comment --comment "masquerade traffic for lab/web:http external destinations" -j KUBE-MARK-MASQ
[1:60] -A KUBE-EXT-X5V4HF3JZ3DHH6LW -j KUBE-SVC-X5V4HF3JZ3DHH6LW
[0:0] -A KUBE-SVC-X5V4HF3JZ3DHH6LW -m comment --comment "lab/web:http -> 198.18.20.2:80" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-AAAA --mask 255.255.255.255 --rsource -j KUBE-SEP-AAAA
[0:0] -A KUBE-SVC-X5V4HF3JZ3DHH6LW -m comment --comment "lab/web:http -> 198.18.20.3:80" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-BBBB --mask 255.255.255.255 --rsource -j KUBE-SEP-BBBB
[2:120] -A KUBE-SVC-X5V4HF3JZ3DHH6LW -m comment --comment "lab/web:http -> 198.18.20.2:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-AAAA
[2:120] -A KUBE-SVC-X5V4HF3JZ3DHH6LW -m comment --comment "lab/web:http -> 198.18.20.3:80" -j KUBE-SEP-BBBB
[2:120] -A KUBE-SEP-AAAA -p tcp -m comment --comment "lab/web:http" -m recent --set --name KUBE-SEP-AAAA --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 198.18.20.2:80
[2:120] -A KUBE-SEP-BBBB -p tcp -m comment --comment "lab/web:http" -m recent --set --name KUBE-SEP-BBBB --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 198.18.20.3:80
COMMIT
"#;

    #[test]
    fn real_node_dump_with_affinity_nodeport_and_no_endpoints() {
        let t = parse(REAL);
        assert_eq!(t.len(), 2, "{t:#?}");
        let web = t.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(web.port_name, "http");
        assert_eq!(web.node_port, Some(30080));
        assert!(web.affinity);
        assert_eq!(web.endpoints, ["198.18.20.2:80", "198.18.20.3:80"]);
        assert_eq!(
            web.backends[0].probability.as_deref(),
            Some("0.50000000000")
        );
        let empty = t.iter().find(|s| s.name == "empty").unwrap();
        assert!(empty.endpoints.is_empty());
        assert_eq!(empty.node_port, Some(30081));
        assert_eq!(empty.cluster_ip, Some(Ipv4Addr::new(198, 18, 128, 20)));
        assert_eq!(empty.no_endpoints, "reject in filter KUBE-SERVICES");
    }

    #[test]
    fn large_cluster_without_endpoint_comments_follows_jumps() {
        // 400 services x 3 endpoints = 1200 > 1000: kube-proxy drops SVC->SEP and SEP comments.
        let svcs = super::super::rules::generated(
            400,
            3,
            Ipv4Addr::new(198, 18, 128, 0),
            Ipv4Addr::new(198, 19, 128, 0),
        );
        let text = super::super::rules::iptables(
            &svcs,
            &super::super::rules::Config {
                cluster_cidr: Some("198.19.128.0/17".into()),
                service_cidr: None,
            },
        );
        assert!(!text.contains(" -> "), "endpoint comments must be absent");
        let t = parse(&text);
        assert_eq!(t.len(), 400);
        let s = t.iter().find(|s| s.name == "svc-399").unwrap();
        assert_eq!(s.cluster_ip, Some(Ipv4Addr::new(198, 18, 129, 143)));
        assert_eq!(s.endpoints.len(), 3);
        assert_eq!(s.endpoints[2], "198.19.132.175:8080");
        assert_eq!(s.backends[0].probability.as_deref(), Some("0.3333333333"));
        assert_eq!(
            s.backends[1].chain,
            crate::services::sep_chain("scale/svc-399:http", "tcp", "198.19.132.174:8080")
        );
    }

    /// iptables-save (1.8.9, `nf_tables`) of the rules `rules::iptables` wrote into a scratch
    /// namespace: the same state as the nft sample.
    const SAVED: &str = include_str!("../../testdata/kube-proxy/iptables-save-sample.txt");

    #[test]
    fn saved_sample_matches_what_was_written() {
        let t = parse(SAVED);
        assert_eq!(t.len(), 3, "{t:#?}");
        let s0 = t.iter().find(|s| s.name == "svc-0").unwrap();
        assert_eq!(s0.node_port, Some(30080));
        assert_eq!(
            s0.endpoints,
            ["198.18.20.2:8080", "198.18.20.3:8080", "198.18.20.4:8080"]
        );
        assert_eq!(s0.backends[0].probability.as_deref(), Some("0.33333333349"));
        assert_eq!(
            s0.chain,
            format!(
                "KUBE-SVC-{}",
                crate::services::port_proto_hash("scale/svc-0:http", "tcp")
            )
        );
        let s1 = t.iter().find(|s| s.name == "svc-1").unwrap();
        assert!(s1.affinity);
        assert_eq!(s1.backends[1].probability.as_deref(), Some("0.50000000000"));
        let empty = t.iter().find(|s| s.name == "empty").unwrap();
        assert!(empty.endpoints.is_empty() && !empty.no_endpoints.is_empty());
    }

    #[test]
    fn tokenizer_handles_escaped_quotes() {
        let t = tokens(r#"-m comment --comment "a \"b\" c" -j X"#);
        assert_eq!(t[3], "a \"b\" c");
        assert_eq!(t[5], "X");
    }
}
