//! Benchmarks, each a driver over real labs: the same workloads over every network mode side
//! by side (`modes`), what the inspector itself costs next to no observer and tcpdump
//! (`overhead`), identity and attach time for many workloads (`scale`), parse time of a big
//! cluster's Service rules (`services`), the userspace per-packet pipeline (`pipeline`), and
//! the agent's own footprint (`agent`), and capture files written at the flood's rate
//! (`capture`).
//! The workloads (`workload`) and their generator (`loadgen`) are shared; medians and
//! spreads are computed once (`stats`). Reports are rendered by `output`.
pub mod agent;
pub mod capture;
pub mod loadgen;
pub mod modes;
pub mod overhead;
pub mod pipeline;
pub mod scale;
pub mod services;
pub mod stats;
pub mod workload;

pub use stats::Spread;
pub use workload::LoadKind;

/// What can stop a benchmark; each message says what failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Input(String),
    #[error("interrupted; the bench labs and every observer were removed")]
    Interrupted,
    #[error(transparent)]
    Lab(#[from] crate::lab::LabError),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error(transparent)]
    Services(#[from] crate::services::ServicesError),
    #[error(transparent)]
    Probe(#[from] crate::probe::ProbeError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Observer(String),
}

impl BenchError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
