//! Flow records for printing many: the kernel's counters are read once, filtered, put in
//! order and given their Service while they are small (two fixed-size structs each), and
//! each is named (hook, ends) only as a front-end writes it. So printing 100,000 flows holds
//! 100,000 small rows and one named record, not 100,000 named records (each with its
//! strings, about 1.5 KiB): see docs/robustness.md, "Bounded memory".
use inspector_common::FlowKey;

use super::{
    Session, SessionError,
    annotate::service_of_header,
    records::{Flow, ServiceOf},
};
use crate::{flows::Header, probe::Counts};

/// The flows of one instant, in order (busiest first), not named yet.
pub struct FlowTable<'s> {
    s: &'s Session,
    /// As read from the kernel (filtered in place, sorted in place: no second copy).
    rows: Vec<(FlowKey, Counts)>,
    /// Each row's Service, boxed (most flows go to none); empty when no node has Services.
    services: Vec<Option<Box<ServiceOf>>>,
}

impl Session {
    /// The current flows that pass the filter (and `--service`), busiest first, to be named
    /// one at a time ([`FlowTable::each`]).
    pub fn flow_table(&self) -> Result<FlowTable<'_>, SessionError> {
        let mut rows = self.flow_counters()?;
        rows.sort_by(|a, b| {
            b.1.bytes
                .cmp(&a.1.bytes)
                .then(a.1.first_ns.cmp(&b.1.first_ns))
        });
        let mut services = Vec::new();
        if let Some(svc) = self.services_now() {
            services = rows
                .iter()
                .map(|(k, _)| service_of_header(&svc, &Header::of_key(k)).map(Box::new))
                .collect();
        }
        if let Some(want) = &self.filter.service {
            let keep: Vec<bool> = (0..rows.len())
                .map(|i| {
                    services
                        .get(i)
                        .and_then(Option::as_ref)
                        .is_some_and(|s| &s.ns_name() == want)
                })
                .collect();
            let (mut a, mut b) = (keep.iter(), keep.iter());
            rows.retain(|_| a.next() == Some(&true));
            services.retain(|_| b.next() == Some(&true));
        }
        Ok(FlowTable {
            s: self,
            rows,
            services,
        })
    }
}

impl FlowTable<'_> {
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Keeps the first (busiest) `n`.
    pub fn truncate(&mut self, n: usize) {
        self.rows.truncate(n);
        self.services.truncate(n);
    }

    /// Whether any flow went to a Service.
    #[must_use]
    pub fn any_service(&self) -> bool {
        self.services.iter().any(Option::is_some)
    }

    /// Names each flow in order and hands it to `f` (which may stop with an error).
    ///
    /// # Errors
    /// `f`'s, or the session's when it cannot read the node to name them.
    pub fn each<E: From<SessionError>>(
        &self,
        mut f: impl FnMut(Flow) -> Result<(), E>,
    ) -> Result<(), E> {
        self.s.with_namer(|name| {
            for (i, (k, c)) in self.rows.iter().enumerate() {
                let mut flow = name(k, c);
                flow.service = self.services.get(i).and_then(|s| s.as_deref().cloned());
                f(flow)?;
            }
            Ok(())
        })?
    }

    /// Every flow, named (for front-ends that need them all at once: `path`, `--paths`).
    ///
    /// # Errors
    /// The session cannot read the node to name them.
    pub fn collect(&self) -> Result<Vec<Flow>, SessionError> {
        let mut v = Vec::with_capacity(self.rows.len());
        self.each(|f| {
            v.push(f);
            Ok::<(), SessionError>(())
        })?;
        Ok(v)
    }
}
