//! The live queries: flow records, drops, paths and statistics, filtered, annotated with
//! who is at each end and the Service they went to, in a stable order.
use std::collections::HashMap;

use inspector_common::FlowKey;

use super::{
    Session, SessionError,
    annotate::{ends, ends_of},
    kept::Kept,
    records::{Drop, Flow, Path, ServiceOf, Stats},
};
use crate::{
    flows::{FlowRecord, drops::DropRecord, path::stitch},
    probe::Counts,
};

impl Session {
    /// Current flow records that pass the filter (and `--service`), busiest first: all of
    /// them named at once (to print many, name them as they are written: [`Self::flow_table`]).
    pub fn flows(&self) -> Result<Vec<Flow>, SessionError> {
        self.flow_table()?.collect()
    }

    /// The kernel's flow counters that pass the packet filter and the workload selectors.
    pub(super) fn flow_counters(&self) -> Result<Vec<(FlowKey, Counts)>, SessionError> {
        Ok(self
            .probe
            .flows()?
            .into_iter()
            .filter(|(k, s)| {
                s.packets > 0 && self.filter.matches(k) && self.selected(k) == Some(true)
            })
            .collect())
    }

    /// Runs `f` with a way to name any flow counter (its record and both ends, no Service;
    /// the names kept from the view it was seen in), the resolver held meanwhile.
    pub(super) fn with_namer<T>(
        &self,
        f: impl FnOnce(&dyn Fn(&FlowKey, &Counts) -> Flow) -> T,
    ) -> Result<T, SessionError> {
        let kept = self.kept.borrow();
        self.with_resolver(|r| {
            let name = |k: &FlowKey, c: &Counts| {
                let mut rec = FlowRecord::new(k, c, &self.names, self.clock);
                let mut e = ends(r, &rec);
                let n = kept.flows.get(&(*k, c.first_ns));
                Kept::apply(n, &mut rec.netns_name, &mut rec.ifname, &mut e);
                Flow {
                    rec,
                    src_endpoint: e.0,
                    dst_endpoint: e.1,
                    service: None,
                }
            };
            f(&name)
        })
    }

    /// The kernel's flow counters that pass the packet filter, unannotated, and a way to
    /// name any of them (its record and both ends, no Service): for front-ends that keep
    /// state per flow and name only new ones (the agent). `f` runs with the resolver held.
    pub fn with_flow_counters<T>(
        &self,
        f: impl FnOnce(&[(FlowKey, Counts)], &dyn Fn(&FlowKey, &Counts) -> Flow) -> T,
    ) -> Result<T, SessionError> {
        let raw = self.flow_counters()?;
        self.with_namer(|name| f(&raw, name))
    }

    /// Every connection to a Service that conntrack holds now (with `--service`, to that
    /// one), whichever hooks saw it: empty when Service attribution is off.
    pub fn service_connections(&self) -> Vec<ServiceOf> {
        let Some(s) = self.services_now() else {
            return Vec::new();
        };
        s.all()
            .map(ServiceOf::from)
            .filter(|c| {
                self.filter
                    .service
                    .as_ref()
                    .is_none_or(|want| &c.ns_name() == want)
            })
            .collect()
    }

    /// The flows as paths: each direction of each flow with its hops in order.
    pub fn paths(&self) -> Result<Vec<Path>, SessionError> {
        Ok(self.paths_of(&self.flows()?))
    }

    /// [`Session::paths`] of flows already read (`flows --top` cuts them first).
    #[must_use]
    pub fn paths_of(&self, flows: &[Flow]) -> Vec<Path> {
        let recs: Vec<&FlowRecord> = flows.iter().map(|f| &f.rec).collect();
        stitch(&recs, &self.topology)
            .into_iter()
            .map(|path| {
                let first = |f: fn(&Flow) -> Option<&crate::identity::Endpoint>| {
                    path.members.iter().find_map(|&i| f(&flows[i]).cloned())
                };
                Path {
                    src_endpoint: first(|f| f.src_endpoint.as_ref()),
                    dst_endpoint: first(|f| f.dst_endpoint.as_ref()),
                    path,
                }
            })
            .collect()
    }

