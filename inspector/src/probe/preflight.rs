//! Checks made before anything is loaded, so that a missing privilege or kernel feature gets a
//! one-line explanation instead of an errno from deep inside a syscall.
use std::path::PathBuf;

use super::ProbeError;

/// Where the kernel exposes its BTF. Overridable (`INSPECTOR_BTF_PATH`) only so the test of the
/// "no BTF" message can point it at a missing file.
pub fn btf_path() -> PathBuf {
    std::env::var_os("INSPECTOR_BTF_PATH")
        .map_or_else(|| "/sys/kernel/btf/vmlinux".into(), PathBuf::from)
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;
const CAP_PERFMON: u32 = 38;

/// Privileges: loading needs `CAP_BPF` (+`CAP_PERFMON` for the helpers we use), attaching tc
/// needs `CAP_NET_ADMIN`, entering other namespaces needs `CAP_SYS_ADMIN`.
pub fn privileges() -> Result<(), ProbeError> {
    let caps = crate::sys::privilege::effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_SYS_ADMIN) {
        missing.push("CAP_SYS_ADMIN");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ProbeError::NotPrivileged(missing.join(", ")))
    }
}

/// BTF: needed for the tracepoint programs' kernel-struct offsets and by the loader.
pub fn btf() -> Result<(), ProbeError> {
    let p = btf_path();
    if p.exists() {
        Ok(())
    } else {
        Err(ProbeError::NoBtf(p))
    }
}

/// Whether the global hooks can be used here: the kernel's BTF has both of their
/// tracepoints (`btf_trace_netif_receive_skb`, `btf_trace_net_dev_start_xmit`).
#[must_use]
pub fn global_hooks() -> bool {
    super::features::global_hooks(&btf_path())
}

/// The attach mode to use: the one asked for, else TCX where the kernel has it (its BTF
/// lists `BPF_TCX_INGRESS`), else legacy tc. Asking for TCX where it is missing is an error
/// naming the kernel and the alternative.
pub fn attach_mode(asked: Option<super::AttachMode>) -> Result<super::AttachMode, ProbeError> {
    let has_tcx = super::features::tcx(&btf_path());
    match asked {
        Some(super::AttachMode::Tcx) if !has_tcx => {
            let v = aya::util::KernelVersion::current()
                .map_err(|e| ProbeError::KernelVersion(e.to_string()))?;
            Err(ProbeError::NoTcx(v))
        }
        Some(m) => Ok(m),
        None if has_tcx => Ok(super::AttachMode::Tcx),
        None => Ok(super::AttachMode::Tc),
    }
}
