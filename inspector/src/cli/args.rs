//! Flags several commands share, and their validation into library options: the output
//! format, the filter and attach scope of `trace` and `flows` (-> `session::Options`), where
//! identity comes from, durations, and how changes and notes are shown.
use std::{path::PathBuf, time::Duration};

use crate::{
    flows::filter::{self, Filter, ProtoFilter},
    identity::{select::Selectors, tracker},
    output::Format,
    session::{self, Change},
};

/// `-o`: table or JSON lines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Form {
    #[default]
    Table,
    Json,
}

/// `-o` of `topology`: also Graphviz.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FormDot {
    #[default]
    Table,
    Json,
    Dot,
}

impl From<Form> for Format {
    fn from(f: Form) -> Self {
        match f {
            Form::Table => Self::Table,
            Form::Json => Self::Json,
        }
    }
}

impl From<FormDot> for Format {
    fn from(f: FormDot) -> Self {
        match f {
            FormDot::Table => Self::Table,
            FormDot::Json => Self::Json,
            FormDot::Dot => Self::Dot,
        }
    }
}

/// `-o table|json`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Output {
    /// Output format: aligned table, or one JSON object per line.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Form,
}

/// Where to ask who owns what.
#[derive(clap::Args, Debug, Clone)]
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
    #[must_use]
    pub fn options(&self) -> tracker::Options {
        tracker::Options {
            docker_socket: (!self.docker_socket.as_os_str().is_empty())
                .then(|| self.docker_socket.clone()),
            cri_socket: self.cri_socket.clone(),
        }
    }

    /// Connects the providers (their warnings on stderr) and takes a first snapshot.
    #[must_use]
    pub fn tracker(&self) -> crate::identity::Tracker {
        let (mut t, notes) = crate::identity::Tracker::new(&self.options());
        for n in notes.into_iter().chain(t.refresh()) {
            eprintln!("inspector: warning: {n}");
        }
        t
    }
}

/// Workload selectors shared by `trace`, `flows` and the agent (see `identity::select`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SelectArgs {
    /// Only this pod's traffic (NAMESPACE/NAME): in its namespace, and from or to its
    /// addresses at every hop. A pod that starts later is followed. Repeatable.
    #[arg(long = "pod", value_name = "NS/NAME")]
    pub pod: Vec<String>,
    /// Only this container's traffic (name, id, or 4+ characters of the id; a pod's
    /// container selects its pod). Repeatable.
    #[arg(long = "container", value_name = "NAME|ID")]
    pub container: Vec<String>,
    /// Only workloads with these labels (Docker labels, pod labels): key=value[,key=value]
    /// (all of them). Repeatable (any of them).
    #[arg(short = 'l', long = "selector", value_name = "KEY=VALUE")]
    pub selector: Vec<String>,
    /// Only pods of this Kubernetes namespace. Repeatable.
    #[arg(long = "namespace", value_name = "NS")]
    pub namespace: Vec<String>,
    /// Only packets whose source is this pod's address. Repeatable.
    #[arg(long = "from-pod", value_name = "NS/NAME")]
    pub from_pod: Vec<String>,
    /// Only packets whose destination is this pod's address. Repeatable.
    #[arg(long = "to-pod", value_name = "NS/NAME")]
    pub to_pod: Vec<String>,
    /// Only packets whose source is this container's address. Repeatable.
    #[arg(long = "from-container", value_name = "NAME|ID")]
    pub from_container: Vec<String>,
    /// Only packets whose destination is this container's address. Repeatable.
    #[arg(long = "to-container", value_name = "NAME|ID")]
    pub to_container: Vec<String>,
}

impl SelectArgs {
    /// The selectors, checked (no kernel access).
    pub fn selectors(&self) -> anyhow::Result<Selectors> {
        use crate::identity::select::{parse_container, parse_labels, parse_namespace, parse_pod};
        let picks = |pods: &[String], containers: &[String]| -> anyhow::Result<Vec<_>> {
            let mut v = Vec::new();
            for p in pods {
                v.push(parse_pod(p)?);
            }
            for c in containers {
                v.push(parse_container(c)?);
            }
            Ok(v)
        };
        Ok(Selectors {
            either: picks(&self.pod, &self.container)?,
            labels: self
                .selector
                .iter()
                .map(|l| parse_labels(l))
                .collect::<Result<_, _>>()?,
            namespaces: self
                .namespace
                .iter()
                .map(|n| parse_namespace(n))
                .collect::<Result<_, _>>()?,
            from: picks(&self.from_pod, &self.from_container)?,
            to: picks(&self.to_pod, &self.to_container)?,
        })
    }
}

