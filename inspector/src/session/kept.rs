//! Attribution at observation time: a flow or drop record keeps the names it had when its
//! packets crossed. Records are named when read, against the node as it is then; when a
//! rescan finds that a namespace or address changed hands (a container restarted and its
//! address went to its new namespace, a container left a shared namespace, an inode or an
//! address was reused), the records it touches are named first, under the view they were
//! seen in, and keep those names until the kernel lets them go.
//!
//! The latency rows' names (each hop's and each endpoint pair's) are kept the same way: the
//! kernel's hop slots and the event aggregator's hops and pairs live as long as the session.
//!
//! Many records are kept at once (a namespace that goes takes its link-local multicast
//! with it: tens of thousands of flow records on a busy bridge), and they share few names:
//! each name and each end is held once, shared (`Rc`), so a kept record costs its key and
//! four pointers. At most as many are kept as the kernel's tables hold.
use std::{
    collections::{HashMap, HashSet},
    rc::Rc,
};

use inspector_common::{DropKey, FlowKey, PacketEvent};

use super::{Session, annotate::ends_of};
use crate::{
    flows::{Header, drops::flow_key, hook_names},
    identity::{Endpoint, Identity, Resolver, owners::Moved},
};

/// The names a record had when seen.
#[derive(Clone, Debug)]
pub(super) struct Names {
    pub netns_name: Rc<str>,
    pub ifname: Rc<str>,
    pub src: Option<Rc<Endpoint>>,
    pub dst: Option<Rc<Endpoint>>,
}

/// One shared copy of each name and end seen by one `keep_names`.
#[derive(Default)]
struct Shared {
    strs: HashSet<Rc<str>>,
    ends: HashSet<Rc<Endpoint>>,
}

impl Shared {
    fn str(&mut self, s: String) -> Rc<str> {
        if let Some(r) = self.strs.get(s.as_str()) {
            return Rc::clone(r);
        }
        let r: Rc<str> = Rc::from(s);
        self.strs.insert(Rc::clone(&r));
        r
    }

    fn end(&mut self, e: Option<Endpoint>) -> Option<Rc<Endpoint>> {
        let e = e?;
        if let Some(r) = self.ends.get(&e) {
            return Some(Rc::clone(r));
        }
        let r = Rc::new(e);
        self.ends.insert(Rc::clone(&r));
        Some(r)
    }
}

/// Names kept per flow and drop record (key and first packet's time: a record the kernel
/// evicted and created again is another), and per latency hop and pair.
#[derive(Default)]
pub(super) struct Kept {
    pub flows: HashMap<(FlowKey, u64), Names>,
    pub drops: HashMap<(DropKey, u64), Names>,
    /// `netns/ifname(dir)` per hop ([`hop_id`]).
    pub hops: HashMap<HopId, String>,
    /// Source, destination and protocol per pair (the naming event's key).
    pub pairs: HashMap<FlowKey, (String, String, crate::net::Proto)>,
}

/// A hop of the latency rows: namespace, ifindex, hook and direction.
pub(super) type HopId = (u32, u32, u8, u8);

/// The hop an event was seen at.
pub(super) fn hop_id(ev: &PacketEvent) -> HopId {
    (ev.key.netns, ev.key.ifindex, ev.key.hook, ev.key.direction)
}

impl Kept {
    /// The record's names as kept, applied to `rec` and its ends.
    pub fn apply(
        n: Option<&Names>,
        netns_name: &mut String,
        ifname: &mut String,
        ends: &mut (Option<Endpoint>, Option<Endpoint>),
    ) {
        if let Some(n) = n {
            *netns_name = n.netns_name.to_string();
            *ifname = n.ifname.to_string();
            *ends = (n.src.as_deref().cloned(), n.dst.as_deref().cloned());
        }
    }
}

impl Session {
    /// Called by a rescan before the new view replaces the old (`before` is the identity
    /// the old view was named with): names every record `moved` touches as it was seen.
    /// Kept names of records the kernel no longer holds are let go.
    pub(super) fn keep_names(&self, before: &Identity, moved: &Moved) {
        if moved.is_empty() {
            return;
        }
        let (Ok(flows), Ok(drops)) = (self.probe.flows(), self.probe.drops()) else {
            return;
        };
        let (hop_events, pair_events) = self.latency_events();
        let _ = self.with_resolver_of(before, &self.topology, |r| {
            let mut kept = self.kept.borrow_mut();
            let shared = std::cell::RefCell::new(Shared::default());
            let name = |netns: u32, ifindex: u32, hdr: &Header| {
                let inode = u64::from(netns);
                let (netns_name, ifname) = hook_names(&self.names, inode, ifindex);
                named(
                    r,
                    inode,
                    (netns_name, ifname),
                    hdr,
                    &mut shared.borrow_mut(),
                )
            };
            keep(
                &mut kept.flows,
                &flows,
                moved,
                |k| (k.netns, k.ifindex, Header::of_key(k)),
                &name,
            );
            keep(
                &mut kept.drops,
                &drops,
                moved,
                |k| (k.netns, k.ifindex, Header::of_key(&flow_key(k))),
                &name,
            );
            for ev in &hop_events {
                if moved.netns.contains(&u64::from(ev.key.netns)) {
                    kept.hops
                        .entry(hop_id(ev))
                        .or_insert_with(|| self.hop_name_now(ev));
                }
            }
            for ev in &pair_events {
                let h = Header::of_key(&ev.key);
                if moved.touches(u64::from(ev.key.netns), h.src, h.dst) {
                    kept.pairs
                        .entry(ev.key)
                        .or_insert_with(|| self.pair_names_now(r, ev));
                }
            }
        });
    }
}

/// Lets go of kept names whose record the kernel no longer holds (`records`: all it holds
/// now), and names the records `moved` touches that have none yet.
fn keep<K: Copy + Eq + std::hash::Hash>(
    kept: &mut HashMap<(K, u64), Names>,
    records: &[(K, crate::probe::Counts)],
    moved: &Moved,
    place: impl Fn(&K) -> (u32, u32, Header),
    name: &dyn Fn(u32, u32, &Header) -> Names,
) {
    let present: HashSet<(K, u64)> = records.iter().map(|(k, c)| (*k, c.first_ns)).collect();
    kept.retain(|k, _| present.contains(k));
    for (k, c) in records {
        if kept.contains_key(&(*k, c.first_ns)) {
            continue;
        }
        let (netns, ifindex, hdr) = place(k);
        if moved.touches(u64::from(netns), hdr.src, hdr.dst) {
            kept.insert((*k, c.first_ns), name(netns, ifindex, &hdr));
        }
    }
}

/// A record's names under resolver `r`, shared where already seen.
fn named(
    r: &Resolver<'_>,
    netns: u64,
    (netns_name, ifname): (String, String),
    hdr: &Header,
    shared: &mut Shared,
) -> Names {
    let (src, dst) = ends_of(
        r,
        (hdr.src, hdr.sport),
        (hdr.dst, hdr.dport),
        hdr.ip_proto(),
        netns,
    );
    Names {
        netns_name: shared.str(netns_name),
        ifname: shared.str(ifname),
        src: shared.end(src),
        dst: shared.end(dst),
    }
}
