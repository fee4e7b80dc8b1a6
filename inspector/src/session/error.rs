//! What can stop a session from starting or answering; each message says what to do.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Probe(#[from] crate::probe::ProbeError),
    #[error(
        "unknown network namespace '{0}': no namespace on this node has that inode, name or \
         path (list them with `inspector topology`)"
    )]
    UnknownNetns(String),
    #[error(
        "unknown interface '{name}': no such interface in {scope} (list them with \
         `inspector topology`)"
    )]
    UnknownInterface { name: String, scope: &'static str },
    #[error(
        "no Service '{name}' in kube-proxy's rules of {nodes} (list them with `inspector \
         services`)"
    )]
    UnknownService { name: String, nodes: String },
    #[error("--attach global counts flows only: {0} needs the tc programs (--attach tcx or tc)")]
    GlobalFlowsOnly(&'static str),
    #[error("--service '{0}' must be NAMESPACE/NAME (lower-case letters, digits and '-')")]
    BadServiceName(String),
    #[error("writing the ready file {}: {source}", path.display())]
    ReadyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registering the stop signals (SIGINT, SIGTERM, SIGHUP): {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Path(#[from] super::path::PathError),
}
