//! `bench --runtime docker`: the workloads between real dockerd containers in each Docker
//! mode - host, bridge (container to container), container:X, none (loopback), a published
//! port reached from outside the bridge, and a user-defined bridge network.
//!
//! Each mode end is a container of a locally built image (`image`) whose one process is the
//! inspector binary itself, bind-mounted read-only (`inspector bench hold`: it only keeps
//! the container, and so its namespace, alive). The load generator's client and server
//! threads enter those containers' network namespaces (`/proc/PID/ns/net`) and are pinned
//! exactly as in the lab runs, so a real mode and its lab twin differ only in the datapath.
//! The daemon is the running one (`--docker-socket`) or a private one (`daemon`). Every
//! container, network, image and namespace the run made is removed at the end, also on
//! Ctrl-C or an error; a run that was killed is cleaned up by the next (containers carry the
//! label `inspector.bench=<pid>`).
mod cli;
mod daemon;
mod image;
mod outside;

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
};

use super::{
    labs::PUBLISH_OFFSET,
    target::{Reach, Runtime, Target},
};
use crate::{
    bench::{BenchError, LoadKind, loadgen::Ends},
    net::check_traffic_addr,
    sys::signals::StopFlag,
};
use cli::Cli;

/// One Docker network mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DockerMode {
    Host,
    Bridge,
    Container,
    None,
    Dnat,
    UserBridge,
}

impl DockerMode {
    pub const ALL: [Self; 6] = [
        Self::Host,
        Self::Bridge,
        Self::Container,
        Self::None,
        Self::Dnat,
        Self::UserBridge,
    ];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Host => "docker-host",
            Self::Bridge => "docker-bridge",
            Self::Container => "docker-container",
            Self::None => "docker-none",
            Self::Dnat => "docker-dnat",
            Self::UserBridge => "docker-user-bridge",
        }
    }

    /// The lab mode it is compared with.
    #[must_use]
    pub const fn twin(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Bridge | Self::UserBridge => "bridge",
            Self::Container => "container",
            Self::None => "none",
            Self::Dnat => "bridge-dnat",
        }
    }

    #[must_use]
    pub const fn what(self) -> &'static str {
        match self {
            Self::Host => "docker run --network host, both ends: lo",
            Self::Bridge => "two containers on docker0: veth, docker0, veth",
            Self::Container => "client in --network container:SERVER: lo",
            Self::None => "one --network none container: 127.0.0.1",
            Self::Dnat => {
                "outside client to a -p published port: routed veth, Docker's DNAT, docker0, veth"
            }
            Self::UserBridge => "two containers on a user-defined bridge network: veth, br-*, veth",
        }
    }
}

/// Parses `--modes` for Docker. Modes of other runtimes (Kubernetes ones, pod) are skipped
/// when one of them runs too (`with_others`), an error otherwise.
///
/// # Errors
/// An unknown mode, in one line.
pub fn parse_modes(list: &[String], with_others: bool) -> Result<Vec<DockerMode>, BenchError> {
    let mut out = Vec::new();
    for m in list {
        match m.as_str() {
            "all" => out.extend(DockerMode::ALL),
            "host" => out.push(DockerMode::Host),
            "bridge" => out.push(DockerMode::Bridge),
            "container" => out.push(DockerMode::Container),
            "none" => out.push(DockerMode::None),
            "dnat" | "bridge-dnat" => out.push(DockerMode::Dnat),
            "user-bridge" => out.push(DockerMode::UserBridge),
            k if with_others
                && (k.starts_with("iptables")
                    || k.starts_with("nftables")
                    || k == "clusterip"
                    || k == "pod") => {}
            other => {
                return Err(BenchError::Input(format!(
                    "unknown Docker mode '{other}': use host, bridge, container, none, dnat, user-bridge or all"
                )));
            }
        }
    }
    Ok(super::catalogue::first_of_each(out))
}

/// Options of `--runtime docker`.
#[derive(Clone, Debug)]
pub struct DockerOptions {
    /// The running daemon's socket (ignored with `private`).
    pub socket: PathBuf,
    /// Start a dockerd of the run's own.
    pub private: bool,
    pub modes: Vec<DockerMode>,
}

