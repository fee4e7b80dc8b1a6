//! Annotation: who is at each end of a record (identity's resolver), and the Service,
//! backend and NAT of a connection (kube-proxy's rules and conntrack).
use std::net::IpAddr;

use super::{Session, records::ServiceOf};
use crate::{
    flows::{FlowRecord, Header},
    identity::{Endpoint, Resolver},
    services::attrib::Services,
};

/// Who is at each end of a packet seen in namespace `seen_in` (flows, drops, packets).
#[must_use]
pub fn ends_of(
    r: &Resolver<'_>,
    src: (Option<IpAddr>, Option<u16>),
    dst: (Option<IpAddr>, Option<u16>),
    ip_proto: u8,
    seen_in: u64,
) -> (Option<Endpoint>, Option<Endpoint>) {
    let one = |(ip, port): (Option<IpAddr>, Option<u16>)| {
        ip.and_then(|ip| r.endpoint(ip, port, ip_proto, seen_in))
    };
    (one(src), one(dst))
}

/// [`ends_of`] a flow record.
#[must_use]
pub fn ends(r: &Resolver<'_>, rec: &FlowRecord) -> (Option<Endpoint>, Option<Endpoint>) {
    ends_of(
        r,
        (rec.hdr.src, rec.hdr.sport),
        (rec.hdr.dst, rec.hdr.dport),
        rec.hdr.ip_proto(),
        rec.netns,
    )
}

/// The Service attribution of the connection a record with ports belongs to.
#[must_use]
pub fn service_of(s: &Services, rec: &FlowRecord) -> Option<ServiceOf> {
    service_of_header(s, &rec.hdr)
}

/// [`service_of`] from the packet's headers alone.
#[must_use]
pub fn service_of_header(s: &Services, hdr: &Header) -> Option<ServiceOf> {
    let (src, sport, dst, dport) = hdr.tuple()?;
    s.lookup(hdr.ip_proto(), src, sport, dst, dport)
        .map(ServiceOf::from)
}

impl Session {
    /// The Service state, refreshed when due (rules when their change stamp moved, looked
    /// at every second; conntrack at most every 100 ms); warnings are reported once. None when Service attribution is off or no
    /// node has Services.
    pub(super) fn services_now(&self) -> Option<std::cell::RefMut<'_, Services>> {
        let mut s = self.services.as_ref()?.borrow_mut();
        s.refresh_rules(false);
        if s.is_empty() {
            return None;
        }
        s.refresh_conntrack(Some(&self.identity.identity));
        for w in s.warnings.drain(..) {
            if self.reported_services.borrow_mut().insert(w.clone()) {
                self.notes.borrow_mut().push(w);
            }
        }
        Some(s)
    }
}
