//! `bench --runtime cri`: the workloads between real pods of a CRI runtime (containerd) on
//! its CNI bridge: pod to pod, and pod to a `ClusterIP` Service whose kube-proxy rules
//! (iptables and nftables mode, `services`) are installed for those pods on the node while
//! that mode's runs go (so no other mode is measured with them in place). The pods
//! are sandboxes only (the sandbox image's one process holds the namespace); the load
//! generator's threads enter their network namespaces and are pinned as in the lab runs. The
//! runtime is the one at `--cri-socket`, or a private containerd (`daemon`). Every pod and
//! rule the run made is removed at the end, also on Ctrl-C or an error; pods carry the label
//! `inspector.bench=<pid>`, so a run that was killed is cleaned up by the next.
mod client;
mod daemon;
mod services;

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
};

use super::target::{Around, Reach, Runtime, Target};
use crate::{
    bench::{BenchError, loadgen::Ends},
    net::check_traffic_addr,
    sys::signals::StopFlag,
};

/// One CRI mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CriMode {
    Pod,
    Iptables,
    Nftables,
}

impl CriMode {
    pub const ALL: [Self; 3] = [Self::Pod, Self::Iptables, Self::Nftables];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pod => "cri-pod",
            Self::Iptables => "cri-iptables",
            Self::Nftables => "cri-nftables",
        }
    }

    /// The lab mode it is compared with.
    #[must_use]
    pub const fn twin(self) -> &'static str {
        match self {
            Self::Pod => "bridge",
            Self::Iptables => "iptables-1",
            Self::Nftables => "nftables-1",
        }
    }

    #[must_use]
    pub const fn what(self) -> &'static str {
        match self {
            Self::Pod => "pod to pod on the CNI bridge: veth, bridge, veth",
            Self::Iptables => {
                "pod to ClusterIP, kube-proxy iptables rules on the node: veth, DNAT, bridge, veth"
            }
            Self::Nftables => {
                "pod to ClusterIP, kube-proxy nftables rules on the node: veth, DNAT, bridge, veth"
            }
        }
    }
}

/// Parses `--modes` for CRI. Modes of other runtimes are skipped when one of them runs too
/// (`with_others`), an error otherwise.
///
/// # Errors
/// An unknown mode, in one line.
pub fn parse_modes(list: &[String], with_others: bool) -> Result<Vec<CriMode>, BenchError> {
    let mut out = Vec::new();
    for m in list {
        match m.as_str() {
            "all" => out.extend(CriMode::ALL),
            "pod" | "bridge" => out.push(CriMode::Pod),
            "clusterip" => out.extend([CriMode::Iptables, CriMode::Nftables]),
            k if k == "iptables" || k.starts_with("iptables-") => out.push(CriMode::Iptables),
            k if k == "nftables" || k.starts_with("nftables-") => out.push(CriMode::Nftables),
            "host" | "container" | "none" | "dnat" | "bridge-dnat" | "user-bridge"
                if with_others => {}
            other => {
                return Err(BenchError::Input(format!(
                    "unknown CRI mode '{other}': use pod, iptables, nftables, clusterip or all"
                )));
            }
        }
    }
    Ok(super::catalogue::first_of_each(out))
}

/// Options of `--runtime cri`.
#[derive(Clone, Debug)]
pub struct CriOptions {
    /// The running runtime's socket (ignored with `private`); None: the usual paths.
    pub socket: Option<PathBuf>,
    pub private: bool,
    pub modes: Vec<CriMode>,
}

const LABEL: &str = "inspector.bench";
const NAMESPACE: &str = "insp-bench";

/// What the run made; removed on drop (the Service rules, the pods, then the private
/// runtime).
pub(super) struct Pods {
    rules: Vec<std::sync::Arc<services::ServiceRules>>,
    client: Option<client::Client>,
    made: Vec<String>,
    daemon: Option<daemon::Private>,
    socket: PathBuf,
}

impl Pods {
    #[must_use]
    pub(super) fn describe(&self) -> String {
        format!(
            "CRI at {}{}: {} pods",
            self.socket.display(),
            if self.daemon.is_some() {
                " (private containerd)"
            } else {
                ""
            },
            self.made.len()
        )
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for r in &self.rules {
            r.off();
        }
        if let Some(c) = &self.client {
            for id in &self.made {
                c.remove(id);
            }
        }
        self.client.take();
        self.daemon.take();
    }
}

/// The socket to use: the one named, or the first usual one that speaks CRI.
fn socket_of(o: &CriOptions) -> Result<PathBuf, BenchError> {
    if let Some(s) = &o.socket {
        return Ok(s.clone());
    }
    crate::identity::cri::DEFAULT_SOCKETS
        .iter()
        .map(PathBuf::from)
        .find(|p| client::Client::connect(p).is_ok())
        .ok_or_else(|| {
            BenchError::Input(
                "no CRI runtime answers on the usual sockets; name one with --cri-socket, or use --private-containerd".into(),
            )
        })
}

/// What can be checked before anything is made: kube-proxy's rules already on the node, and
/// (with the running runtime) that it answers.
///
/// # Errors
/// The first that fails, in one line.
pub(super) fn preflight(o: &CriOptions) -> Result<(), BenchError> {
    services::refuse_if_taken(
        o.modes.contains(&CriMode::Iptables),
        o.modes.contains(&CriMode::Nftables),
    )?;
    if !o.private {
        let s = socket_of(o)?;
        client::Client::connect(&s).map_err(|e| {
            BenchError::Input(format!(
                "no CRI runtime answers on {} ({e}); use --private-containerd for one of the run's own",
                s.display()
            ))
        })?;
    }
    Ok(())
}

