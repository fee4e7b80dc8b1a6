//! Reads kube-proxy's nftables-mode service table from `nft -j list table ip kube-proxy`
//! (or a whole `list ruleset`). Service identity is in the maps and chain names: the
//! `service-ips` / `service-nodeports` verdict maps give frontends, `external-*` chains go to
//! `service-*` chains, whose `numgen` vmap (and affinity rules) name the `endpoint-*` chains,
//! whose `dnat` gives the endpoint. Services without endpoints are the `no-endpoint-*` map
//! elements, whose comment is the service-port name.
//!
//! The JSON is deserialised into borrowed, typed structs that skip what is not needed, which
//! keeps 10,000 services well inside the parse budget.
use std::{borrow::Cow, net::Ipv4Addr};

use super::{Backend, ServiceEntry, ServicesError};
use schema::{ElemPair, Obj, Scalar};

mod schema;

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

type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;
/// A service chain's endpoint chains, with their (numgen slot, modulus).
type EndpointChains<'a> = Vec<(Cow<'a, str>, Option<(u64, u64)>)>;

/// What the walk over the JSON objects collects, borrowing from the text.
#[derive(Default)]
struct Acc<'a> {
    service_ips: Vec<ElemPair<'a>>,
    nodeports: Vec<ElemPair<'a>>,
    no_eps: Vec<ElemPair<'a>>,
    /// external-* chain -> the service-*/local-* chain it goes to.
    ext: FxMap<Cow<'a, str>, Cow<'a, str>>,
    /// service chain -> its endpoint chains with their (numgen slot, modulus).
    svc_eps: FxMap<Cow<'a, str>, EndpointChains<'a>>,
    affinity: rustc_hash::FxHashSet<Cow<'a, str>>,
    /// endpoint chain -> DNAT (address, port).
    dnat: FxMap<Cow<'a, str>, (Cow<'a, str>, Option<u16>)>,
}

impl<'a> Acc<'a> {
    fn add(&mut self, o: Obj<'a>) {
        if let Some(m) = o.map {
            if m.table != "kube-proxy" {
                return;
            }
            match m.name.as_ref() {
                "service-ips" => self.service_ips = m.elem,
                "service-nodeports" => self.nodeports = m.elem,
                "no-endpoint-services" | "no-endpoint-nodeports" => self.no_eps.extend(m.elem),
                _ => {}
            }
        } else if let Some(r) = o.rule {
            if r.table != "kube-proxy" {
                return;
            }
            let chain = r.chain;
            if chain.starts_with("external-") {
                for e in r.expr {
                    if let Some(t) = e.goto.or(e.jump)
                        && (t.target.starts_with("service-") || t.target.starts_with("local-"))
                    {
                        self.ext.insert(chain.clone(), t.target);
                    }
                }
            } else if chain.starts_with("service-") || chain.starts_with("local-") {
                let has_set_match = r.expr.iter().any(|e| {
                    e.matches
                        .as_ref()
                        .and_then(|m| m.right.as_str())
                        .is_some_and(|s| s.starts_with("@affinity-"))
                });
                if has_set_match {
                    self.affinity.insert(chain.clone());
                }
                let eps = self.svc_eps.entry(chain).or_default();
                for e in r.expr {
                    if let Some(t) = e.goto.or(e.jump)
                        && t.target.starts_with("endpoint-")
                        && !eps.iter().any(|(c, _)| *c == t.target)
                    {
                        eps.push((t.target, None));
                    }
                    if let Some(v) = e.vmap {
                        let modulus = v.key.numgen.map(|n| n.modulus);
                        for (slot, target) in v.data.0 {
                            let Some(target) = target else { continue };
                            let label = slot.zip(modulus);
                            match eps.iter_mut().find(|(c, _)| *c == target) {
                                Some(e) => e.1 = label,
                                None => eps.push((target, label)),
                            }
                        }
                    }
                }
            } else if chain.starts_with("endpoint-") {
                for e in r.expr {
                    if let Some(d) = e.dnat
                        && let Some(a) = d.addr
                    {
                        self.dnat.insert(chain.clone(), (a, d.port));
                    }
                }
            }
        }
    }
}

