//! cgroup v2 facts: where the hierarchy is mounted and a process's directory and id there
//! (the id is the directory's inode: what the kernel reports as a socket's owner).
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup on unified hosts,
/// /sys/fs/cgroup/unified on hybrid ones), from /proc/self/mountinfo.
#[must_use]
pub fn v2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    v2_mount_in(&info)
}

/// [`v2_mount`] from the text of a mountinfo file.
#[must_use]
pub fn v2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next() == Some("cgroup2"))
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// The cgroup v2 directory of a process and its id, below the root of the v2 hierarchy
/// mounted at `mount`.
#[must_use]
pub fn v2_of_pid(mount: &Path, pid: u32) -> Option<(PathBuf, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = mount.join(rel.trim_start_matches('/'));
    let id = fs::metadata(&dir).ok()?.ino();
    Some((dir, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v2_mount_hybrid_and_unified() {
        let hybrid = "25 24 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            v2_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(v2_mount_in(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(v2_mount_in("1 0 0:1 / / rw - ext4 /dev/vda rw\n"), None);
    }
}
