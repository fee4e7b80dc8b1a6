//! Attaching both tc programs to interfaces inside any network namespace, and detaching
//! (with `--kernel-log`, the two log programs too, right behind them).
//!
//! With TCX (Linux 6.6+) each link is a file descriptor we own (`BPF_LINK_CREATE`), so it
//! cannot outlive the process, and closing it detaches. Without it (or with `--attach tc`)
//! the programs go in as legacy `cls_bpf` filters (see `legacy`), removed on drop and, if the
//! process dies first, by the next start or `inspector cleanup` (see `cleanup`). Both resolve
//! the ifindex in the namespace of the calling thread, so attaches run on worker threads that
//! have entered the target namespace.
//!
//! Every TCX attach and detach waits for an RCU grace period in the kernel (~12 ms on this
//! machine), so doing them one after another costs 25 s for 1000 interfaces. The grace
//! periods of concurrent callers overlap, so attaches and detaches run on many threads at once.
use std::{
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    sync::Mutex,
};

// BPF_LINK_CREATE is called directly (not through aya's `SchedClassifier::attach`): the
// links are created on many worker threads at once, each inside another namespace, from the
// program's descriptor alone, and aya's attach needs `&mut` to the program (one thread).

use aya::programs::SchedClassifier;

use super::{
    PROG_EGRESS, PROG_EMPTY, PROG_INGRESS, PROG_LOG_EGRESS, PROG_LOG_INGRESS, Probe, ProbeError,
};
use crate::topology::{Link, NsView};

/// (namespace inode, ifindex) of an attached interface.
pub type AttachKey = (u64, u32);

/// The ingress and egress attachments of one interface (and the log programs' when
/// logging); dropping it detaches them all.
pub(super) struct LinkPair {
    /// The TCX links (none with legacy tc or the global hooks).
    pub(super) links: Vec<OwnedFd>,
    _filters: Option<super::legacy_guard::Filters>,
}

/// Programs to attach: (ingress, egress) of the observing programs, and of the log programs
/// when `--kernel-log` loaded them.
#[derive(Clone, Copy)]
struct Progs {
    observe: (super::Prog, super::Prog),
    log: Option<(super::Prog, super::Prog)>,
    mode: super::AttachMode,
}

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const BPF_F_BEFORE: u32 = 8;
/// Threads attaching (or detaching) at once.
const WORKERS: usize = 64;
/// Batches at least this large use expedited RCU when `--fast-attach` is on.
const FAST_BATCH: usize = 16;
const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

/// `--fast-attach`: while alive, the kernel's grace periods are expedited (IPIs to every CPU
/// instead of waiting for them to pass through a quiescent state), which makes each TCX
/// attach/detach take ~0.2 ms instead of ~9 ms here. The previous setting is restored on
/// drop; a process killed (SIGKILL) inside the window would leave it set, so this is opt-in.
struct Expedited(Option<String>);

impl Expedited {
    fn new(on: bool, n: usize) -> Self {
        if !on || n < FAST_BATCH {
            return Self(None);
        }
        let prev = std::fs::read_to_string(RCU_EXPEDITED).ok();
        if prev.as_deref().map(str::trim) == Some("0") && std::fs::write(RCU_EXPEDITED, "1").is_ok()
        {
            Self(prev)
        } else {
            Self(None)
        }
    }
}

impl Drop for Expedited {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            let _ = std::fs::write(RCU_EXPEDITED, prev.trim());
        }
    }
}