/// Streams `{"nftables": [...]}` into an [`Acc`], one object at a time.
struct DocSeed<'s, 'a>(&'s mut Acc<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for DocSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DocSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nft's JSON document")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(k) = a.next_key::<&'de str>()? {
            if k == "nftables" {
                seen = true;
                a.next_value_seed(ListSeed(&mut *self.0))?;
            } else {
                a.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        if seen {
            Ok(())
        } else {
            Err(serde::de::Error::missing_field("nftables"))
        }
    }
}

struct ListSeed<'s, 'a>(&'s mut Acc<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for ListSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ListSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of nft objects")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while let Some(o) = a.next_element::<Obj<'de>>()? {
            self.0.add(o);
        }
        Ok(())
    }
}

/// Walks one JSON document into an [`Acc`].
fn walk(json: &str) -> Result<Acc<'_>, ServicesError> {
    let mut acc = Acc::default();
    let mut de = serde_json::Deserializer::from_str(json);
    serde::de::DeserializeSeed::deserialize(DocSeed(&mut acc), &mut de)
        .and_then(|()| de.end())
        .map_err(|e| ServicesError::NftJson(e.to_string()))?;
    Ok(acc)
}

/// The top-level list's objects as two runs of text (`{..}, {..}, ... {..}`), cut before a
/// rule object near the middle; None if the text is not laid out that way.
fn split(json: &str) -> Option<(&str, &str)> {
    const MARK: &str = "}}, {\"rule\": {";
    let body = json
        .strip_prefix("{\"nftables\": [")?
        .trim_end()
        .strip_suffix("]}")?;
    let mid = body.len() / 2;
    let at = mid + body.get(mid..)?.find(MARK)?;
    Some((&body[..at + 2], &body[at + 4..]))
}

/// Walks a run of comma-separated objects (part of the top-level list).
fn walk_objects(mut text: &str) -> Result<Acc<'_>, ServicesError> {
    let mut acc = Acc::default();
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return Ok(acc);
        }
        let mut it = serde_json::Deserializer::from_str(text).into_iter::<Obj<'_>>();
        match it.next() {
            Some(Ok(o)) => acc.add(o),
            Some(Err(e)) => return Err(ServicesError::NftJson(e.to_string())),
            None => return Ok(acc),
        }
        let used = it.byte_offset();
        text = text[used..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

impl Acc<'_> {
    fn merge(&mut self, o: Self) {
        if !o.service_ips.is_empty() {
            self.service_ips.extend(o.service_ips);
        }
        self.nodeports.extend(o.nodeports);
        self.no_eps.extend(o.no_eps);
        self.ext.extend(o.ext);
        self.svc_eps.reserve(o.svc_eps.len());
        self.dnat.reserve(o.dnat.len());
        for (k, v) in o.svc_eps {
            let e = self.svc_eps.entry(k).or_default();
            for (c, slot) in v {
                match e.iter_mut().find(|(x, _)| *x == c) {
                    Some(x) => x.1 = x.1.or(slot),
                    None => e.push((c, slot)),
                }
            }
        }
        self.affinity.extend(o.affinity);
        self.dnat.extend(o.dnat);
    }
}

/// The service table in `nft -j` output.
///
/// # Errors
/// Text that is not nft's JSON.
pub fn parse(json: &str) -> Result<Vec<ServiceEntry>, ServicesError> {
    parse_with(json, 1 << 20)
}