/// What the run made; removed on drop (containers, then the network, the image, the outside
/// namespace, and last the private daemon).
pub struct Containers {
    cli: Cli,
    made: Vec<String>,
    networks: Vec<String>,
    image: Option<String>,
    outside: Option<outside::Outside>,
    daemon: Option<daemon::Private>,
}

impl Containers {
    /// For the report's setup line.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "dockerd at {}{}: {} containers",
            self.cli.socket().display(),
            if self.daemon.is_some() {
                " (private)"
            } else {
                ""
            },
            self.made.len()
        )
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if !self.made.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.made.iter().map(String::as_str));
            let _ = self.cli.ok(&args);
        }
        for n in &self.networks {
            let _ = self.cli.ok(&["network", "rm", n]);
        }
        if let Some(i) = &self.image {
            let _ = self.cli.ok(&["rmi", i]);
        }
        self.outside.take();
        self.daemon.take();
    }
}

const LABEL: &str = "inspector.bench";
/// The user-defined bridge network's subnet.
const USER_SUBNET: &str = "198.18.126.0/24";

/// Containers (and networks) a run that was killed left behind: its pid is gone.
fn remove_stale(cli: &Cli) {
    let stale = |kind: &str| -> Vec<String> {
        let format = format!("{{{{.ID}}}} {{{{.Label \"{LABEL}\"}}}}");
        let filter = format!("label={LABEL}");
        let mut args = vec![kind, "ls", "--filter", &filter, "--format", &format];
        if kind == "container" {
            args.push("-a");
        }
        cli.run(&args)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, pid)| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            .map(|(id, _)| id.to_owned())
            .collect()
    };
    let containers = stale("container");
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(containers.iter().map(String::as_str));
        let _ = cli.ok(&args);
    }
    for n in stale("network") {
        let _ = cli.ok(&["network", "rm", &n]);
    }
    outside::remove_stale();
}

/// A published host port that something on the node already holds.
fn published_in_use() -> Option<String> {
    LoadKind::TESTS.iter().find_map(|t| {
        let port = t.port() + PUBLISH_OFFSET;
        let free = if t.proto() == "udp" {
            std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
        } else {
            std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        };
        (!free).then(|| format!("{port}/{}", t.proto()))
    })
}

/// A container's process and its address on `network`.
struct Running {
    pid: u32,
    ip: Option<Ipv4Addr>,
}

impl Running {
    fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.pid)
    }

    fn ip(&self, name: &str) -> Result<IpAddr, BenchError> {
        let ip = IpAddr::V4(
            self.ip
                .ok_or_else(|| BenchError::Input(format!("container {name} has no address")))?,
        );
        check_traffic_addr(ip).map_err(|e| BenchError::Input(format!("container {name}: {e}")))?;
        Ok(ip)
    }
}

/// Starts the containers, one by one (each recorded before it is made, so an interrupted
/// `docker run` is removed too).
struct Maker<'a> {
    c: &'a mut Containers,
    prefix: String,
    image: String,
    exe: String,
    stop: &'a StopFlag,
}

impl Maker<'_> {
    fn run(&mut self, role: &str, network: &str, extra: &[String]) -> Result<Running, BenchError> {
        if self.stop.raised() {
            return Err(BenchError::Interrupted);
        }
        let name = format!("{}-{role}", self.prefix);
        self.c.made.push(name.clone());
        let label = format!("{LABEL}={}", std::process::id());
        let mount = format!("{}:/inspector:ro", self.exe);
        let net = format!("--network={network}");
        let mut args = vec![
            "run", "-d", "--name", &name, "--label", &label, "-v", &mount, &net,
        ];
        args.extend(extra.iter().map(String::as_str));
        args.extend([self.image.as_str(), "/inspector", "bench", "hold"]);
        self.c.cli.run(&args)?;
        let net_key = if network.starts_with("container:") {
            ""
        } else {
            network
        };
        let fmt = format!(
            "{{{{.State.Pid}}}} {{{{with index .NetworkSettings.Networks \"{net_key}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"
        );
        let out = self.c.cli.run(&["inspect", "-f", &fmt, &name])?;
        let mut parts = out.split_whitespace();
        let pid = parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| BenchError::Input(format!("container {name} is not running")))?;
        let ip = parts.next().and_then(|a| a.parse().ok());
        Ok(Running { pid, ip })
    }
}

