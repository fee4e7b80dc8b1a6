//! What trace and flows share: the filter flags, their validation against the live node, the
//! start-up sequence (checks, load, attach, ready file) and signal handling.
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use inspector_common::config::{Config, FLAG_FAULT_VERIFIER};

use crate::{
    flows::filter::{self, Cidr, Filter, Proto},
    probe::{
        Probe, ProbeOptions,
        follow::{Follower, Selection},
        preflight,
    },
    topology::{self, Netns},
};

/// Filters and attach scope shared by `trace` and `flows`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only this network namespace: inode, `ip netns` name, docker:<sandbox>, "host", or a
    /// path such as /proc/PID/ns/net. Repeatable.
    #[arg(long = "netns", value_name = "NS")]
    pub netns: Vec<String>,
    /// Only this interface name (any kind, lo included). Repeatable.
    #[arg(short = 'i', long = "interface", value_name = "IFNAME")]
    pub interface: Vec<String>,
    /// Protocol: tcp, udp, icmp, icmp6, sctp, udplite, dccp, arp, a number, or ether/0xNNNN.
    #[arg(long)]
    pub proto: Option<String>,
    /// Source or destination address or CIDR.
    #[arg(long)]
    pub host: Option<String>,
    /// Source or destination port.
    #[arg(long)]
    pub port: Option<String>,
    /// Also attach to loopback devices.
    #[arg(long)]
    pub lo: bool,
    /// Also attach to physical (and other kind-less) devices.
    #[arg(long)]
    pub devices: bool,
    /// Attach to every interface of every selected namespace.
    #[arg(long)]
    pub all_interfaces: bool,
    /// Write this file once every program is attached (for scripts and tests).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// How often to rescan for new or vanished namespaces and links (milliseconds).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub rescan_ms: u64,
    /// Do not log attach/detach changes on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Only connections to this Kubernetes Service (NAMESPACE/NAME), as kube-proxy's rules
    /// and conntrack say: both sides of the DNAT.
    #[arg(long, value_name = "NS/NAME")]
    pub service: Option<String>,
    /// Do not read kube-proxy's rules and conntrack (no `service`/`backend`/`nat` on flows).
    #[arg(long)]
    pub no_services: bool,
    /// Do not trace the kernel's packet drops (`skb:kfree_skb`); no tracefs needed then.
    #[arg(long)]
    pub no_drops: bool,
    /// Capacity of each flow table (flows x hooks); the least recently seen are evicted
    /// when it is full.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub max_flows: u32,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Do not record socket owners (the `cgroup_skb` program on the cgroup v2 root). Flows in
    /// namespaces shared by several containers, and host-mode containers, then stay
    /// unattributed or "shared by".
    #[arg(long)]
    pub no_socket_owners: bool,
    /// Attach to many interfaces fast: expedite the kernel's RCU grace periods
    /// (`/sys/kernel/rcu_expedited`) while a batch of 16+ interfaces is attached or detached,
    /// then restore it. Each TCX attach otherwise waits for a normal grace period (~9 ms
    /// here), so 1000 interfaces take ~18 s. Expedited grace periods interrupt every CPU.
    #[arg(long)]
    pub fast_attach: bool,
}

/// Where to ask who owns what.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct IdentityArgs {
    /// Docker Engine API socket, for container names, modes, addresses and ports.
    #[arg(long, value_name = "PATH", default_value = crate::identity::docker::DEFAULT_SOCKET)]
    pub docker_socket: PathBuf,
    /// CRI runtime socket (containerd, CRI-O), for pod names, namespaces, IPs and
    /// containers. Default: the first of /run/containerd/containerd.sock,
    /// /run/crio/crio.sock, /var/run/cri-dockerd.sock that speaks CRI.
    #[arg(long, value_name = "PATH")]
    pub cri_socket: Option<PathBuf>,
}

impl IdentityArgs {
    /// Connects the providers (warnings on stderr) and takes a first snapshot.
    #[must_use]
    pub fn tracker(&self) -> crate::identity::Tracker {
        let (mut tracker, notes) =
            crate::identity::Tracker::new(&crate::identity::tracker::Options {
                docker_socket: (!self.docker_socket.as_os_str().is_empty())
                    .then(|| self.docker_socket.clone()),
                cri_socket: self.cri_socket.clone(),
            });
        for n in notes.into_iter().chain(tracker.refresh()) {
            eprintln!("inspector: warning: {n}");
        }
        tracker
    }
}

/// Validated filter settings.
pub struct Settings {
    pub filter: Filter,
    pub selection: Selection,
    /// The interface whose ifindex the kernel-side event filter checks, if it is exactly one.
    pub pinned_ifindex: Option<(String, u32)>,
}

impl Settings {
    /// Warns when the one filtered interface was recreated under another ifindex: the
    /// load-time filter still names the old one, so its events would be missed.
    pub fn check_pinned(&self, changes: &[crate::probe::follow::Change]) {
        let Some((name, ifindex)) = &self.pinned_ifindex else {
            return;
        };
        for c in changes {
            if let crate::probe::follow::Change::Attached {
                ifname,
                ifindex: now,
                ..
            } = c
                && ifname == name
                && now != ifindex
            {
                eprintln!(
                    "inspector: warning: {name} was recreated (ifindex {ifindex} -> {now}); restart to trace it"
                );
            }
        }
    }
}

