//! Keeps the identity of the node current during a run: asks every provider on each rescan,
//! fills in pids/cgroups/namespaces from procfs, and remembers every workload seen, so flows
//! of a container that has since stopped keep its name.
use std::{
    collections::{BTreeMap, HashSet},
    os::fd::{AsFd, BorrowedFd},
    path::PathBuf,
    sync::mpsc,
};

use super::{Identity, Provider, Workload, asking::Asker, cri, docker, lab_records, procfs};
use crate::sys::nudge::Nudge;

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
    /// Each provider on a thread of its own (a runtime that hangs never stalls a refresh).
    providers: Vec<Asker>,
    v2: Option<PathBuf>,
    /// Every workload seen, with the number of the refresh that last saw it.
    seen: BTreeMap<(String, String), (u64, Workload)>,
    refreshes: u64,
    /// Docker's container events, as they arrive.
    docker_rx: Option<mpsc::Receiver<docker::DockerEvent>>,
    /// Woken by each runtime event (`None` if it could not be made).
    nudge: Option<Nudge>,
    /// Namespaces of containers found in cgroups that a connected runtime has not described
    /// yet (it is starting them: its answer, with the name, comes with the next refresh).
    pending: HashSet<u64>,
    pub identity: Identity,
}

impl Tracker {
    /// Connects to what answers. Returns messages about what did not (for the log).
    #[must_use]
    pub fn new(opts: &Options) -> (Self, Vec<String>) {
        let mut notes = Vec::new();
        let mut docker_rx = None;
        let (nudge, nudger) = match Nudge::new() {
            Ok((n, tx)) => (Some(n), Some(tx)),
            Err(_) => (None, None),
        };
        let mut providers: Vec<Box<dyn Provider + Send>> =
            vec![Box::new(lab_records::Labs::default())];
        if let Some(sock) = &opts.docker_socket {
            let (tx, rx) = mpsc::channel();
            match docker::Docker::connect(sock, Some(tx), nudger.clone()) {
                Some(d) => {
                    providers.push(Box::new(d) as Box<dyn Provider + Send>);
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
        let providers = providers
            .into_iter()
            .map(|p| Asker::spawn(p, nudger.clone()))
            .collect();
        let me = Self {
            providers,
            docker_rx,
            nudge,
            v2: crate::sys::cgroup::v2_mount(),
            ..Self::default()
        };
        (me, notes)
    }

    /// What a waiting loop polls to hear of runtime events (a container started, died);
    /// `None` once no runtime can send any (none connected, or its event stream ended).
    #[must_use]
    pub fn events_fd(&self) -> Option<BorrowedFd<'_>> {
        self.nudge.as_ref().filter(|n| !n.closed()).map(AsFd::as_fd)
    }

    /// Whether a runtime announced a change since the last call.
    #[must_use]
    pub fn announced(&self) -> bool {
        self.nudge.as_ref().is_some_and(Nudge::take)
    }

    /// Whether a container in this namespace is still being described by its runtime (seen
    /// in cgroups, not yet in the runtime's answer): a name for it is coming.
    #[must_use]
    pub fn pending(&self, netns: u64) -> bool {
        self.pending.contains(&netns)
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
        self.refresh_keeping().1
    }

    /// [`Self::refresh`], returning the identity it replaced too (for naming what was seen
    /// under it).
    pub fn refresh_keeping(&mut self) -> (Identity, Vec<String>) {
        let (mut now, notes): (Vec<Workload>, Vec<String>) =
            self.providers
                .iter_mut()
                .fold((Vec::new(), Vec::new()), |(mut all, mut notes), p| {
                    let (v, note) = p.ask();
                    all.extend(v);
                    notes.extend(note);
                    (all, notes)
                });
        let procs = procfs::container_processes(self.v2.as_deref());
        let extra = procfs::enrich(&mut now, &procs);
        self.carry_over(&mut now);
        let asked: HashSet<&str> = self
            .providers
            .iter()
            .filter(|p| p.answering())
            .map(Asker::name)
            .collect();
        // A container no provider named yet, of a runtime one of them serves (or of a
        // runtime its cgroup does not tell: a CRI runtime under a custom cgroup parent),
        // is waited for: its provider has not listed it yet. Not if that provider does not
        // answer now: no name is coming.
        self.pending = extra
            .iter()
            .filter(|w| {
                asked.contains(provider_of(&w.runtime))
                    || (w.runtime == "unknown" && !asked.is_empty())
            })
            .filter_map(|w| w.netns)
            .collect();
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
        let before = std::mem::replace(
            &mut self.identity,
            Identity::with_departed(live.into_iter().map(|(_, w)| w).collect(), departed),
        );
        (before, notes)
    }

    /// A container its runtime still lists whose processes are gone (it is stopping, being
    /// removed or restarted) keeps the cgroups and namespace its processes had: the kernel's
    /// socket owners still name those cgroups, and the records of its namespace may be named
    /// with this view (when the namespace changes hands at the next rescan). Without them,
    /// its connections in a shared namespace were named "shared by ..." from then on.
    fn carry_over(&self, now: &mut [Workload]) {
        for w in now.iter_mut().filter(|w| w.cgroups.is_empty()) {
            let Some((_, prev)) = self.seen.get(&(w.runtime.clone(), w.id.clone())) else {
                continue;
            };
            if w.netns.is_some() && w.netns != prev.netns {
                continue;
            }
            w.netns = prev.netns;
            w.cgroups.clone_from(&prev.cgroups);
            w.cgroup_dirs.clone_from(&prev.cgroup_dirs);
        }
    }
}

/// The provider that describes containers of a runtime named in their cgroups.
fn provider_of(runtime: &str) -> &'static str {
    match runtime {
        "docker" => "docker",
        "containerd" | "cri-o" => "cri",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopping_container_keeps_the_cgroups_and_namespace_its_processes_had() {
        let mut t = Tracker::default();
        let ran = Workload {
            name: "web".into(),
            id: "w1".into(),
            runtime: "docker".into(),
            netns: Some(10),
            cgroups: vec![7],
            cgroup_dirs: vec!["/sys/fs/cgroup/web".into()],
            ..Workload::default()
        };
        t.seen
            .insert(("docker".into(), "w1".into()), (1, ran.clone()));
        let gone = |netns| Workload {
            netns,
            cgroups: Vec::new(),
            cgroup_dirs: Vec::new(),
            ..ran.clone()
        };
        // Listed, its processes gone: what they had stands.
        let mut now = vec![gone(None), gone(Some(10))];
        t.carry_over(&mut now);
        for w in &now {
            assert_eq!((w.netns, w.cgroups.as_slice()), (Some(10), &[7][..]));
        }
        // Another incarnation (restarted: a new namespace) takes nothing of the old one.
        let mut now = vec![gone(Some(11))];
        t.carry_over(&mut now);
        assert!(now[0].cgroups.is_empty());
    }
}
