//! `bench --between SRC DST[:PORT]`: the workloads between two workloads that already exist
//! (containers by name or id, pods as `ns/name`, lab workloads as `lab/name`, or `host`), found
//! the way `inspector path` finds them. The client threads run in SRC's network namespace,
//! the server threads in DST's, on a block of ports free there; with `:PORT` the user's own
//! server (one that answers each 64-byte request with 64 bytes, such as an echo server)
//! answers rr and crr, and no server of ours runs.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::Path,
    time::Duration,
};

use super::target::{Reach, Runtime, Target};
use crate::{
    bench::{BenchError, LoadKind, loadgen::Ends},
    identity::{Tracker, tracker},
    net::check_traffic_addr,
    session::path::{PathError, Source, endpoint},
    sys::netns::{default_gateway, inode_of, run_in},
};

/// What `--between` names.
#[derive(Clone, Debug)]
pub struct Between {
    pub src: String,
    pub dst: String,
    /// The user's server's port (`DST:PORT`).
    pub port: Option<u16>,
    pub identity: tracker::Options,
}

/// Splits `DST[:PORT]`; a pod's `ns/name` has no colon, an IPv6 literal is not a workload.
///
/// # Errors
/// A port that is not 1..65535.
pub fn split_dst(s: &str) -> Result<(String, Option<u16>), BenchError> {
    match s.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && !name.contains(':') => {
            let p = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                BenchError::Input(format!(
                    "--between: bad port in '{s}': use DST:PORT, PORT 1..65535"
                ))
            })?;
            Ok((name.to_owned(), Some(p)))
        }
        _ => Ok((s.to_owned(), None)),
    }
}

/// The first block of the workloads' ports (`shift` 0, 10, ... 500) free at `ip` in `ns`.
fn free_shift(ns: &Path, ip: IpAddr, workloads: &[LoadKind]) -> Result<u16, BenchError> {
    let found = run_in(ns, || -> std::io::Result<u16> {
        // An address that is not the namespace's own fails here, with its own error.
        drop(TcpListener::bind(SocketAddr::new(ip, 0))?);
        (0..=500)
            .step_by(10)
            .find(|shift| {
                workloads.iter().all(|t| {
                    let a = SocketAddr::new(ip, t.port() + shift);
                    TcpListener::bind(a).is_ok() && UdpSocket::bind(a).is_ok()
                })
            })
            .ok_or_else(|| std::io::Error::other("no block of free ports in 9100..9610"))
    })
    .map_err(BenchError::io("entering the server's namespace"))?;
    found
        .map_err(|e| BenchError::Input(format!("--between: the server cannot listen on {ip}: {e}")))
}

impl Between {
    /// The end `spec` (`role`: "source" or "destination", as the message names it).
    fn find(spec: &str, role: &str, tracker: &Tracker) -> Result<Source, BenchError> {
        endpoint(spec, None, tracker).map_err(|e| {
            BenchError::Input(match e {
                PathError::NoSource(_) => format!(
                    "--between: {role} '{spec}' is no running container, pod, lab workload or network namespace (see `inspector topology`)"
                ),
                e => format!("--between: {e}"),
            })
        })
    }