/// The default bridge's gateway (docker0's address), checked inside 198.18.0.0/15.
fn bridge_gateway(cli: &Cli) -> Result<IpAddr, BenchError> {
    let gw = cli.run(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
    ])?;
    let (ip, subnet) = gw.split_once(' ').unwrap_or((gw.as_str(), ""));
    let ip: IpAddr = ip.parse().map_err(|_| {
        BenchError::Input(format!(
            "Docker's default bridge has no gateway address ({gw})"
        ))
    })?;
    if check_traffic_addr(ip).is_err() {
        return Err(BenchError::Input(format!(
            "Docker's default bridge is {subnet}, outside 198.18.0.0/15 (the only addresses bench sends to): restart dockerd with --bip inside it, or use --private-dockerd"
        )));
    }
    Ok(ip)
}

/// The CLI's own message says whether it is missing or the daemon does not answer.
fn answers(cli: &Cli) -> Result<(), BenchError> {
    if cli.ok(&["version"]) {
        return Ok(());
    }
    cli.run(&["version"]).map(drop).map_err(|e| {
        BenchError::Input(format!(
            "no dockerd answers on {} ({e}); name its socket with --docker-socket, or use --private-dockerd",
            cli.socket().display()
        ))
    })
}

/// What can be checked before anything is made: a published port already in use, and
/// (with the running daemon) that it answers and its bridge is inside the benchmark range.
///
/// # Errors
/// The first of those that fails, in one line.
pub(super) fn preflight(o: &DockerOptions) -> Result<(), BenchError> {
    if o.modes.contains(&DockerMode::Dnat)
        && let Some(port) = published_in_use()
    {
        return Err(BenchError::Input(format!(
            "port {port} is in use on this node; the published-port mode (docker-dnat) publishes it"
        )));
    }
    if !o.private {
        let cli = Cli::new(&o.socket);
        answers(&cli)?;
        bridge_gateway(&cli)?;
    }
    Ok(())
}

/// Starts what the modes need and says how each is reached.
///
/// # Errors
/// No dockerd (or CLI), a bridge outside the benchmark range, a published port in use, a
/// container that does not start, or Ctrl-C; what was made is removed before returning.
pub(super) fn up(
    o: &DockerOptions,
    stop: &StopFlag,
) -> Result<(Containers, Vec<Target>), BenchError> {
    let daemon = if o.private {
        Some(daemon::start(stop)?)
    } else {
        None
    };
    let socket = daemon
        .as_ref()
        .map_or_else(|| o.socket.clone(), daemon::Private::socket);
    let mut c = Containers {
        cli: Cli::new(&socket),
        made: Vec::new(),
        networks: Vec::new(),
        image: None,
        outside: None,
        daemon,
    };
    answers(&c.cli)?;
    remove_stale(&c.cli);
    let gateway = bridge_gateway(&c.cli)?;
    let exe = std::env::current_exe().map_err(BenchError::io("finding the inspector binary"))?;
    let (image, imported) = image::ensure(&c.cli, &exe)?;
    if imported {
        c.image = Some(image.clone());
    }
    let targets = start(&mut c, o, stop, gateway, image, &exe.display().to_string())?;
    Ok((c, targets))
}

