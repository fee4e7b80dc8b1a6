//! What this kernel gives the probe, found by looking (its BTF, tracefs, its modules,
//! lockdown), never by version number: distributions backport features, and configs differ.
//! Each feature says which hook it serves, what is lost without it and what to do.
use std::path::Path;

use serde::Serialize;

use super::{STACK_HOOKS, btf::Btf};

/// One probed feature.
#[derive(Clone, Debug, Serialize)]
pub struct Feature {
    pub name: String,
    pub ok: bool,
    /// What was found (or why not).
    pub detail: String,
    /// Without it: what is lost and what to do. Empty when `ok`.
    pub without: String,
}

fn feature(name: &str, ok: bool, detail: impl Into<String>, without: &str) -> Feature {
    Feature {
        name: name.to_owned(),
        ok,
        detail: detail.into(),
        without: if ok {
            String::new()
        } else {
            without.to_owned()
        },
    }
}

fn enum_has(btf: Option<&Btf>, e: &str, value: &str) -> bool {
    btf.and_then(|b| b.enum_values(e))
        .is_some_and(|v| v.values().any(|n| n == value))
}

/// TCX: the kernel's BTF lists the `BPF_TCX_INGRESS` attach type.
#[must_use]
pub fn tcx(btf_path: &Path) -> bool {
    enum_has(
        Btf::load(btf_path).ok().as_ref(),
        "bpf_attach_type",
        "BPF_TCX_INGRESS",
    )
}

/// The global hooks' tracepoints are BTF-enabled (`tp_btf`) on this kernel.
#[must_use]
pub fn global_hooks(btf_path: &Path) -> bool {
    has_global_hooks(Btf::load(btf_path).ok().as_ref())
}

fn has_global_hooks(btf: Option<&Btf>) -> bool {
    super::GLOBAL_HOOKS
        .iter()
        .all(|(_, tp)| has_tp_btf(btf, tp))
}

/// The kernel's BTF has tracepoint `tp` as a BTF-enabled one (its `btf_trace_` typedef).
fn has_tp_btf(btf: Option<&Btf>, tp: &str) -> bool {
    !super::fault::hook_missing(tp) && btf.is_some_and(|b| b.has_type(&format!("btf_trace_{tp}")))
}

/// A part of the kernel that may be a module: built in (its struct `ty` is in vmlinux's
/// BTF), a module loaded (`/sys/module/NAME`), or installed for modprobe (`modules.dep`).
fn kernel_part(btf: Option<&Btf>, name: &str, ty: &str) -> (bool, String) {
    if btf.is_some_and(|b| b.has_type(ty)) {
        return (true, "built in".into());
    }
    if Path::new("/sys/module").join(name).exists() {
        return (true, "module, loaded".into());
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dir = Path::new("/lib/modules").join(release.trim());
    let listed = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
    if listed.lines().any(|l| {
        l.split(':')
            .next()
            .is_some_and(|m| m.contains(&format!("/{name}.ko")))
    }) {
        return (true, "module, loaded on first use".into());
    }
    (false, "not built in, not loaded, not installed".into())
}

/// The kernel's lockdown mode (`none`, `integrity`, `confidentiality`), if it says.
#[must_use]
pub fn lockdown() -> Option<String> {
    let t = std::fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    let s = t.find('[')?;
    let e = t[s..].find(']')?;
    Some(t[s + 1..s + e].to_owned())
}

fn tracefs() -> Option<&'static str> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|p| Path::new(p).join("events").is_dir())
}

