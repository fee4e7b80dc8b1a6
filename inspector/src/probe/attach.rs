//! Attaching both tc programs to interfaces inside any network namespace, and detaching.
//!
//! TCX resolves the ifindex in the namespace of the calling thread, so every attach runs on a
//! short-lived thread that has entered the target namespace (`netns::run_in`). We attach with
//! TCX only: the link is a file descriptor we own, so it cannot outlive the process.
use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    tc::{SchedClassifierLinkId, TcAttachOptions},
};

use super::{PROG_EGRESS, PROG_INGRESS, Probe, ProbeError};
use crate::topology::{Link, NsView, netns};

/// (namespace inode, ifindex) of an attached interface.
pub type AttachKey = (u64, u32);

/// The ingress and egress links of one interface.
pub(super) struct Pair {
    ingress: SchedClassifierLinkId,
    egress: SchedClassifierLinkId,
}

impl Probe {
    /// Attaches ingress and egress programs to each of `links` (all in `ns`). Interfaces that
    /// are already attached are skipped. Returns one result per link.
    pub fn attach_links(
        &mut self,
        ns: &NsView,
        links: &[&Link],
    ) -> Vec<Result<AttachKey, ProbeError>> {
        let todo: Vec<&Link> = links
            .iter()
            .copied()
            .filter(|l| !self.links.contains_key(&(ns.netns.inode, l.ifindex)))
            .collect();
        if todo.is_empty() {
            return Vec::new();
        }
        // Tell the programs which namespace each ifindex belongs to *before* attaching, so a
        // non-zero entry is never wrong (see inspector_ifns in the kernel crate).
        for l in &todo {
            let v = self.ifns_value(l.ifindex, Some(ns.netns.inode));
            if let Err(e) = self.set_ifns(l.ifindex, v) {
                return vec![Err(e)];
            }
        }
        let ebpf = &mut self.ebpf;
        let res = netns::run_in(&ns.netns.path, || {
            todo.iter()
                .map(|l| {
                    let pair = attach_one(ebpf, &l.name).map_err(|source| ProbeError::Attach {
                        ifname: l.name.clone(),
                        netns: ns.netns.name.clone(),
                        source: source.into(),
                    })?;
                    Ok((l.ifindex, pair))
                })
                .collect::<Vec<_>>()
        });
        match res {
            Ok(results) => results
                .into_iter()
                .map(|r| {
                    r.map(|(ifindex, pair)| {
                        let key = (ns.netns.inode, ifindex);
                        self.links.insert(key, pair);
                        key
                    })
                })
                .collect(),
            Err(e) => {
                let msg = e.to_string();
                todo.iter()
                    .map(|l| {
                        Err(ProbeError::Attach {
                            ifname: l.name.clone(),
                            netns: ns.netns.name.clone(),
                            source: msg.clone().into(),
                        })
                    })
                    .collect()
            }
        }
    }

    /// Detaches both programs from one interface (a no-op if it is not attached). Works when
    /// the interface or namespace is already gone: the kernel then detached the link itself and
    /// this only closes our descriptor.
    pub fn detach(&mut self, key: AttachKey) {
        let Some(pair) = self.links.remove(&key) else {
            return;
        };
        let v = self.ifns_value(key.1, None);
        let _ = self.set_ifns(key.1, v);
        for (name, id) in [(PROG_INGRESS, pair.ingress), (PROG_EGRESS, pair.egress)] {
            if let Some(p) = self.ebpf.program_mut(name) {
                let p: Result<&mut SchedClassifier, _> = p.try_into();
                if let Ok(p) = p {
                    let _ = p.detach(id);
                }
            }
        }
    }
}

impl Probe {
    /// The namespace to record for `ifindex`: the only namespace in which it is (or is about
    /// to be) attached, or 0 if there are several.
    fn ifns_value(&self, ifindex: u32, adding: Option<u64>) -> u32 {
        let mut owners: std::collections::HashSet<u64> = self
            .links
            .keys()
            .filter(|k| k.1 == ifindex)
            .map(|k| k.0)
            .collect();
        owners.extend(adding);
        match owners.iter().next() {
            Some(ns) if owners.len() == 1 => u32::try_from(*ns).unwrap_or(0),
            _ => 0,
        }
    }

    fn set_ifns(&mut self, ifindex: u32, ns: u32) -> Result<(), ProbeError> {
        if ifindex >= inspector_common::flow::IFNS_SLOTS {
            return Ok(());
        }
        let err = |source| ProbeError::Map {
            map: super::MAP_IFNS,
            source,
        };
        let map = self.ebpf.map_mut(super::MAP_IFNS).ok_or_else(|| {
            err(aya::maps::MapError::InvalidName {
                name: super::MAP_IFNS.into(),
            })
        })?;
        let mut arr: aya::maps::Array<&mut aya::maps::MapData, u32> =
            aya::maps::Array::try_from(map).map_err(err)?;
        arr.set(ifindex, ns, 0).map_err(err)
    }
}

fn attach_one(ebpf: &mut aya::Ebpf, ifname: &str) -> Result<Pair, aya::programs::ProgramError> {
    let mut ids = Vec::with_capacity(2);
    for (name, at) in [
        (PROG_INGRESS, TcAttachType::Ingress),
        (PROG_EGRESS, TcAttachType::Egress),
    ] {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or(aya::programs::ProgramError::NotLoaded)?
            .try_into()?;
        // First in the chain: we see every packet that arrives before another program can
        // drop or redirect it, and we always pass it on (TCX_NEXT) untouched.
        match prog.attach_with_options(ifname, at, TcAttachOptions::TcxOrder(LinkOrder::first())) {
            Ok(id) => ids.push(id),
            Err(e) => {
                // Roll back the ingress link if egress failed.
                for id in ids {
                    let _ = prog_detach(ebpf, PROG_INGRESS, id);
                }
                return Err(e);
            }
        }
    }
    let egress = ids.pop().ok_or(aya::programs::ProgramError::NotLoaded)?;
    let ingress = ids.pop().ok_or(aya::programs::ProgramError::NotLoaded)?;
    Ok(Pair { ingress, egress })
}

fn prog_detach(
    ebpf: &mut aya::Ebpf,
    name: &str,
    id: SchedClassifierLinkId,
) -> Result<(), aya::programs::ProgramError> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or(aya::programs::ProgramError::NotLoaded)?
        .try_into()?;
    prog.detach(id)
}
