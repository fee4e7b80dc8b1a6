//! Reads kube-proxy's nftables-mode service table from `nft -j list table ip kube-proxy`
//! (or a whole `list ruleset`). Service identity is in the maps and chain names: the
//! `service-ips` / `service-nodeports` verdict maps give frontends, `external-*` chains go to
//! `service-*` chains, whose `numgen` vmap (and affinity rules) name the `endpoint-*` chains,
//! whose `dnat` gives the endpoint. Services without endpoints are the `no-endpoint-*` map
//! elements, whose comment is the service-port name.
//!
//! The JSON is deserialised into borrowed, typed structs that skip what is not needed, which
//! keeps 10,000 services well inside the parse budget.
use std::{borrow::Cow, collections::HashMap, net::Ipv4Addr};

use serde::Deserialize;
use serde_json::Value;

use super::{Backend, ServiceEntry};

#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(borrow)]
    nftables: Vec<Obj<'a>>,
}

#[derive(Deserialize)]
struct Obj<'a> {
    #[serde(borrow, default)]
    map: Option<Map<'a>>,
    #[serde(borrow, default)]
    rule: Option<Rule<'a>>,
}

#[derive(Deserialize)]
struct Map<'a> {
    #[serde(borrow)]
    table: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    elem: Vec<Value>,
}

#[derive(Deserialize)]
struct Rule<'a> {
    #[serde(borrow)]
    table: Cow<'a, str>,
    #[serde(borrow)]
    chain: Cow<'a, str>,
    #[serde(borrow, default)]
    expr: Vec<Expr<'a>>,
}

#[derive(Deserialize)]
struct Target<'a> {
    #[serde(borrow)]
    target: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Dnat<'a> {
    #[serde(borrow)]
    addr: Option<Cow<'a, str>>,
    port: Option<u16>,
}

#[derive(Deserialize)]
struct Expr<'a> {
    #[serde(borrow, default)]
    jump: Option<Target<'a>>,
    #[serde(borrow, default)]
    goto: Option<Target<'a>>,
    #[serde(borrow, default)]
    dnat: Option<Dnat<'a>>,
    #[serde(default)]
    vmap: Option<Value>,
    #[serde(rename = "match", default)]
    matches: Option<Value>,
}

/// (key values, verdict chain or "drop"/"reject", element comment).
fn elements(elem: &[Value]) -> Vec<(Vec<Value>, String, Option<String>)> {
    elem.iter()
        .filter_map(|e| {
            let pair = e.as_array()?;
            let (mut key, val) = (pair.first()?, pair.get(1)?);
            let mut comment = None;
            if let Some(inner) = key.get("elem") {
                comment = inner
                    .get("comment")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                key = inner.get("val")?;
            }
            let parts = key
                .get("concat")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| vec![key.clone()]);
            let verdict = val
                .get("goto")
                .or_else(|| val.get("jump"))
                .and_then(|t| t.get("target"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| val.as_object().and_then(|o| o.keys().next().cloned()))?;
            Some((parts, verdict, comment))
        })
        .collect()
}

fn port_of(v: &Value) -> Option<u16> {
    v.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .or_else(|| v.as_str()?.parse().ok())
}

/// `service-HASH8-ns/name/proto/port` -> (ns, name, proto, port name).
fn names(chain: &str) -> Option<(String, String, String, String)> {
    let rest = chain.split_once('-')?.1;
    let rest = rest.get(9..)?;
    let base = rest.split("__").next()?;
    let mut it = base.splitn(4, '/');
    Some((
        it.next()?.to_owned(),
        it.next()?.to_owned(),
        it.next()?.to_owned(),
        it.next().unwrap_or("").to_owned(),
    ))
}

