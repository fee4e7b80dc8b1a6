//! Who watches the traffic during a run of `bench overhead`: nobody, `inspector flows` (as
//! a user runs it, a separate process, with or without per-hop timing), or tcpdump on every
//! hop. Each observer is started fresh for each measurement and stopped after it.
use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::super::BenchError;
use crate::sys::process::Children;

/// Who watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Observer {
    None,
    /// `inspector flows` as a user runs it (the global hooks where the kernel has them).
    Inspector,
    /// `inspector flows --attach tcx`: per-device TCX links (where the kernel has TCX).
    InspectorTcx,
    /// `inspector flows --latency`: the programs time each packet from hook to hook.
    InspectorHops,
    /// `inspector flows --latency --latency-from events`: an event per packet per hook,
    /// stitched into per-hop times in userspace.
    InspectorHopEvents,
    /// `inspector flows --attach tc`: legacy tc filters instead of TCX links.
    InspectorTc,
    /// The global hooks selecting only the host's namespace: what the global hooks cost on the
    /// lab's packets when their devices are not selected (node-wide cost).
    InspectorGlobalUnselected,
    /// A tc program that does nothing, on the same hooks (the baseline of per-hook cost).
    EmptyTc,
    /// Do-nothing programs on the global hooks' tracepoints (their baseline).
    EmptyGlobal,
    /// `inspector flows --classic-drops`: drops from the classic `skb:kfree_skb` tracepoint
    /// (what kernels without BTF get) instead of `tp_btf` (for the `udp-drops` workload).
    InspectorClassicDrops,
    Tcpdump,
}

impl Observer {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Inspector => "inspector",
            Self::InspectorHops => "inspector-hops",
            Self::InspectorHopEvents => "inspector-hop-events",
            Self::InspectorTc => "inspector-tc",
            Self::InspectorTcx => "inspector-tcx",
            Self::InspectorGlobalUnselected => "inspector-global-unselected",
            Self::EmptyTc => "empty-tc",
            Self::EmptyGlobal => "empty-global",
            Self::InspectorClassicDrops => "inspector-classic-drops",
            Self::Tcpdump => "tcpdump",
        }
    }
}

