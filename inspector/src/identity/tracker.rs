//! Keeps the identity of the node current during a run: asks every provider on each rescan,
//! fills in pids/cgroups/namespaces from procfs, and remembers every workload seen, so flows
//! of a container that has since stopped keep its name.
use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::mpsc,
};

use super::{Identity, Provider, Workload, cri, docker, lab_records, procfs};

/// Where to look for runtimes.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Docker's API socket (`None`: do not ask Docker).
    pub docker_socket: Option<PathBuf>,
    /// A CRI socket the user named (an error if it does not answer); `None`: try the usual
    /// paths quietly.
    pub cri_socket: Option<PathBuf>,
}

/// The providers and everything they said so far.
#[derive(Default)]
pub struct Tracker {
    providers: Vec<Box<dyn Provider + Send>>,
    v2: Option<PathBuf>,
    /// Every workload seen, with the number of the refresh that last saw it.
    seen: BTreeMap<(String, String), (u64, Workload)>,
    refreshes: u64,
    /// Docker's container events, as they arrive.
    docker_rx: Option<mpsc::Receiver<docker::DockerEvent>>,
    /// Provider errors already reported (said once).
    reported: HashSet<String>,
    pub identity: Identity,
}

impl Tracker {
    /// Connects to what answers. Returns messages about what did not (for the log).
    #[must_use]
    pub fn new(opts: &Options) -> (Self, Vec<String>) {
        let mut notes = Vec::new();
        let mut docker_rx = None;
        let mut providers: Vec<Box<dyn Provider + Send>> =
            vec![Box::new(lab_records::Labs::default())];
        if let Some(sock) = &opts.docker_socket {
            let (tx, rx) = mpsc::channel();
            match docker::Docker::connect(sock, Some(tx)) {
                Some(d) => {
                    providers.push(Box::new(d));
                    docker_rx = Some(rx);
                }
                None if sock.as_path() != std::path::Path::new(docker::DEFAULT_SOCKET) => {
                    notes.push(format!(
                        "no Docker daemon answers on {}: containers are named from cgroups only",
                        sock.display()
                    ));
                }
                None => {}
            }
        }
        match &opts.cri_socket {
            Some(sock) => match cri::Cri::connect(sock) {
                Ok(c) => providers.push(Box::new(c)),
                Err(e) => notes.push(format!(
                    "no CRI runtime answers on {}: {e}; pods are named from cgroups only",
                    sock.display()
                )),
            },
            None => {
                for sock in cri::DEFAULT_SOCKETS {
                    if std::path::Path::new(sock).exists()
                        && let Ok(c) = cri::Cri::connect(std::path::Path::new(sock))
                    {
                        providers.push(Box::new(c));
                        break;
                    }
                }
            }
        }
        let me = Self {
            providers,
            docker_rx,
            v2: crate::sys::cgroup::v2_mount(),
            ..Self::default()
        };
        (me, notes)
    }

    /// Docker's container events since the last call.
    pub fn drain_docker_events(&self) -> Vec<docker::DockerEvent> {
        self.docker_rx
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }

    /// Asks every provider again. Returns new error messages.
    pub fn refresh(&mut self) -> Vec<String> {
        let (mut now, errors) = super::collect(&mut self.providers);
        let procs = procfs::container_processes(self.v2.as_deref());
        let extra = procfs::enrich(&mut now, &procs);
        self.refreshes += 1;
        for w in now.into_iter().chain(extra) {
            self.seen
                .insert((w.runtime.clone(), w.id.clone()), (self.refreshes, w));
        }
        let (live, departed): (Vec<_>, Vec<_>) = self
            .seen
            .values()
            .cloned()
            .partition(|(at, _)| *at == self.refreshes);
        self.identity =
            Identity::with_departed(live.into_iter().map(|(_, w)| w).collect(), departed);
        errors
            .into_iter()
            .filter(|e| self.reported.insert(e.clone()))
            .collect()
    }
}