    /// Drops in the selected namespaces (all drops if no namespace was selected) that pass
    /// the packet filter, most first; netfilter drops name the rule that counted them.
    pub fn drops(&self) -> Result<Vec<Drop>, SessionError> {
        let raw = self.probe.drops()?;
        let sel = &self.selection;
        // The rule behind netfilter drops, per namespace: read again (iptables-save -c) only
        // when the namespace's netfilter drops grew since it was last read.
        let mut nf_totals: HashMap<u64, u64> = HashMap::new();
        for (k, st) in &raw {
            if self.probe.drop_reason(k.reason) == "NETFILTER_DROP" {
                *nf_totals.entry(u64::from(k.netns)).or_default() += st.packets;
            }
        }
        let rules: HashMap<u64, Option<String>> = {
            let mut cache = self.nf_rules.borrow_mut();
            cache.retain(|ns, _| nf_totals.contains_key(ns));
            nf_totals
                .iter()
                .map(|(&ns, &total)| {
                    let fresh = cache.get(&ns).is_some_and(|(t, _)| *t == total);
                    if !fresh {
                        cache.insert(ns, (total, self.dropping_rule(ns)));
                    }
                    (ns, cache.get(&ns).and_then(|(_, r)| r.clone()))
                })
                .collect()
        };
        let kept = self.kept.borrow();
        let mut v: Vec<Drop> = self.with_resolver(|r| {
            raw.iter()
                .filter(|(k, _)| sel.netns.is_empty() || sel.netns.contains(&u64::from(k.netns)))
                .filter(|(k, _)| {
                    let key = crate::flows::drops::flow_key(k);
                    self.filter.matches(&key) && self.selected(&key) == Some(true)
                })
                .map(|(k, st)| {
                    let mut rec = DropRecord::new(
                        k,
                        st,
                        self.probe.drop_reason(k.reason),
                        &self.names,
                        self.clock,
                    );
                    let mut e = ends_of(
                        r,
                        (rec.hdr.src, rec.hdr.sport),
                        (rec.hdr.dst, rec.hdr.dport),
                        rec.hdr.ip_proto(),
                        rec.netns,
                    );
                    let n = kept.drops.get(&(*k, st.first_ns));
                    Kept::apply(n, &mut rec.netns_name, &mut rec.ifname, &mut e);
                    let (src_endpoint, dst_endpoint) = e;
                    let rule = (rec.reason == "NETFILTER_DROP")
                        .then(|| rules.get(&rec.netns).cloned().flatten())
                        .flatten();
                    Drop {
                        rec,
                        rule,
                        src_endpoint,
                        dst_endpoint,
                    }
                })
                .collect()
        })?;
        v.sort_by_key(|d| std::cmp::Reverse(d.rec.packets));
        Ok(v)
    }

    /// Kernel-side counters (events sent and lost, parse anomalies, ...) and attach count.
    pub fn stats(&self) -> Result<Stats, SessionError> {
        let raw = self.probe.stats()?;
        let mut counters: std::collections::BTreeMap<&'static str, u64> =
            inspector_common::Stat::ALL
                .iter()
                .map(|s| (s.name(), raw[*s as usize]))
                .collect();
        counters.insert("flows_evicted", self.probe.flows_evicted());
        Ok(Stats {
            attached_interfaces: self.attached(),
            counters,
        })
    }

    /// Flow counters summed over every record (packets): how much the kernel has counted.
    pub fn total_packets(&self) -> Result<u64, SessionError> {
        Ok(self.probe.flows()?.iter().map(|(_, s)| s.packets).sum())
    }

    /// The DROP/REJECT rule in namespace `inode` that counted packets since the start.
    fn dropping_rule(&self, inode: u64) -> Option<String> {
        let (path, start) = self.nf_counters.get(&inode)?;
        let hit = crate::services::counters::snapshot(path.as_deref())
            .grown_since(start)
            .into_iter()
            .next()?;
        Some(format!("{} {}: {}", hit.table, hit.chain, hit.rule))
    }
}