    /// The two ends, checked: both exist, DST can be reached from SRC, and (with `:PORT`) the
    /// user's server answers.
    ///
    /// # Errors
    /// One line saying which end is wrong and why.
    pub(super) fn resolve(&self, workloads: &[LoadKind]) -> Result<Target, BenchError> {
        if self.port.is_some()
            && let Some(w) = workloads
                .iter()
                .find(|w| !matches!(w, LoadKind::Rr | LoadKind::Crr))
        {
            return Err(BenchError::Input(format!(
                "--between {}:{}: your server answers rr and crr only; '{}' needs ours (leave out :PORT, or --workloads rr,crr)",
                self.dst,
                self.port.unwrap_or(0),
                w.name()
            )));
        }
        let (tracker, _) = {
            let (mut t, notes) = Tracker::new(&self.identity);
            let _ = t.refresh();
            (t, notes)
        };
        let mut src = Self::find(&self.src, "source", &tracker)?;
        let mut dst = Self::find(&self.dst, "destination", &tracker)?;
        let host = inode_of("/proc/self/ns/net");
        // A lab workload's host is its lab's node.
        let node = src.node.clone().or_else(|| dst.node.clone());
        let is_node = |s: &Source| {
            node.as_deref()
                .is_some_and(|n| s.netns == crate::sys::netns::named(n))
        };
        if let Some(n) = &node {
            if inode_of(&dst.netns) == host {
                dst = Self::find(n, "destination", &tracker)?;
            }
            if inode_of(&src.netns) == host {
                src = Self::find(n, "source", &tracker)?;
            }
        }
        let (si, di) = (inode_of(&src.netns), inode_of(&dst.netns));
        let same = si == di;
        let src_host = si == host || is_node(&src);
        let dst_host = di == host || is_node(&dst);
        let in_range = |s: &Source| {
            s.ips
                .iter()
                .copied()
                .find(|ip| check_traffic_addr(*ip).is_ok())
        };
        let none = |name: &str| {
            BenchError::Input(format!(
                "--between: '{name}' has no network (none mode): nothing outside it reaches it; `--between {name} {name}` measures its loopback"
            ))
        };
        if !same && !src_host && src.ips.is_empty() {
            return Err(none(&self.src));
        }
        let ip = if same {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else if let Some(ip) = in_range(&dst) {
            ip
        } else if dst_host {
            let gw = default_gateway(&src.netns).ok_or_else(|| {
                BenchError::Input(format!(
                    "--between: '{}' has no default route to the host",
                    self.src
                ))
            })?;
            IpAddr::V4(gw)
        } else if dst.ips.is_empty() {
            return Err(none(&self.dst));
        } else {
            return Err(BenchError::Input(format!(
                "--between: '{}' has no address inside 198.18.0.0/15 (the only range bench sends to): {:?}",
                self.dst, dst.ips
            )));
        };
        check_traffic_addr(ip).map_err(|e| BenchError::Input(format!("--between: {e}")))?;
        let shift = if self.port.is_some() {
            0
        } else {
            free_shift(&dst.netns, ip, workloads)?
        };
        if let Some(port) = self.port {
            let a = SocketAddr::new(ip, port);
            run_in(&src.netns, || {
                TcpStream::connect_timeout(&a, Duration::from_secs(2))
            })
            .map_err(BenchError::io("entering the client's namespace"))?
            .map_err(|e| {
                BenchError::Input(format!(
                    "--between: nothing answers on {a} ({}) from '{}': {e}",
                    self.dst, self.src
                ))
            })?;
        }
        // Between the two: the node (a lab's own node namespace for lab workloads).
        let node = node.unwrap_or_else(|| "/proc/self/ns/net".to_owned());
        let mut trace_ns = vec![src.netns.display().to_string()];
        if !src_host && !dst_host && !same {
            trace_ns.push(node);
        }
        if !same {
            trace_ns.push(dst.netns.display().to_string());
        }
        Ok(Target {
            name: "between".into(),
            what: format!(
                "{} -> {}{}",
                src.label,
                dst.label,
                self.port
                    .map(|p| format!(":{p} (its own server)"))
                    .unwrap_or_default()
            ),
            runtime: Runtime::Between,
            twin: None,
            kube: None,
            around: None,
            reach: Reach {
                ends: Ends {
                    client_ns: src.netns.clone(),
                    server_ns: dst.netns.clone(),
                    bind: ip,
                    target: ip,
                    port_offset: 0,
                    shift,
                    user_port: self.port,
                },
                trace_ns,
                lo: same || ip.is_loopback() || dst_host || src_host,
                identity: self.identity.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dst_splits_into_name_and_port() {
        assert_eq!(split_dst("web").unwrap(), ("web".into(), None));
        assert_eq!(
            split_dst("default/db:5432").unwrap(),
            ("default/db".into(), Some(5432))
        );
        assert!(split_dst("web:0").is_err());
        assert!(
            split_dst("web:http")
                .unwrap_err()
                .to_string()
                .contains("bad port")
        );
    }
}