/// The `link_create` part of `union bpf_attr` for TCX.
#[repr(C)]
struct LinkCreateTcx {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

/// `BPF_LINK_CREATE` for TCX, first in the chain (`BPF_F_BEFORE` with no anchor): we see
/// every packet before another program can drop or redirect it, and always pass it on.
fn tcx_link(prog: RawFd, ifindex: u32, attach_type: u32) -> std::io::Result<OwnedFd> {
    let attr = LinkCreateTcx {
        prog_fd: u32::try_from(prog).map_err(std::io::Error::other)?,
        target_ifindex: ifindex,
        attach_type,
        flags: BPF_F_BEFORE,
        relative_fd: 0,
        _pad: 0,
        expected_revision: 0,
    };
    // SAFETY: bpf(2) reads `size_of::<LinkCreateTcx>()` bytes of a valid, initialised attr.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            &raw const attr,
            std::mem::size_of::<LinkCreateTcx>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn prog_fd(ebpf: &aya::Ebpf, name: &'static str) -> Result<RawFd, ProbeError> {
    let prog: &SchedClassifier = ebpf
        .program(name)
        .ok_or(ProbeError::MissingProgram(name))?
        .try_into()
        .map_err(super::error::program_err(name))?;
    let fd = prog.fd().map_err(super::error::program_err(name))?;
    Ok(fd.as_fd().as_raw_fd())
}

/// One unit of work: some links of one namespace.
struct Job<'a> {
    ns: &'a NsView,
    links: Vec<&'a Link>,
}

type Outcome = (AttachKey, Result<LinkPair, ProbeError>);

fn run_job(job: &Job<'_>, progs: Progs) -> Vec<Outcome> {
    let fail = |l: &Link, e: std::io::Error| ProbeError::Attach {
        ifname: l.name.clone(),
        netns: job.ns.netns.name.clone(),
        source: e,
    };
    // This worker thread enters the namespace (CLONE_NEWNET is per-thread).
    let entered =
        std::fs::File::open(&job.ns.netns.path).and_then(|f| crate::sys::netns::enter(&f));
    job.links
        .iter()
        .map(|l| {
            let key = (job.ns.netns.inode, l.ifindex);
            if let Err(e) = &entered {
                return (
                    key,
                    Err(fail(l, std::io::Error::new(e.kind(), e.to_string()))),
                );
            }
            // Each goes first in its chain, so the log programs (attached first) end up
            // right behind the observing ones. If one fails, dropping the links made so far
            // rolls them back.
            let order = progs.log.into_iter().chain([progs.observe]);
            let pair = match progs.mode {
                super::AttachMode::Tcx => {
                    let mut links = Vec::with_capacity(4);
                    order
                        .into_iter()
                        .try_for_each(|(ingress, egress)| {
                            links.push(tcx_link(ingress.0, l.ifindex, BPF_TCX_INGRESS)?);
                            links.push(tcx_link(egress.0, l.ifindex, BPF_TCX_EGRESS)?);
                            Ok(())
                        })
                        .map(|()| LinkPair {
                            links,
                            _filters: None,
                        })
                }
                // Never here: global hooks select interfaces in `select_many`.
                super::AttachMode::Global => Ok(LinkPair {
                    links: Vec::new(),
                    _filters: None,
                }),
                super::AttachMode::Tc => {
                    super::legacy_guard::Filters::attach(&job.ns.netns.path, key, order).map(|f| {
                        LinkPair {
                            links: Vec::new(),
                            _filters: Some(f),
                        }
                    })
                }
            };
            (key, pair.map_err(|e| fail(l, e)))
        })
        .collect()
}

impl Probe {
    /// Attaches ingress and egress programs to each listed link, on many threads at once.
    /// Interfaces that are already attached are skipped. Returns one result per link.
    pub fn attach_many(
        &mut self,
        todo: &[(&NsView, Vec<&Link>)],
    ) -> Vec<Result<AttachKey, ProbeError>> {
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for (ns, links) in todo {
            let fresh: Vec<&Link> = links
                .iter()
                .copied()
                .filter(|l| !self.links.contains_key(&(ns.netns.inode, l.ifindex)))
                .collect();
            // Small chunks, so one namespace with many links (a node's bridge ports) is
            // spread over the workers too.
            for chunk in fresh.chunks(4) {
                jobs.push(Job {
                    ns,
                    links: chunk.to_vec(),
                });
            }
        }
        if self.global() {
            return self.select_many(&jobs);
        }
        if jobs.is_empty() {
            return Vec::new();
        }
        // Tell the programs which namespace each ifindex belongs to *before* attaching, so a
        // non-zero entry is never wrong (see inspector_ifns in the kernel crate).
        // An ifindex attached in two namespaces (in this batch or before) gets 0.
        let mut adding: std::collections::HashMap<u32, Vec<u64>> = std::collections::HashMap::new();
        for j in &jobs {
            for l in &j.links {
                adding.entry(l.ifindex).or_default().push(j.ns.netns.inode);
            }
        }
        for (ifindex, nss) in &adding {
            let v = self.ifns_value(*ifindex, nss);
            if let Err(e) = self.set_ifns(*ifindex, v) {
                return vec![Err(e)];
            }
            for ns in nss {
                self.set_attached(*ns, *ifindex, true);
            }
        }
        let progs = match self.progs() {
            Ok(p) => p,
            Err(e) => return vec![Err(e)],
        };
        let n: usize = jobs.iter().map(|j| j.links.len()).sum();
        let _fast = Expedited::new(self.fast_attach, n);
        let queue = Mutex::new(jobs.iter().collect::<Vec<_>>());
        let done: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..WORKERS.min(jobs.len()) {
                s.spawn(|| {
                    while let Some(job) = queue.lock().ok().and_then(|mut q| q.pop()) {
                        let out = run_job(job, progs);
                        if let Ok(mut d) = done.lock() {
                            d.extend(out);
                        }
                    }
                });
            }
        });
        let mut done = done.into_inner().unwrap_or_default();
        done.sort_by_key(|(k, _)| *k);
        let mut results = Vec::new();
        for (key, r) in done {
            results.push(r.map(|pair| {
                self.links.insert(key, pair);
                key
            }));
        }
        results
    }

    /// Detaches both programs from one interface (a no-op if it is not attached). Works when
    /// the interface or namespace is already gone: the kernel then detached the link itself and
    /// this only closes our descriptor.
    pub fn detach(&mut self, key: AttachKey) {
        let Some(pair) = self.links.remove(&key) else {
            return;
        };
        let v = self.ifns_value(key.1, &[]);
        let _ = self.set_ifns(key.1, v);
        self.set_attached(key.0, key.1, false);
        if self.global() {
            let _ = self.set_gsel((key.0 & 0xffff_ffff) << 32 | u64::from(key.1), None);
        }
        drop(pair);
    }

    /// Global hooks: "attaching" is writing each interface's selection (and its namespace
    /// into `inspector_ifns`, which the programs check first); then the programs go on.
    fn select_many(&mut self, jobs: &[Job<'_>]) -> Vec<Result<AttachKey, ProbeError>> {
        let mut results = Vec::new();
        let mut adding: std::collections::HashMap<u32, Vec<u64>> = std::collections::HashMap::new();
        for j in jobs {
            for l in &j.links {
                adding.entry(l.ifindex).or_default().push(j.ns.netns.inode);
            }
        }
        for j in jobs {
            for l in &j.links {
                let key = (j.ns.netns.inode, l.ifindex);
                let v = self.ifns_value(l.ifindex, &adding[&l.ifindex]);
                let r = self.set_ifns(l.ifindex, v).and_then(|()| self.select(key));
                results.push(r.map(|()| {
                    self.links.insert(
                        key,
                        LinkPair {
                            links: Vec::new(),
                            _filters: None,
                        },
                    );
                    key
                }));
            }
        }
        if let Err(e) = self.start_global() {
            results.push(Err(e));
        }
        results
    }

    /// Detaches everything, on many threads at once (see the module comment).
    pub(super) fn detach_all(&mut self) {
        let pairs: Vec<LinkPair> = self.links.drain().map(|(_, p)| p).collect();
        let _fast = Expedited::new(self.fast_attach, pairs.len());
        let workers = WORKERS.min(pairs.len());
        let queue = Mutex::new(pairs);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while let Some(p) = queue.lock().ok().and_then(|mut q| q.pop()) {
                        drop(p);
                    }
                });
            }
        });
    }
}