/// Parses the packet filter; no kernel access, so it can fail before anything happens.
pub fn parse_filter(a: &FilterArgs) -> anyhow::Result<Filter> {
    if let Some(s) = &a.service {
        check_service_name(s)?;
    }
    Ok(Filter {
        service: a.service.clone(),
        proto: a.proto.as_deref().map(Proto::parse).transpose()?,
        host: a.host.as_deref().map(Cidr::parse).transpose()?,
        port: a.port.as_deref().map(filter::parse_port).transpose()?,
    })
}

/// Resolves a `--netns` value to a namespace on this node.
pub fn resolve_netns<'a>(spec: &str, all: &'a [Netns]) -> anyhow::Result<&'a Netns> {
    let found = if let Ok(ino) = spec.parse::<u64>() {
        all.iter().find(|n| n.inode == ino)
    } else if spec.starts_with('/') {
        use std::os::unix::fs::MetadataExt as _;
        let ino = std::fs::metadata(spec).map(|m| m.ino()).ok();
        all.iter().find(|n| Some(n.inode) == ino)
    } else {
        all.iter().find(|n| n.name == spec).or_else(|| {
            // A docker sandbox by id (or unique prefix), with or without "docker:".
            let id = spec.strip_prefix("docker:").unwrap_or(spec);
            let mut m = all.iter().filter(|n| {
                n.kind == topology::NetnsKind::Docker
                    && id.len() >= 4
                    && n.name.trim_start_matches("docker:").starts_with(id)
            });
            match (m.next(), m.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        })
    };
    found.with_context(|| {
        format!(
            "unknown network namespace '{spec}': no namespace on this node has that inode, name \
             or path (list them with `inspector topology`)"
        )
    })
}

/// Checks privileges, validates every filter against the live node, loads and attaches.
/// Nothing is attached if any check fails.
pub fn start(a: &FilterArgs, events: bool) -> anyhow::Result<(Follower, Settings)> {
    start_with(
        a,
        |c| {
            if events {
                c.flags |= inspector_common::config::FLAG_EVENTS;
            }
        },
        ProbeOptions::default().ring_bytes,
    )
}

/// [`start`] with the programs' features set by `configure` (`FLAG_EVENTS`, `FLAG_HOPTIME`
/// and their settings) and a ring buffer size (bytes) for events.
pub fn start_with(
    a: &FilterArgs,
    configure: impl FnOnce(&mut Config),
    ring_bytes: u32,
) -> anyhow::Result<(Follower, Settings)> {
    let filter = parse_filter(a)?;
    // Fault injection for the test of verifier-error reporting only.
    let fault_verifier = std::env::var("INSPECTOR_FAULT").as_deref() == Ok("verifier");
    preflight::privileges()?;
    let all = topology::netns::discover();
    let mut selection = Selection {
        netns: Vec::new(),
        interfaces: a.interface.clone(),
        lo: a.lo,
        devices: a.devices,
        all: a.all_interfaces,
    };
    for spec in &a.netns {
        selection.netns.push(resolve_netns(spec, &all)?.inode);
    }
    let mut cfg = Config::zeroed();
    let mut pinned_ifindex = None;
    if !a.interface.is_empty() {
        let mut found = std::collections::HashSet::new();
        let mut matches = Vec::new();
        for ns in all.iter().filter(|n| selection.wants_ns(n.inode)) {
            if let Ok(view) = topology::scan_ns(ns) {
                for l in &view.links {
                    if a.interface.contains(&l.name) {
                        found.insert(l.name.clone());
                        matches.push((l.name.clone(), l.ifindex));
                    }
                }
            }
        }
        // One interface in one namespace: the programs also check its ifindex (programs only
        // run where attached anyway; this keeps events exact if the selection widens).
        if let [(name, ifindex)] = matches.as_slice()
            && selection.netns.len() == 1
        {
            cfg.ifindex = *ifindex;
            pinned_ifindex = Some((name.clone(), *ifindex));
        }
        if let Some(missing) = a.interface.iter().find(|i| !found.contains(*i)) {
            bail!(
                "unknown interface '{missing}': no such interface in {} (list them with \
                 `inspector topology`)",
                if a.netns.is_empty() {
                    "any namespace"
                } else {
                    "the selected namespaces"
                }
            );
        }
    }
    if selection.netns.len() == 1 {
        cfg.netns = u32::try_from(selection.netns[0]).unwrap_or(0);
    }
    filter.apply_to(&mut cfg);
    configure(&mut cfg);
    if fault_verifier {
        cfg.flags |= FLAG_FAULT_VERIFIER;
    }
    let probe = Probe::load(&ProbeOptions {
        config: cfg,
        drops: !a.no_drops,
        ring_bytes,
        // 0 comes from FilterArgs::default() (programmatic callers such as the demo).
        flow_entries: if a.max_flows == 0 {
            ProbeOptions::default().flow_entries
        } else {
            a.max_flows
        },
        sockets: !a.no_socket_owners,
        fast_attach: a.fast_attach,
        stack_hooks: cfg.flags & inspector_common::config::FLAG_STACK != 0,
    })?;
    for w in &probe.warnings {
        eprintln!("inspector: warning: {w}");
    }
    let mut follower = Follower::new(probe, selection.clone());
    follower.identity = a.identity.tracker();
    if !a.no_services || a.service.is_some() {
        follower.enable_services();
        if let (Some(want), Some(s)) = (&a.service, &follower.services) {
            let s = s.borrow();
            if !s.entries().any(|(_, e)| &e.ns_name() == want) {
                let nodes: Vec<String> = crate::services::read::nodes()
                    .into_iter()
                    .map(|n| n.name)
                    .collect();
                bail!(
                    "no Service '{want}' in kube-proxy's rules of {} (list them with `inspector services`)",
                    nodes.join(", ")
                );
            }
        }
    }
    let changes = follower.reconcile();
    log_changes(a, &changes);
    if let Some(p) = &a.ready_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the ready file {}", p.display()))?;
    }
    Ok((
        follower,
        Settings {
            filter,
            selection,
            pinned_ifindex,
        },
    ))
}

