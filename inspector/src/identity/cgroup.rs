//! cgroups as runtimes name them: a process's cgroup path and the container id (and pod) each
//! runtime's naming puts in it. Where the v2 hierarchy is mounted is `sys::cgroup`.
use std::fs;

/// The cgroup path of a process: the v2 entry (`0::/docker/<id>`) if its path is not the
/// root, else the first v1 entry that is not (`4:memory:/docker/<id>`).
#[must_use]
pub fn of_pid(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    path_in(&text).map(str::to_owned)
}

fn path_in(text: &str) -> Option<&str> {
    let entries: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let id = it.next()?;
            let _ = it.next()?;
            Some((id, it.next()?))
        })
        .collect();
    entries
        .iter()
        .find(|(id, p)| *id == "0" && *p != "/")
        .or_else(|| entries.iter().find(|(_, p)| *p != "/"))
        .map(|(_, p)| *p)
}

/// A container as its cgroup path names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupContainer {
    pub runtime: &'static str,
    pub id: String,
    /// The pod's uid, when the path is under kubepods.
    pub pod_uid: Option<String>,
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads the container id (and runtime, and pod uid) out of a cgroup path, for the naming of
/// Docker, containerd (CRI and plain), CRI-O and Podman, with systemd or cgroupfs drivers.
/// `None` when the path names no container (a host service, a conmon, the root).
#[must_use]
pub fn parse_path(path: &str) -> Option<CgroupContainer> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let last = *parts.last()?;
    let base = last.strip_suffix(".scope").unwrap_or(last);
    let prefixed = [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
        ("nerdctl-", "containerd"),
    ];
    let (runtime, id) = prefixed
        .iter()
        .find_map(|(p, rt)| base.strip_prefix(p).map(|id| (*rt, id)))
        .or_else(|| {
            // cgroupfs driver: the bare id, named by its parent directory.
            let parent = parts.len().checked_sub(2).map_or("", |i| parts[i]);
            let rt = match parent {
                "docker" => "docker",
                "libpod_parent" => "podman",
                _ if parts.iter().any(|p| p.starts_with("kubepods")) => "containerd",
                _ => "unknown",
            };
            Some((rt, base))
        })?;
    if !is_id(id) {
        return None;
    }
    let pod_uid = parts.iter().find_map(|p| {
        let p = p.strip_suffix(".slice").unwrap_or(p);
        let uid = p
            .rsplit_once("-pod")
            .map(|(_, u)| u)
            .or_else(|| p.strip_prefix("pod"))?;
        Some(uid.replace('_', "-"))
    });
    Some(CgroupContainer {
        runtime,
        id: id.to_owned(),
        pod_uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "182c281e99b6f40396a181745272228f9ff1c10644ee5c72f3312470a78ab067";

    fn parsed(p: &str) -> Option<(&'static str, String, Option<String>)> {
        parse_path(p).map(|c| (c.runtime, c.id, c.pod_uid))
    }

    #[test]
    fn docker_cgroupfs_and_systemd() {
        assert_eq!(
            parsed(&format!("/docker/{ID}")),
            Some(("docker", ID.into(), None))
        );
        assert_eq!(
            parsed(&format!("/system.slice/docker-{ID}.scope")),
            Some(("docker", ID.into(), None))
        );
    }

    #[test]
    fn containerd_cri_both_drivers() {
        assert_eq!(
            parsed(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/cri-containerd-{ID}.scope"
            )),
            Some((
                "containerd",
                ID.into(),
                Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into())
            ))
        );
        assert_eq!(
            parsed(&format!("/kubepods/besteffort/pod1234-5678/{ID}")),
            Some(("containerd", ID.into(), Some("1234-5678".into())))
        );
    }

    #[test]
    fn crio_and_podman() {
        assert_eq!(
            parsed(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podabc.slice/crio-{ID}.scope"
            )),
            Some(("cri-o", ID.into(), Some("abc".into())))
        );
        assert_eq!(
            parsed(&format!("/kubepods.slice/x/crio-conmon-{ID}.scope")),
            None
        );
        assert_eq!(
            parsed(&format!("/machine.slice/libpod-{ID}.scope")),
            Some(("podman", ID.into(), None))
        );
        assert_eq!(
            parsed(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            )),
            None,
            "the inner 'container' cgroup of a rootless podman names no id itself"
        );
        assert_eq!(
            parsed(&format!("/libpod_parent/{ID}")),
            Some(("podman", ID.into(), None))
        );
        assert_eq!(
            parsed(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
    }

    #[test]
    fn plain_parent_and_non_containers() {
        assert_eq!(
            parsed(&format!("/cri-spike/{ID}")),
            Some(("unknown", ID.into(), None))
        );
        assert_eq!(parsed("/"), None);
        assert_eq!(parsed("/system.slice/ssh.service"), None);
        assert_eq!(parsed("/user.slice/user-0.slice/session-3.scope"), None);
    }

    #[test]
    fn proc_cgroup_prefers_v2_then_v1() {
        let hybrid =
            format!("9:name=systemd:/docker/{ID}\n4:memory:/docker/{ID}\n0::/docker/{ID}\n");
        assert_eq!(path_in(&hybrid), Some(format!("/docker/{ID}").as_str()));
        let v1_only = format!("4:memory:/docker/{ID}\n1:cpu:/\n0::/\n");
        assert_eq!(path_in(&v1_only), Some(format!("/docker/{ID}").as_str()));
        assert_eq!(path_in("0::/\n"), None);
    }
}