/// [`parse`], splitting the walk over two threads above `split_above` bytes.
fn parse_with(json: &str, split_above: usize) -> Result<Vec<ServiceEntry>, ServicesError> {
    // Big dumps: the top-level list is cut in two at a rule object near the middle and each
    // half walked on its own thread (the walk is most of the time). Both borrow the text.
    let acc = match (json.len() > split_above).then(|| split(json)).flatten() {
        Some((a, b)) => std::thread::scope(|s| {
            let t = s.spawn(|| walk_objects(a));
            let second = walk_objects(b)?;
            let mut first = t
                .join()
                .map_err(|_| ServicesError::NftJson("parser thread panicked".into()))??;
            first.merge(second);
            Ok::<_, ServicesError>(first)
        })?,
        None => walk(json)?,
    };
    let Acc {
        service_ips,
        nodeports,
        no_eps,
        ext,
        svc_eps,
        affinity,
        dnat,
    } = acc;
    let mut out = Vec::with_capacity(service_ips.len());
    let mut by_chain: FxMap<&str, usize> = FxMap::default();
    by_chain.reserve(service_ips.len());
    let entry = |chain: &str| -> ServiceEntry {
        let backends: Vec<Backend> = svc_eps
            .get(chain)
            .map(|v| {
                v.iter()
                    .filter_map(|(c, slot)| {
                        let (addr, port) = dnat.get(c.as_ref())?;
                        Some(Backend {
                            endpoint: match port {
                                Some(p) => format!("{addr}:{p}"),
                                None => addr.to_string(),
                            },
                            chain: c.to_string(),
                            probability: slot.map(|(s, m)| format!("numgen {s} of {m}")),
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
            affinity: affinity.contains(chain),
            mode: "nftables",
            ..ServiceEntry::default()
        }
    };
    for el in &service_ips {
        let key = el.parts();
        let (Some(ip), Some(proto), Some(port), Some(chain)) = (
            key.first()
                .and_then(Scalar::as_str)
                .and_then(|s| s.parse::<Ipv4Addr>().ok()),
            key.get(1).and_then(Scalar::as_str),
            key.get(2).and_then(Scalar::port),
            el.verdict.as_deref(),
        ) else {
            continue;
        };
        if !(chain.starts_with("service-") || chain.starts_with("local-")) {
            continue; // external IPs / load balancers go to external-* chains
        }
        let mut e = entry(chain);
        e.cluster_ip = Some(ip);
        proto.clone_into(&mut e.protocol);
        e.port = port;
        by_chain.insert(chain, out.len());
        out.push(e);
    }
    for el in &nodeports {
        let key = el.parts();
        let (Some(proto), Some(port), Some(chain)) = (
            key.first().and_then(Scalar::as_str),
            key.get(1).and_then(Scalar::port),
            el.verdict.as_deref(),
        ) else {
            continue;
        };
        let svc = ext
            .get(chain)
            .map_or_else(|| chain.to_owned(), ToString::to_string);
        if let Some(i) = by_chain.get(svc.as_str()) {
            out[*i].node_port = Some(port);
        } else {
            let mut e = entry(&svc);
            proto.clone_into(&mut e.protocol);
            e.node_port = Some(port);
            out.push(e);
        }
    }
    for el in &no_eps {
        let key = el.parts();
        let verdict = el.verdict.as_deref().unwrap_or("");
        let spn = el.comment().unwrap_or_default().to_owned();
        let (namespace, name, port_name) = super::split_spn(&spn);
        let what = if verdict == "reject-chain" {
            "reject via no-endpoint-services -> reject-chain".to_owned()
        } else {
            format!("{verdict} via no-endpoint-services")
        };
        if key.len() == 2 {
            let (Some(proto), Some(port)) = (key[0].as_str(), key[1].port()) else {
                continue;
            };
            if let Some(e) = out.iter_mut().find(|e| {
                e.endpoints.is_empty()
                    && e.protocol == proto
                    && e.namespace == namespace
                    && e.name == name
                    && e.port_name == port_name
            }) {
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
                .and_then(Scalar::as_str)
                .and_then(|s| s.parse::<Ipv4Addr>().ok()),
            key.get(1).and_then(Scalar::as_str),
            key.get(2).and_then(Scalar::port),
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
    /// (one with a `NodePort`, one with `ClientIP` affinity) and one without endpoints.
    const SAMPLE: &str = include_str!("../../../testdata/kube-proxy/nft-sample.json");

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
    fn the_two_thread_walk_gives_the_same_table() {
        assert!(
            split(SAMPLE).is_some(),
            "the sample has rule objects to cut at"
        );
        let one = parse_with(SAMPLE, usize::MAX).unwrap();
        let two = parse_with(SAMPLE, 0).unwrap();
        let key = |v: &[ServiceEntry]| {
            let mut k: Vec<String> = v.iter().map(|e| format!("{e:?}")).collect();
            k.sort();
            k
        };
        assert_eq!(key(&one), key(&two));
    }

    #[test]
    fn rejects_other_text() {
        assert!(parse("*nat\n").is_err());
    }
}
