//! What one measured path is, whatever built it: a lab mode, a real runtime's mode, or the
//! two workloads of `--between`; and how its two ends are reached.
use serde::{Deserialize, Serialize};

use crate::bench::loadgen::Ends;

/// Who built the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    /// The project's own labs (namespaces wired like Docker's and kube-proxy's).
    #[default]
    Lab,
    /// Real containers of a real dockerd.
    Docker,
    /// Real pods of a CRI runtime (containerd) on its CNI network.
    Cri,
    /// Two workloads that already existed (`--between`).
    Between,
}

impl Runtime {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Lab => "lab",
            Self::Docker => "docker",
            Self::Cri => "cri",
            Self::Between => "between",
        }
    }
}

/// How one path is reached, once what it runs on is up.
#[derive(Clone, Debug)]
pub(super) struct Reach {
    pub ends: Ends,
    /// Namespaces the traced run attaches to (`--netns` values), and whether lo is on the
    /// path.
    pub trace_ns: Vec<String>,
    pub lo: bool,
    /// Where the traced run asks who the ends are (a private dockerd's socket, say).
    pub identity: crate::identity::tracker::Options,
}

/// What must be in place only while a path's runs go (a CRI mode's kube-proxy rules: the
/// other modes are measured on the node without them).
pub(super) trait Around: Send + Sync {
    /// Before each run over the path (priming, measured, traced).
    fn before(&self) -> Result<(), super::super::BenchError>;
    /// After each run; also when it failed.
    fn after(&self);
}

/// One path the workloads run over.
#[derive(Clone, Debug)]
pub(super) struct Target {
    /// The report's name for it (`bridge`, `docker-bridge`, `between`).
    pub name: String,
    pub what: String,
    pub runtime: Runtime,
    /// The lab mode a real runtime's mode is measured against.
    pub twin: Option<String>,
    /// (nftables, Services) of a `ClusterIP` mode.
    pub kube: Option<(bool, u32)>,
    pub reach: Reach,
    pub around: Option<std::sync::Arc<dyn Around>>,
}

impl std::fmt::Debug for dyn Around {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Around")
    }
}