/// Every feature the probe uses, probed on this kernel.
#[must_use]
pub fn probe_all(btf_path: &Path) -> Vec<Feature> {
    let loaded = Btf::load(btf_path);
    let btf = loaded.as_ref().ok();
    let mut out = vec![feature(
        "btf",
        btf.is_some(),
        match &loaded {
            Ok(_) => format!("{}", btf_path.display()),
            Err(e) => e.to_string(),
        },
        "nothing can be loaded: the inspector needs a kernel with CONFIG_DEBUG_INFO_BTF=y",
    )];
    let offsets = super::btf::kernel_offsets(btf_path);
    out.push(feature(
        "btf-offsets",
        offsets.is_ok(),
        offsets.as_ref().map_or_else(ToString::to_string, |_| {
            "sk_buff, net_device, net, sock".to_owned()
        }),
        "packets cannot be placed in their namespace: report this kernel",
    ));
    let has_tcx = enum_has(btf, "bpf_attach_type", "BPF_TCX_INGRESS");
    out.push(feature(
        "tcx",
        has_tcx,
        if has_tcx {
            "BPF_TCX_INGRESS/EGRESS"
        } else {
            "no BPF_TCX_* attach type"
        },
        "tc programs go in as legacy cls_bpf filters (--attach tc, chosen by itself); a \
         killed inspector leaves them until the next start or `inspector cleanup`",
    ));
    let (cls, how) = kernel_part(btf, "cls_bpf", "cls_bpf_head");
    let (ing, how_q) = kernel_part(btf, "sch_ingress", "clsact_sched_data");
    out.push(feature(
        "tc-legacy",
        cls && ing,
        format!("cls_bpf {how}; sch_ingress (clsact) {how_q}"),
        "no legacy tc attach: only TCX can attach",
    ));
    let global = has_global_hooks(btf);
    out.push(feature(
        "global-hooks",
        global,
        if global {
            "tp_btf netif_receive_skb and net_dev_start_xmit"
        } else {
            "no btf_trace_ typedef for netif_receive_skb or net_dev_start_xmit"
        },
        "flows and trace attach per interface (TCX or tc): a new interface is seen once \
         attached, not from its first packet",
    ));
    for (_, tp, lost) in STACK_HOOKS {
        let ok = has_tp_btf(btf, tp);
        out.push(feature(
            &format!("tp_btf/{tp}"),
            ok,
            if ok {
                "BTF-enabled tracepoint"
            } else {
                "no btf_trace_ typedef"
            },
            &format!("--stack hops lack {lost}"),
        ));
    }
    let tfs = tracefs();
    out.push(feature(
        "tracefs",
        tfs.is_some(),
        tfs.unwrap_or("not mounted (the inspector mounts it at /sys/kernel/tracing)"),
        "drops: the inspector mounts tracefs itself; if that fails, run with --no-drops",
    ));
    let reason = tfs.and_then(|p| {
        std::fs::read_to_string(Path::new(p).join("events/skb/kfree_skb/format")).ok()
    });
    let has_reason = reason.as_deref().is_some_and(|f| f.contains(" reason;"));
    out.push(feature(
        "kfree_skb-reason",
        has_reason,
        match &reason {
            Some(_) if has_reason => "skb:kfree_skb has a reason field",
            Some(_) => "skb:kfree_skb has no reason field",
            None => "skb:kfree_skb format not readable",
        },
        "drops are seen without their reason (Linux 5.17+ names it)",
    ));
    let ring = enum_has(btf, "bpf_map_type", "BPF_MAP_TYPE_RINGBUF");
    out.push(feature(
        "ringbuf",
        ring,
        if ring {
            "BPF_MAP_TYPE_RINGBUF"
        } else {
            "no ring buffer map"
        },
        "no events: trace and drops need Linux 5.8+",
    ));
    let lp = enum_has(btf, "bpf_func_id", "BPF_FUNC_loop");
    out.push(feature(
        "bpf_loop",
        lp,
        if lp {
            "BPF_FUNC_loop (not needed today)"
        } else {
            "absent (not needed today)"
        },
        "nothing: no program uses it",
    ));
    let cg = enum_has(btf, "bpf_prog_type", "BPF_PROG_TYPE_CGROUP_SKB")
        && crate::sys::cgroup::v2_mount().is_some();
    out.push(feature(
        "cgroup_skb",
        cg,
        if cg {
            "cgroup v2 mounted"
        } else {
            "no cgroup v2 mount or no cgroup_skb"
        },
        "socket owners are not recorded: shared-namespace and host-mode flows are not \
         attributed to their container",
    ));
    let ld = lockdown();
    let read_ok = ld.as_deref() != Some("confidentiality");
    out.push(feature(
        "probe-read",
        read_ok,
        format!("lockdown: {}", ld.as_deref().unwrap_or("not reported")),
        "bpf_probe_read_kernel is refused: boot without lockdown=confidentiality",
    ));
    out.push(feature(
        "no-kprobe-fentry",
        true,
        "not used on any kernel: tc, tracepoints and tp_btf only",
        "",
    ));
    out
}