/// Starts `inspector` (this binary) with `args` and `--ready-file`, and waits until it has
/// attached everything.
pub fn start_inspector(
    args: &[String],
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Children, BenchError> {
    let ready = std::env::temp_dir().join(format!("inspector-bench-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let exe = std::env::current_exe().map_err(BenchError::io("finding this program"))?;
    let child = std::process::Command::new(exe)
        .args(args)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(BenchError::io("starting the observed inspector"))?;
    let mut running = Children(vec![child]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        let exited = running.0[0].try_wait().ok().flatten().is_some();
        if exited || Instant::now() > deadline {
            return Err(BenchError::Observer(
                "inspector did not become ready".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&ready);
    Ok(running)
}

/// `tcpdump -w /dev/null` on each (namespace, interface), each waited for until it says
/// it is listening.
fn tcpdump(hops: &[(PathBuf, String)]) -> Result<Children, BenchError> {
    let mut children = Children::default();
    for (ns, ifname) in hops {
        let mut child = crate::sys::netns::command_in(ns, "tcpdump")
            .map_err(BenchError::io(format!("entering {}", ns.display())))?
            .args(["-i", ifname, "-n", "-w", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(BenchError::io("starting tcpdump (run `cargo xtask setup`)"))?;
        // tcpdump says "listening on IF" once its capture is open.
        let err = child
            .stderr
            .take()
            .ok_or_else(|| BenchError::Observer("tcpdump has no stderr".into()))?;
        children.0.push(child);
        let mut line = String::new();
        let mut r = BufReader::new(err);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !line.contains("listening on") {
            line.clear();
            let n = r
                .read_line(&mut line)
                .map_err(BenchError::io("reading tcpdump"))?;
            if n == 0 || Instant::now() > deadline {
                return Err(BenchError::Observer(format!(
                    "tcpdump on {ifname} did not start"
                )));
            }
        }
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in r.lines() {});
    }
    Ok(children)
}

/// Starts `obs` on the lab: `netns` are the lab's namespaces, `hops` its interfaces on the
/// path; `extra` goes to the observed inspector.
pub fn start(
    obs: Observer,
    netns: &[String],
    hops: &[(PathBuf, String)],
    extra: &[String],
) -> Result<Children, BenchError> {
    match obs {
        Observer::None => Ok(Children::default()),
        Observer::Inspector
        | Observer::InspectorHops
        | Observer::InspectorHopEvents
        | Observer::InspectorTc
        | Observer::InspectorTcx
        | Observer::InspectorClassicDrops => {
            let mut args: Vec<String> = ["flows", "--duration", "86400", "-q"]
                .map(String::from)
                .to_vec();
            for n in netns {
                args.extend(["--netns".to_owned(), n.clone()]);
            }
            args.extend(extra.iter().cloned());
            if obs == Observer::InspectorHops {
                args.push("--latency".into());
            }
            if obs == Observer::InspectorTc {
                args.extend(["--attach", "tc"].map(String::from));
            }
            if obs == Observer::InspectorTcx {
                args.extend(["--attach", "tcx"].map(String::from));
            }
            if obs == Observer::InspectorClassicDrops {
                args.push("--classic-drops".into());
            }
            if obs == Observer::InspectorHopEvents {
                args.extend(["--latency", "--latency-from", "events"].map(String::from));
            }
            start_inspector(&args, Stdio::null(), Stdio::null())
        }
        Observer::InspectorGlobalUnselected => {
            let mut args: Vec<String> = [
                "flows",
                "--duration",
                "86400",
                "-q",
                "--attach",
                "global",
                "--netns",
                "host",
            ]
            .map(String::from)
            .to_vec();
            args.extend(extra.iter().cloned());
            start_inspector(&args, Stdio::null(), Stdio::null())
        }
        Observer::EmptyTc | Observer::EmptyGlobal => {
            let mut args: Vec<String> = [
                "flows",
                "--duration",
                "86400",
                "-q",
                "--empty-programs",
                "--no-drops",
                "--no-services",
                "--no-socket-owners",
            ]
            .map(String::from)
            .to_vec();
            for n in netns {
                args.extend(["--netns".to_owned(), n.clone()]);
            }
            if obs == Observer::EmptyGlobal {
                args.extend(["--attach", "global"].map(String::from));
            }
            start_inspector(&args, Stdio::null(), Stdio::null())
        }
        Observer::Tcpdump => tcpdump(hops),
    }
}

/// Run time of the inspector's observing programs, tc or global (the log programs' too, with
/// `--kernel-log`; the empty ones for `EmptyTc` and `EmptyGlobal`), summed, and how often the observing ones ran: the time is
/// per packet and hook (`bpf_stats` must be on).
#[must_use]
pub fn tc_prog_stats(obs: Observer) -> Option<(u64, u64)> {
    use crate::probe::{
        GLOBAL_EMPTY, GLOBAL_HOOKS, PROG_EGRESS, PROG_EMPTY, PROG_INGRESS, PROG_LOG_EGRESS,
        PROG_LOG_INGRESS,
    };
    // One observer runs at a time: whichever of its kind are loaded are the ones it uses.
    let empty = [PROG_EMPTY, GLOBAL_EMPTY[0].0, GLOBAL_EMPTY[1].0];
    let observing = [
        PROG_INGRESS,
        PROG_EGRESS,
        GLOBAL_HOOKS[0].0,
        GLOBAL_HOOKS[1].0,
    ];
    let mut with_log = observing.to_vec();
    with_log.extend([PROG_LOG_INGRESS, PROG_LOG_EGRESS]);
    let (timed, counted): (&[&str], &[&str]) =
        if matches!(obs, Observer::EmptyTc | Observer::EmptyGlobal) {
            (&empty, &empty)
        } else {
            (&with_log, &observing)
        };
    prog_stats(timed, counted)
}

/// Run time of the drop program (`tp_btf` or classic, whichever is loaded) and its runs:
/// per `kfree_skb` call (`bpf_stats` must be on).
#[must_use]
pub fn drop_prog_stats() -> Option<(u64, u64)> {
    let progs = [crate::probe::PROG_DROPS, crate::probe::PROG_DROPS_BTF];
    prog_stats(&progs, &progs)
}

/// The summed run time of the programs named `timed` and the summed runs of those named
/// `counted`, from `bpftool`.
fn prog_stats(timed: &[&str], counted: &[&str]) -> Option<(u64, u64)> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let (mut ns, mut runs) = (0u64, 0u64);
    for p in v.as_array()? {
        let name = p["name"].as_str().unwrap_or_default();
        if timed.contains(&name) {
            ns += p["run_time_ns"].as_u64().unwrap_or(0);
        }
        if counted.contains(&name) {
            runs += p["run_cnt"].as_u64().unwrap_or(0);
        }
    }
    (runs > 0).then_some((ns, runs))
}

/// Turns `kernel.bpf_stats_enabled` on while it lives (it adds ~50 ns of accounting to
/// every program run, the same for both inspector observers).
pub struct BpfStats(Option<String>);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn on(want: bool) -> Result<Self, BenchError> {
        if !want {
            return Ok(Self(None));
        }
        let old = std::fs::read_to_string(BPF_STATS)
            .map_err(BenchError::io("reading kernel.bpf_stats_enabled"))?;
        std::fs::write(BPF_STATS, "1")
            .map_err(BenchError::io("turning kernel.bpf_stats_enabled on"))?;
        Ok(Self(Some(old.trim().to_owned())))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(BPF_STATS, old);
        }
    }
}
