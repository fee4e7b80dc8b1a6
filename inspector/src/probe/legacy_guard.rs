//! The legacy tc filters of one interface, owned like a TCX link: made on a worker thread
//! inside the interface's namespace, removed on drop (with the `clsact` qdisc if the
//! inspector created it and nothing else is left on it).
use std::{io, os::unix::fs::MetadataExt as _, path::PathBuf};

use super::{
    AttachKey, Prog,
    legacy::{self, Hook},
};

pub(super) struct Filters {
    /// A path that opens the namespace; checked against `key.0` before anything is deleted,
    /// so a path that now opens another namespace (a reused pid) is left alone.
    path: PathBuf,
    key: AttachKey,
    added: Vec<(Hook, u32)>,
}

impl Filters {
    /// Attaches each (ingress, egress) pair in order, each ahead of those before it. Runs in
    /// the interface's namespace. On error, what was added is removed again.
    pub(super) fn attach(
        path: &std::path::Path,
        key: AttachKey,
        order: impl IntoIterator<Item = (Prog, Prog)>,
    ) -> io::Result<Self> {
        if legacy::ensure_clsact(key.1)? {
            legacy::note_created(key.0, key.1);
        }
        let mut me = Self {
            path: path.to_owned(),
            key,
            added: Vec::with_capacity(4),
        };
        for (ingress, egress) in order {
            for (hook, (fd, name)) in [(Hook::Ingress, ingress), (Hook::Egress, egress)] {
                let handle = legacy::add_filter(key.1, hook, fd, name)?;
                me.added.push((hook, handle));
            }
        }
        Ok(me)
    }
}

impl Drop for Filters {
    fn drop(&mut self) {
        let added = std::mem::take(&mut self.added);
        let (netns, ifindex) = self.key;
        // The namespace gone: its interfaces took their filters and qdiscs with them.
        let _ = crate::sys::netns::run_in(&self.path, move || {
            let here = std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino());
            if here.ok() != Some(netns) {
                return;
            }
            for (hook, handle) in added {
                let _ = legacy::delete_filter(ifindex, hook, legacy::PRIORITY, handle);
            }
            let _ = legacy::remove_clsact_if_ours(netns, ifindex);
        });
    }
}
