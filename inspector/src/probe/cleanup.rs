//! What an inspector that died (SIGKILL, OOM, power loss) can leave behind, and removing it.
//!
//! Only legacy tc filters outlive the process: TCX, cgroup and tracepoint attachments are
//! links held as file descriptors (the kernel drops them with the last descriptor), and no
//! map or program is pinned. A filter is an orphan of ours when it is ours by its identity
//! (see `legacy`) and no living process holds its program: an inspector that runs holds
//! descriptors of its programs, which `/proc/PID/fdinfo` shows as `prog_id`. Filters of a
//! running inspector, and everything that is not ours, are never touched.
use std::{collections::HashSet, io};

use serde::Serialize;

use super::legacy::{self, Filter, Hook};
use crate::topology::Netns;

/// One thing removed (or, with a dry run, that would be).
#[derive(Clone, Debug, Serialize)]
pub struct Removed {
    /// The namespace's name as the topology names it, and its inode.
    pub netns: String,
    pub netns_inode: u64,
    pub ifindex: u32,
    /// "filter" or "qdisc".
    pub what: &'static str,
    /// ingress/egress for a filter; "clsact" for the qdisc.
    pub hook: &'static str,
    /// The filter's handle (0 for the qdisc) and program.
    pub handle: u32,
    pub program: String,
    pub prog_id: u32,
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.what == "qdisc" {
            write!(
                f,
                "removed the clsact qdisc an inspector that died had created on {}/ifindex {}",
                self.netns, self.ifindex
            )
        } else {
            write!(
                f,
                "removed a filter an inspector that died left on {}/ifindex {} {} (handle {:#x}, \
                 program {} id {})",
                self.netns, self.ifindex, self.hook, self.handle, self.program, self.prog_id
            )
        }
    }
}

/// Program ids held open by any process on the node.
#[must_use]
pub fn live_prog_ids() -> HashSet<u32> {
    let mut ids = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return ids;
    };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            // Only bpf-prog descriptors have the line; reading every fdinfo is the cost.
            if let Ok(text) = std::fs::read_to_string(fd.path()) {
                for l in text.lines() {
                    if let Some(v) = l.strip_prefix("prog_id:")
                        && let Ok(id) = v.trim().parse()
                    {
                        ids.insert(id);
                    }
                }
            }
        }
    }
    ids
}

/// Our filters in the namespace the calling thread is in.
pub fn our_filters_here() -> io::Result<Vec<Filter>> {
    let mut out = Vec::new();
    for ifindex in legacy::clsact_interfaces()? {
        for hook in Hook::BOTH {
            out.extend(
                legacy::filters(ifindex, hook)?
                    .into_iter()
                    .filter(Filter::ours),
            );
        }
    }
    Ok(out)
}

/// Removes (or with `dry_run` only lists) every orphan of ours on the node: filters whose
/// program no process holds, then the `clsact` qdiscs we created that are left empty.
/// Returns what was removed and one line per namespace that could not be swept.
#[must_use]
pub fn sweep(all: &[Netns], dry_run: bool) -> (Vec<Removed>, Vec<String>) {
    let mut errors = Vec::new();
    // First look: most nodes have none of ours, and then /proc is not read at all.
    let mut found: Vec<(&Netns, Vec<Filter>, Vec<u32>)> = Vec::new();
    for ns in all {
        match crate::sys::netns::run_in(&ns.path, our_filters_here) {
            Ok(Ok(f)) => {
                let rec = recorded(ns.inode);
                if !f.is_empty() || !rec.is_empty() {
                    found.push((ns, f, rec));
                }
            }
            Ok(Err(e)) | Err(e) => errors.push(format!("namespace {}: {e}", ns.name)),
        }
    }
    let live = if found.iter().any(|(_, f, _)| !f.is_empty()) {
        live_prog_ids()
    } else {
        HashSet::new()
    };
    let mut removed = Vec::new();
    for (ns, filters, rec) in found {
        let r =
            crate::sys::netns::run_in(&ns.path, || remove_here(ns, filters, rec, &live, dry_run));
        match r {
            Ok(Ok(r)) => removed.extend(r),
            Ok(Err(e)) | Err(e) => errors.push(format!("namespace {}: {e}", ns.name)),
        }
    }
    if !dry_run {
        forget_gone(
            &crate::topology::netns::discover()
                .iter()
                .map(|n| n.inode)
                .collect(),
        );
    }
    (removed, errors)
}

/// In the namespace `ns` (the calling thread is in it): removes the orphan filters among
/// `filters`, then the qdiscs recorded as ours (`rec`, and where a filter went) left empty.
fn remove_here(
    ns: &Netns,
    filters: Vec<Filter>,
    mut touched: Vec<u32>,
    live: &HashSet<u32>,
    dry_run: bool,
) -> io::Result<Vec<Removed>> {
    let mut removed = Vec::new();
    for f in filters {
        if f.prog_id != 0 && live.contains(&f.prog_id) {
            continue;
        }
        if !dry_run {
            legacy::delete_filter(f.ifindex, f.hook, f.priority, f.handle)?;
        }
        touched.push(f.ifindex);
        removed.push(Removed {
            netns: ns.name.clone(),
            netns_inode: ns.inode,
            ifindex: f.ifindex,
            what: "filter",
            hook: f.hook.name(),
            handle: f.handle,
            program: f.name,
            prog_id: f.prog_id,
        });
    }
    touched.sort_unstable();
    touched.dedup();
    if !dry_run {
        for ifindex in touched {
            if legacy::remove_clsact_if_ours(ns.inode, ifindex)? {
                removed.push(Removed {
                    netns: ns.name.clone(),
                    netns_inode: ns.inode,
                    ifindex,
                    what: "qdisc",
                    hook: "clsact",
                    handle: 0,
                    program: String::new(),
                    prog_id: 0,
                });
            }
        }
    }
    Ok(removed)
}

/// Interfaces of namespace `inode` whose `clsact` qdisc the inspector recorded as created.
fn recorded(inode: u64) -> Vec<u32> {
    let prefix = format!("{inode}-");
    std::fs::read_dir(legacy::STATE_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(&prefix)?.parse().ok()
        })
        .collect()
}

/// Drops the records of namespaces that no longer exist (their qdiscs went with them).
fn forget_gone(existing: &HashSet<u64>) {
    for e in std::fs::read_dir(legacy::STATE_DIR)
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        let ns = n.split('-').next().and_then(|v| v.parse::<u64>().ok());
        if ns.is_some_and(|ns| !existing.contains(&ns)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