impl Probe {
    fn progs(&self) -> Result<Progs, ProbeError> {
        let pair = |i, e| -> Result<_, ProbeError> {
            Ok(((prog_fd(&self.ebpf, i)?, i), (prog_fd(&self.ebpf, e)?, e)))
        };
        Ok(Progs {
            mode: self.attach_mode,
            observe: if self.empty {
                pair(PROG_EMPTY, PROG_EMPTY)?
            } else {
                pair(PROG_INGRESS, PROG_EGRESS)?
            },
            log: match self.logger {
                Some(_) => Some(pair(PROG_LOG_INGRESS, PROG_LOG_EGRESS)?),
                None => None,
            },
        })
    }

    /// The namespace to record for `ifindex`: the only namespace in which it is (or is about
    /// to be) attached, or 0 if there are several.
    pub(super) fn ifns_value(&self, ifindex: u32, adding: &[u64]) -> u32 {
        let mut owners: std::collections::HashSet<u64> = self
            .links
            .keys()
            .filter(|k| k.1 == ifindex)
            .map(|k| k.0)
            .collect();
        owners.extend(adding.iter().copied());
        match owners.iter().next() {
            Some(ns) if owners.len() == 1 => u32::try_from(*ns).unwrap_or(0),
            _ => 0,
        }
    }

    /// Adds or removes an interface in `inspector_atch` (what the stack's tracepoints report).
    /// Best effort: an entry that cannot be written only loses those hooks' events there.
    pub(super) fn set_attached(&mut self, netns: u64, ifindex: u32, on: bool) {
        let Some(map) = self.ebpf.map_mut(super::MAP_ATTACHED) else {
            return;
        };
        let Ok(mut m) = aya::maps::HashMap::<&mut aya::maps::MapData, u64, u8>::try_from(map)
        else {
            return;
        };
        let key = (netns & 0xffff_ffff) << 32 | u64::from(ifindex);
        let _ = if on {
            m.insert(key, 1, 0)
        } else {
            m.remove(&key)
        };
    }

    pub(super) fn set_ifns(&mut self, ifindex: u32, ns: u32) -> Result<(), ProbeError> {
        if ifindex >= inspector_common::flow::IFNS_SLOTS {
            return Ok(());
        }
        let err = super::error::map_err(super::MAP_IFNS);
        let hop_shift = self.hop_shift;
        let map = super::map_mut_ref(&mut self.ebpf, super::MAP_IFNS)?;
        let mut arr: aya::maps::Array<&mut aya::maps::MapData, inspector_common::flow::IfInfo> =
            aya::maps::Array::try_from(map).map_err(err)?;
        arr.set(
            ifindex,
            inspector_common::flow::IfInfo {
                netns: ns,
                hop_shift,
            },
            0,
        )
        .map_err(err)
    }

    /// Writes the auto sampling shift into every attached interface's `inspector_ifns` entry.
    pub(super) fn spread_hop_shift(&mut self) -> Result<(), ProbeError> {
        let mut ifindexes: Vec<u32> = self.links.keys().map(|k| k.1).collect();
        ifindexes.sort_unstable();
        ifindexes.dedup();
        for ifindex in ifindexes {
            let v = self.ifns_value(ifindex, &[]);
            self.set_ifns(ifindex, v)?;
        }
        Ok(())
    }
}