pub fn log_changes(a: &FilterArgs, changes: &[crate::probe::follow::Change]) {
    if a.quiet {
        return;
    }
    for c in changes {
        eprintln!("inspector: {c}");
    }
}

/// SIGINT/SIGTERM/SIGHUP set a flag the main loops poll; the loops then detach and exit.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// Drives a loop until `duration` passes or a stop signal arrives, rescanning on schedule.
///
/// The loops sleep in `wait` until there is something to do (a rescan, a refresh, an event,
/// a signal), not on a short fixed tick: an observer that wakes up every few milliseconds
/// changes the machine it observes (CPU idle states, wake-up latency).
pub struct Clock {
    pub deadline: Option<Instant>,
    next_rescan: Instant,
    rescan: Duration,
    stop: Arc<AtomicBool>,
    /// Read end of a pipe the signal handlers write to, so a signal ends `wait` at once.
    wake: std::os::unix::net::UnixStream,
}

impl Clock {
    pub fn new(duration: Option<f64>, rescan_ms: u64) -> anyhow::Result<Self> {
        let now = Instant::now();
        let rescan = Duration::from_millis(rescan_ms.max(50));
        let (wake, write) = std::os::unix::net::UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(Self {
            deadline: duration.map(|d| now + Duration::from_secs_f64(d.max(0.0))),
            next_rescan: now + rescan,
            rescan,
            stop: stop_flag()?,
            wake,
        })
    }

    /// Sleeps until `until`, the next rescan, the deadline, a signal, or one of `fds`
    /// becoming readable, whichever comes first.
    pub fn wait(&self, fds: &[std::os::fd::RawFd], until: Option<Instant>) {
        use std::os::fd::AsRawFd as _;
        let mut end = self.next_rescan;
        for t in [until, self.deadline].into_iter().flatten() {
            end = end.min(t);
        }
        let ms = end
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(60_000) as i32;
        let mut pfds: Vec<libc::pollfd> = std::iter::once(self.wake.as_raw_fd())
            .chain(fds.iter().copied())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: valid pollfd array of the given length.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    }

    #[must_use]
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether a rescan is due (and schedules the next).
    pub fn rescan_due(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.next_rescan {
            self.next_rescan = now + self.rescan;
            true
        } else {
            false
        }
    }
}

/// Parses a `--duration` value in seconds.
pub fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

/// Offset that turns a `bpf_ktime_get_ns` value into Unix time in nanoseconds.
#[must_use]
pub fn mono_to_unix_offset() -> i128 {
    let mut mono = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut mono) };
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mono_ns = i128::from(mono.tv_sec) * 1_000_000_000 + i128::from(mono.tv_nsec);
    unix.as_nanos() as i128 - mono_ns
}

/// How long the per-packet event readers sleep at most: the kernel wakes them only once
/// every 1/16 of the ring's worth of events per CPU (see `ring_wake_events`), so they also
/// drain on this timer.
pub const RING_POLL: std::time::Duration = std::time::Duration::from_millis(10);

pub use crate::probe::clock::mono_now_ns;

/// Seconds as for `parse_secs`, or exactly `0` (meaning "skip it").
pub fn parse_secs_or_zero(s: &str) -> Result<f64, String> {
    if s == "0" { Ok(0.0) } else { parse_secs(s) }
}

/// `--service NAMESPACE/NAME`: checked before anything is attached.
///
/// # Errors
/// Anything but two non-empty DNS labels separated by one '/'.
pub fn check_service_name(s: &str) -> anyhow::Result<()> {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match s.split_once('/') {
        Some((ns, name)) if label(ns) && label(name) => Ok(()),
        _ => anyhow::bail!(
            "--service '{s}' must be NAMESPACE/NAME (lower-case letters, digits and '-')"
        ),
    }
}
