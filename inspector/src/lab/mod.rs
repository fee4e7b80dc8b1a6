//! Labs: reproducible topologies in network namespaces, built through rtnetlink. A lab is a
//! "node" namespace holding a bridge (Docker's `docker0`, a CNI `cni0`), one namespace per
//! bridge-mode workload joined to it by a veth pair, host-mode workloads in the node itself,
//! container-mode ones in their target's namespace, none-mode ones alone with `lo`, an
//! optional external client routed through the node, Docker's iptables rules, and for a
//! Kubernetes node kube-proxy's exact rules for its Services. Nothing is created in the
//! namespace the inspector runs in. Every address lies in 198.18.0.0/15.
//!
//! `spec` (TOML, embedded ones in `specs/`) -> `plan` (validated, every name computed) ->
//! `build` (made, recorded, removed) and `rules`; `demo` is the main job's scenario on top.
//! A driver: it may use the session, never the reverse.
mod build;
pub mod demo;
pub mod netlink;
pub mod plan;
mod plan_services;
pub mod rules;
pub mod spec;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use build::{LabGuard, down, exec, remove_stale, up};
pub use plan::{NetworkMode, Plan, PlannedWorkload, Publish};
pub use spec::{KubeProxy, LabSpec};

/// What can go wrong with a lab; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab spec: {0}")]
    Spec(String),
    #[error("lab spec {}: {message}", path.display())]
    SpecFile { path: PathBuf, message: String },
    #[error("reading lab spec {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lab '{0}' exists already; remove it with `inspector lab down --name {0}`")]
    Exists(String),
    #[error("no lab named '{0}' is up (see `inspector lab status`)")]
    NotUp(String),
    #[error("lab '{lab}' has no workload '{name}' (it has: {have})")]
    NoWorkload {
        lab: String,
        name: String,
        have: String,
    },
    #[error("the lab needs root (it creates namespaces, links, rules and cgroups)")]
    NotRoot,
    #[error("no cgroup v2 hierarchy is mounted: lab workloads need one for their sockets")]
    NoCgroupV2,
    #[error(
        "kube_proxy ipvs needs a kernel with IPVS: this one has no /proc/net/ip_vs and loading \
         ip_vs failed ({0}); use kube_proxy iptables or nftables here"
    )]
    NoIpvs(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("running {program} (installed by `cargo xtask setup`): {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} in {netns} failed: {stderr}")]
    Command {
        program: String,
        netns: String,
        stderr: String,
    },
    #[error("no command given after --")]
    NoCommand,
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