/// Filters and attach scope shared by `trace` and `flows`.
#[derive(clap::Args, Debug, Clone)]
pub struct FilterArgs {
    /// A pcap-filter expression, as tcpdump takes it (`'tcp port 80 and not host
    /// 198.18.0.1'`; several words are joined): evaluated in the kernel, so a packet it
    /// rejects is neither counted nor traced. See docs/filters.md.
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,
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
    /// How often to rescan for new or vanished namespaces and links, in milliseconds (default
    /// 1000; the agent's 10000). Links and addresses the kernel announces are rescanned at
    /// once whatever this says; the period is the safety net for what it does not announce.
    #[arg(long, value_name = "MS")]
    pub rescan_ms: Option<u64>,
    /// Do not log attach/detach changes on stderr (warnings are still shown).
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
    pub select: SelectArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Do not record socket owners (the `cgroup_skb` programs). Flows in namespaces shared
    /// by several containers, and host-mode containers, then stay unattributed or
    /// "shared by".
    #[arg(long)]
    pub no_socket_owners: bool,
    /// Attach to many interfaces fast: expedite the kernel's RCU grace periods
    /// (`/sys/kernel/rcu_expedited`) while a batch of 16+ interfaces is attached or detached,
    /// then restore it. Each TCX attach otherwise waits for a normal grace period (~9 ms
    /// here), so 1000 interfaces take ~18 s. Expedited grace periods interrupt every CPU.
    #[arg(long)]
    pub fast_attach: bool,
    /// How programs go onto interfaces: global (no per-interface attachment: the stack's
    /// tracepoints for the whole node, a new veth seen from its first packet; flows and
    /// trace), tcx (links that die with the process; Linux 6.6+), or tc (legacy `clsact` +
    /// `cls_bpf` filters, for older kernels; `inspector cleanup` removes them after a
    /// crash). Default: global for flows and trace where the kernel has its tracepoints;
    /// per-hop timing (and kernels without them): tcx where the kernel has it, else tc.
    #[arg(long, value_name = "MODE", value_parser = parse_attach)]
    pub attach: Option<crate::probe::AttachMode>,
    /// Kernel-side debug logging (aya-log) at this level and above: error, warn, info,
    /// debug, trace (parse anomalies, namespace decisions, sampling changes), on stderr as
    /// `inspector: kernel: ...`. Off by default, and then free: the verifier removes every
    /// log statement.
    #[arg(long, value_name = "LEVEL", value_parser = crate::probe::log::parse_level)]
    pub kernel_log: Option<crate::probe::log::Level>,
    /// Attach a tc program that does nothing instead of the observing ones: the baseline
    /// `bench overhead` measures per-hook cost against. Nothing is counted.
    #[arg(long, hide = true)]
    pub empty_programs: bool,
    /// Count drops with the classic `skb:kfree_skb` tracepoint even where `tp_btf` is
    /// available (what kernels without BTF get; lets the tests check it on any kernel).
    #[arg(long, hide = true)]
    pub classic_drops: bool,
}

impl FilterArgs {
    /// The packet filter; no kernel access, so it fails before anything happens.
    pub fn filter(&self) -> anyhow::Result<Filter> {
        if let Some(s) = &self.service {
            session::check_service_name(s)?;
        }
        Ok(Filter {
            service: self.service.clone(),
            proto: self.proto.as_deref().map(ProtoFilter::parse).transpose()?,
            host: self.host.as_deref().map(filter::parse_host).transpose()?,
            port: self.port.as_deref().map(filter::parse_port).transpose()?,
            expression: if self.expression.is_empty() {
                None
            } else {
                Some(crate::probe::pcap::Filter::new(&self.expression.join(" "))?)
            },
        })
    }

    /// The session's options (measuring flows only; commands set `measure`).
    pub fn options(&self) -> anyhow::Result<session::Options> {
        Ok(session::Options {
            filter: self.filter()?,
            selectors: self.select.selectors()?,
            netns: self.netns.clone(),
            interfaces: self.interface.clone(),
            lo: self.lo,
            devices: self.devices,
            all_interfaces: self.all_interfaces,
            ready_file: self.ready_file.clone(),
            services: !self.no_services,
            drops: !self.no_drops,
            max_flows: self.max_flows,
            identity: self.identity.options(),
            socket_owners: !self.no_socket_owners,
            fast_attach: self.fast_attach,
            attach: self.attach,
            measure: session::Measure::Flows,
            kernel_log: self.kernel_log,
            lifecycle: false,
            empty_programs: self.empty_programs,
            classic_drops: self.classic_drops,
        })
    }

    #[must_use]
    pub fn rescan(&self) -> Duration {
        self.rescan_or(1000)
    }

    /// The rescan period, `default_ms` when not given.
    #[must_use]
    pub fn rescan_or(&self, default_ms: u64) -> Duration {
        Duration::from_millis(self.rescan_ms.unwrap_or(default_ms))
    }
}

/// Shows what starting or rescanning did: attach changes unless `quiet`, warnings always.
pub fn log_changes(changes: &[Change], quiet: bool) {
    for c in changes {
        if !quiet || c.is_warning() {
            eprintln!("inspector: {c}");
        }
    }
}

/// Shows the session's warnings found while answering.
pub fn log_notes(s: &session::Session) {
    for n in s.take_notes() {
        eprintln!("inspector: warning: {n}");
    }
}

/// Parses `--attach`.
pub fn parse_attach(s: &str) -> Result<crate::probe::AttachMode, String> {
    match s {
        "tcx" => Ok(crate::probe::AttachMode::Tcx),
        "tc" => Ok(crate::probe::AttachMode::Tc),
        "global" => Ok(crate::probe::AttachMode::Global),
        _ => Err(format!("'{s}' is not an attach mode: tcx, tc or global")),
    }
}

/// Parses a number of seconds (> 0).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

/// Seconds as for `parse_secs`, or exactly `0` (meaning "skip it").
pub fn parse_secs_or_zero(s: &str) -> Result<f64, String> {
    if s == "0" { Ok(0.0) } else { parse_secs(s) }
}