/// The service table in `nft -j` output.
///
/// # Errors
/// Text that is not nft's JSON.
pub fn parse(json: &str) -> Result<Vec<ServiceEntry>, String> {
    let doc: Doc<'_> =
        serde_json::from_str(json).map_err(|e| format!("not nft JSON output: {e}"))?;
    let mut service_ips = Vec::new();
    let mut nodeports = Vec::new();
    let mut no_eps = Vec::new();
    let mut ext: HashMap<String, String> = HashMap::new();
    let mut svc_eps: HashMap<String, Vec<(String, Option<String>)>> = HashMap::new();
    let mut affinity: HashMap<String, bool> = HashMap::new();
    let mut dnat: HashMap<String, String> = HashMap::new();
    for o in doc.nftables {
        if let Some(m) = o.map {
            if m.table != "kube-proxy" {
                continue;
            }
            match m.name.as_ref() {
                "service-ips" => service_ips = elements(&m.elem),
                "service-nodeports" => nodeports = elements(&m.elem),
                "no-endpoint-services" | "no-endpoint-nodeports" => {
                    no_eps.extend(elements(&m.elem));
                }
                _ => {}
            }
        } else if let Some(r) = o.rule {
            if r.table != "kube-proxy" {
                continue;
            }
            let chain = r.chain.as_ref();
            if chain.starts_with("external-") {
                for e in &r.expr {
                    if let Some(t) = e.goto.as_ref().or(e.jump.as_ref())
                        && (t.target.starts_with("service-") || t.target.starts_with("local-"))
                    {
                        ext.insert(chain.to_owned(), t.target.clone().into_owned());
                    }
                }
            } else if chain.starts_with("service-") || chain.starts_with("local-") {
                let eps = svc_eps.entry(chain.to_owned()).or_default();
                let has_set_match = r.expr.iter().any(|e| {
                    e.matches.as_ref().is_some_and(|m| {
                        m.get("right")
                            .and_then(Value::as_str)
                            .is_some_and(|s| s.starts_with("@affinity-"))
                    })
                });
                for e in &r.expr {
                    if let Some(t) = e.goto.as_ref().or(e.jump.as_ref())
                        && t.target.starts_with("endpoint-")
                    {
                        if has_set_match {
                            affinity.insert(chain.to_owned(), true);
                        }
                        if !eps.iter().any(|(c, _)| c == t.target.as_ref()) {
                            eps.push((t.target.clone().into_owned(), None));
                        }
                    }
                    if let Some(v) = &e.vmap
                        && let Some(set) = v
                            .get("data")
                            .and_then(|d| d.get("set"))
                            .and_then(Value::as_array)
                    {
                        let modulus = v
                            .get("key")
                            .and_then(|k| k.get("numgen"))
                            .and_then(|n| n.get("mod"))
                            .and_then(Value::as_u64);
                        for pair in set {
                            let Some(target) = pair
                                .get(1)
                                .and_then(|x| x.get("goto").or_else(|| x.get("jump")))
                                .and_then(|t| t.get("target"))
                                .and_then(Value::as_str)
                            else {
                                continue;
                            };
                            let slot = pair.get(0).and_then(Value::as_u64);
                            let label = match (slot, modulus) {
                                (Some(s), Some(m)) => Some(format!("numgen {s} of {m}")),
                                _ => None,
                            };
                            match eps.iter_mut().find(|(c, _)| c == target) {
                                Some(e) => e.1 = label,
                                None => eps.push((target.to_owned(), label)),
                            }
                        }
                    }
                }
            } else if chain.starts_with("endpoint-") {
                for e in &r.expr {
                    if let Some(d) = &e.dnat
                        && let Some(a) = &d.addr
                    {
                        let ep = match d.port {
                            Some(p) => format!("{a}:{p}"),
                            None => a.clone().into_owned(),
                        };
                        dnat.insert(chain.to_owned(), ep);
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(service_ips.len());
    let mut by_chain: HashMap<String, usize> = HashMap::new();
    let entry = |chain: &str| -> ServiceEntry {
        let backends: Vec<Backend> = svc_eps
            .get(chain)
            .map(|v| {
                v.iter()
                    .filter_map(|(c, label)| {
                        Some(Backend {
                            endpoint: dnat.get(c)?.clone(),
                            chain: c.clone(),
                            probability: label.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (namespace, name, _, port_name) = names(chain).unwrap_or_default();
        ServiceEntry {
            namespace,
            name,
            port_name,
            endpoints: backends.iter().map(|b| b.endpoint.clone()).collect(),
            chain: chain.to_owned(),
            backends,
            affinity: affinity.get(chain).copied().unwrap_or(false),
            mode: "nftables",
            ..ServiceEntry::default()
        }
    };
    for (key, chain, _) in &service_ips {
        let (Some(ip), Some(proto), Some(port)) = (
            key.first()
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Ipv4Addr>().ok()),
            key.get(1).and_then(Value::as_str),
            key.get(2).and_then(port_of),
        ) else {
            continue;
        };
        if !(chain.starts_with("service-") || chain.starts_with("local-")) {
            continue; // external IPs / load balancers go to external-* chains
        }
        let mut e = entry(chain);
        e.cluster_ip = Some(ip);
        e.protocol = proto.to_owned();
        e.port = port;
        by_chain.insert(chain.clone(), out.len());
        out.push(e);
    }
    for (key, chain, _) in &nodeports {
        let (Some(proto), Some(port)) = (
            key.first().and_then(Value::as_str),
            key.get(1).and_then(port_of),
        ) else {
            continue;
        };
        let svc = ext.get(chain).cloned().unwrap_or_else(|| chain.clone());
        match by_chain.get(&svc) {
            Some(i) => out[*i].node_port = Some(port),
            None => {
                let mut e = entry(&svc);
                e.protocol = proto.to_owned();
                e.node_port = Some(port);
                out.push(e);
            }
        }
    }
    for (key, verdict, comment) in &no_eps {
        let spn = comment.clone().unwrap_or_default();
        let (namespace, name, port_name) = super::split_spn(&spn);
        let what = if verdict == "reject-chain" {
            "reject via no-endpoint-services -> reject-chain".to_owned()
        } else {
            format!("{verdict} via no-endpoint-services")
        };
        if key.len() == 2 {
            let (Some(proto), Some(port)) = (key[0].as_str(), port_of(&key[1])) else {
                continue;
            };
            if let Some(e) = out
                .iter_mut()
                .find(|e| e.spn() == spn && e.endpoints.is_empty() && e.protocol == proto)
            {
                e.node_port = Some(port);
                continue;
            }
            out.push(ServiceEntry {
                namespace,
                name,
                port_name,
                node_port: Some(port),
                protocol: proto.to_owned(),
                chain: "no-endpoint-nodeports".into(),
                no_endpoints: what.replace("services", "nodeports"),
                mode: "nftables",
                ..ServiceEntry::default()
            });
            continue;
        }
        let (Some(ip), Some(proto), Some(port)) = (
            key.first()
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Ipv4Addr>().ok()),
            key.get(1).and_then(Value::as_str),
            key.get(2).and_then(port_of),
        ) else {
            continue;
        };
        out.push(ServiceEntry {
            namespace,
            name,
            port_name,
            cluster_ip: Some(ip),
            port,
            protocol: proto.to_owned(),
            chain: "no-endpoint-services".into(),
            no_endpoints: what,
            mode: "nftables",
            ..ServiceEntry::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list ruleset` of the rules `rules::nftables` wrote (nft 1.0.6): two services
    /// (one with a NodePort, one with ClientIP affinity) and one without endpoints.
    const SAMPLE: &str = include_str!("../../testdata/kube-proxy/nft-sample.json");

    #[test]
    fn nft_json_sample() {
        let t = parse(SAMPLE).unwrap();
        assert_eq!(t.len(), 3, "{t:#?}");
        let s0 = t.iter().find(|s| s.name == "svc-0").unwrap();
        assert_eq!(
            (s0.namespace.as_str(), s0.port_name.as_str()),
            ("scale", "http")
        );
        assert_eq!(s0.cluster_ip, Some(Ipv4Addr::new(198, 18, 128, 10)));
        assert_eq!((s0.port, s0.protocol.as_str()), (80, "tcp"));
        assert_eq!(s0.node_port, Some(30080));
        assert_eq!(
            s0.endpoints,
            ["198.18.20.2:8080", "198.18.20.3:8080", "198.18.20.4:8080"]
        );
        assert_eq!(s0.chain, "service-N7G5GMEW-scale/svc-0/tcp/http");
        assert_eq!(
            s0.backends[1].chain,
            "endpoint-TTQTUEBZ-scale/svc-0/tcp/http__198.18.20.3/8080"
        );
        assert_eq!(s0.backends[1].probability.as_deref(), Some("numgen 1 of 3"));
        assert!(!s0.affinity);
        let s1 = t.iter().find(|s| s.name == "svc-1").unwrap();
        assert!(s1.affinity);
        assert_eq!(s1.endpoints.len(), 3);
        let empty = t.iter().find(|s| s.name == "empty").unwrap();
        assert!(empty.endpoints.is_empty());
        assert_eq!(empty.cluster_ip, Some(Ipv4Addr::new(198, 18, 128, 20)));
        assert_eq!(empty.node_port, Some(30080));
        assert!(empty.no_endpoints.starts_with("reject"));
    }

    #[test]
    fn rejects_other_text() {
        assert!(parse("*nat\n").is_err());
    }
}