/// The containers of each mode, and the targets.
fn start(
    c: &mut Containers,
    o: &DockerOptions,
    stop: &StopFlag,
    gateway: IpAddr,
    image: String,
    exe: &str,
) -> Result<Vec<Target>, BenchError> {
    let has = |m: DockerMode| o.modes.contains(&m);
    let prefix = format!("insp-bench-{}", std::process::id());
    let host_ns = "/proc/self/ns/net".to_owned();
    if has(DockerMode::UserBridge) {
        c.networks.push(prefix.clone());
        let label = format!("{LABEL}={}", std::process::id());
        c.cli.run(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            USER_SUBNET,
            "--label",
            &label,
            &prefix,
        ])?;
    }
    if has(DockerMode::Dnat) {
        c.outside = Some(outside::up()?);
    }
    let outside_ns = c.outside.as_ref().map(|x| x.ns.clone());
    let user_net = prefix.clone();
    let mut mk = Maker {
        c,
        prefix,
        image,
        exe: exe.to_owned(),
        stop,
    };
    let publish: Vec<String> = if has(DockerMode::Dnat) {
        LoadKind::TESTS
            .iter()
            .flat_map(|t| {
                [
                    "-p".to_owned(),
                    format!("{}:{}/{}", t.port() + PUBLISH_OFFSET, t.port(), t.proto()),
                ]
            })
            .collect()
    } else {
        Vec::new()
    };
    let srv = if has(DockerMode::Bridge) || has(DockerMode::Container) || has(DockerMode::Dnat) {
        Some(mk.run("srv", "bridge", &publish)?)
    } else {
        None
    };
    let mut targets = Vec::new();
    let mk_socket = mk.c.cli.socket().to_owned();
    let target = |m: DockerMode, ends: Ends, trace_ns: Vec<String>, lo: bool| Target {
        name: m.name().into(),
        what: m.what().into(),
        runtime: Runtime::Docker,
        twin: Some(m.twin().into()),
        kube: None,
        around: None,
        reach: Reach {
            ends,
            trace_ns,
            lo,
            identity: crate::identity::tracker::Options {
                docker_socket: Some(mk_socket.clone()),
                cri_socket: None,
            },
        },
    };
    let ends = |client: &str, server: &str, ip: IpAddr| Ends {
        client_ns: client.into(),
        server_ns: server.into(),
        bind: ip,
        target: ip,
        port_offset: 0,
        shift: 0,
        user_port: None,
    };
    for m in o.modes.iter().copied() {
        let t = match m {
            DockerMode::Host => {
                let h = mk.run("host", "host", &[])?;
                let ns = h.netns();
                target(m, ends(&ns, &ns, gateway), vec![ns.clone()], true)
            }
            DockerMode::None => {
                let i = mk.run("none", "none", &[])?;
                let ns = i.netns();
                target(
                    m,
                    ends(&ns, &ns, IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    vec![ns.clone()],
                    true,
                )
            }
            DockerMode::Bridge => {
                let s = srv.as_ref().expect("made for bridge");
                let cl = mk.run("cli", "bridge", &[])?;
                target(
                    m,
                    ends(&cl.netns(), &s.netns(), s.ip("srv")?),
                    vec![cl.netns(), host_ns.clone(), s.netns()],
                    false,
                )
            }
            DockerMode::Container => {
                let s = srv.as_ref().expect("made for container");
                let side = mk.run("side", &format!("container:{}-srv", mk.prefix), &[])?;
                target(
                    m,
                    ends(&side.netns(), &s.netns(), s.ip("srv")?),
                    vec![s.netns()],
                    true,
                )
            }
            DockerMode::Dnat => {
                let s = srv.as_ref().expect("made for dnat");
                let out_ns = outside_ns.clone().expect("made for dnat");
                let mut e = ends(
                    &crate::sys::netns::named(&out_ns).display().to_string(),
                    &s.netns(),
                    s.ip("srv")?,
                );
                e.target = IpAddr::V4(outside::NODE_IP);
                e.port_offset = PUBLISH_OFFSET;
                target(m, e, vec![out_ns, host_ns.clone(), s.netns()], false)
            }
            DockerMode::UserBridge => {
                let us = mk.run("usrv", &user_net, &[])?;
                let uc = mk.run("ucli", &user_net, &[])?;
                target(
                    m,
                    ends(&uc.netns(), &us.netns(), us.ip("usrv")?),
                    vec![uc.netns(), host_ns.clone(), us.netns()],
                    false,
                )
            }
        };
        targets.push(t);
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_modes_parse_and_pair_with_lab_modes() {
        let all = parse_modes(&["all".into()], false).unwrap();
        assert_eq!(all.len(), 6);
        let names: Vec<&str> = all.iter().map(|m| m.name()).collect();
        assert_eq!(names[0], "docker-host");
        assert_eq!(DockerMode::Dnat.twin(), "bridge-dnat");
        assert_eq!(
            parse_modes(&["bridge".into(), "bridge".into(), "iptables".into()], true).unwrap(),
            [DockerMode::Bridge]
        );
        let e = parse_modes(&["iptables".into()], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown Docker mode 'iptables'"), "{e}");
    }
}