/// Removes the pods of runs that were killed (their pid gone).
fn remove_stale(c: &client::Client) {
    for (id, pid) in c.labelled(LABEL) {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            c.remove(&id);
        }
    }
}

/// Starts the pods and the Service rules; says how each mode is reached.
///
/// # Errors
/// No runtime, a pod that does not start, an address outside the benchmark range, rules
/// refused, or Ctrl-C; what was made is removed before returning.
pub(super) fn up(o: &CriOptions, stop: &StopFlag) -> Result<(Pods, Vec<Target>), BenchError> {
    let daemon = if o.private {
        Some(daemon::start(stop)?)
    } else {
        None
    };
    let socket = match &daemon {
        Some(d) => d.socket(),
        None => socket_of(o)?,
    };
    let mut pods = Pods {
        rules: Vec::new(),
        client: None,
        made: Vec::new(),
        daemon,
        socket: socket.clone(),
    };
    let c = client::Client::connect(&socket)?;
    remove_stale(&c);
    let pid = std::process::id();
    let (parent, logs) = pods.daemon.as_ref().map_or_else(
        || (String::new(), std::env::temp_dir().display().to_string()),
        |d| {
            (
                d.cgroup_parent.clone(),
                d.dir.join("logs").display().to_string(),
            )
        },
    );
    let mut sandbox = |role: &str| -> Result<client::Sandbox, BenchError> {
        if stop.raised() {
            return Err(BenchError::Interrupted);
        }
        let name = format!("{role}-{pid}");
        let id = c.run_pod(
            NAMESPACE,
            &name,
            &[(LABEL, pid.to_string())],
            &parent,
            &logs,
        )?;
        pods.made.push(id.clone());
        let s = c.sandbox(&id, &name)?;
        check_traffic_addr(IpAddr::V4(s.ip)).map_err(|e| {
            BenchError::Input(format!(
                "pod {NAMESPACE}/{name}: {e} (the CNI network's addresses must be inside it)"
            ))
        })?;
        Ok(s)
    };
    let srv = sandbox("srv");
    let cli = srv.as_ref().ok().map(|_| sandbox("cli"));
    pods.client = Some(c);
    let srv = srv?;
    let cli = cli.expect("made after srv")?;
    let (ipt, nft) = (
        o.modes.contains(&CriMode::Iptables),
        o.modes.contains(&CriMode::Nftables),
    );
    if (ipt || nft)
        && crate::sys::netns::default_gateway(std::path::Path::new(&cli.netns)).is_none()
    {
        return Err(BenchError::Input(format!(
            "pod {NAMESPACE}/cli-{pid} has no default route (its CNI network gives none), so no ClusterIP is reachable from it; measure --modes pod, or add a default route to the CNI config"
        )));
    }
    let o4 = srv.ip.octets();
    let cidr = format!("{}/24", Ipv4Addr::new(o4[0], o4[1], o4[2], 0));
    let rules_of =
        |nft: bool| std::sync::Arc::new(services::ServiceRules::new(nft, srv.ip, cidr.clone()));
    let (ipt_rules, nft_rules) = (rules_of(false), rules_of(true));
    pods.rules = vec![ipt_rules.clone(), nft_rules.clone()];
    let targets = o
        .modes
        .iter()
        .map(|&m| {
            let target = match m {
                CriMode::Pod => srv.ip,
                CriMode::Iptables => services::IPTABLES_VIP,
                CriMode::Nftables => services::NFTABLES_VIP,
            };
            Target {
                name: m.name().into(),
                what: m.what().into(),
                runtime: Runtime::Cri,
                twin: Some(m.twin().into()),
                kube: match m {
                    CriMode::Pod => None,
                    CriMode::Iptables => Some((false, 1)),
                    CriMode::Nftables => Some((true, 1)),
                },
                around: match m {
                    CriMode::Pod => None,
                    CriMode::Iptables => Some(ipt_rules.clone() as std::sync::Arc<dyn Around>),
                    CriMode::Nftables => Some(nft_rules.clone() as std::sync::Arc<dyn Around>),
                },
                reach: Reach {
                    ends: Ends {
                        client_ns: cli.netns.clone().into(),
                        server_ns: srv.netns.clone().into(),
                        bind: IpAddr::V4(srv.ip),
                        target: IpAddr::V4(target),
                        port_offset: 0,
                        shift: 0,
                        user_port: None,
                    },
                    trace_ns: vec![
                        cli.netns.clone(),
                        "/proc/self/ns/net".into(),
                        srv.netns.clone(),
                    ],
                    lo: false,
                    identity: crate::identity::tracker::Options {
                        docker_socket: None,
                        cri_socket: Some(socket.clone()),
                    },
                },
            }
        })
        .collect();
    Ok((pods, targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_modes_parse_and_pair_with_lab_modes() {
        assert_eq!(parse_modes(&["all".into()], false).unwrap(), CriMode::ALL);
        assert_eq!(
            parse_modes(
                &["bridge".into(), "host".into(), "iptables-1000".into()],
                true
            )
            .unwrap(),
            [CriMode::Pod, CriMode::Iptables]
        );
        assert!(parse_modes(&["host".into()], false).is_err());
        assert_eq!(CriMode::Nftables.twin(), "nftables-1");
    }
}
