//! What can go wrong in the probe; each message says what failed and what to do about it.
use std::path::PathBuf;

use aya::programs::ProgramError;

use super::btf;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot put the filter expression into the kernel programs: {0}")]
    FilterPatch(String),
    #[error(
        "insufficient privileges (missing {0}): run as root, or grant CAP_BPF, CAP_PERFMON, \
         CAP_NET_ADMIN and CAP_SYS_ADMIN"
    )]
    NotPrivileged(String),
    #[error(
        "kernel has no BTF at {}: the inspector needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        .0.display()
    )]
    NoBtf(PathBuf),
    #[error(
        "kernel {0} has no TCX (Linux 6.6+): run with --attach tc (legacy tc filters), or \
         leave --attach out to pick what the kernel has"
    )]
    NoTcx(aya::util::KernelVersion),
    #[error("cannot read the running kernel's version ({0}): is /proc mounted?")]
    KernelVersion(String),
    #[error(
        "tracefs is not mounted at {} and mounting it failed ({error}): mount it with `mount -t \
         tracefs nodev /sys/kernel/tracing`, or run with --no-drops (drop reasons are then not \
         traced)",
        path.display()
    )]
    NoTracefs {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "reading {}: {source} (the kernel has no skb:kfree_skb tracepoint?): run with --no-drops",
        path.display()
    )]
    TracepointFormat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: a layout this version cannot read (no skbaddr or location field): run \
         with --no-drops",
        .0.display()
    )]
    TracepointLayout(PathBuf),
    #[error("reading the possible CPUs ({0}): is /sys/devices/system/cpu/possible readable?")]
    PossibleCpus(std::io::Error),
    #[error("program {0} is missing from the embedded object: the build is broken, rebuild it")]
    MissingProgram(&'static str),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the kernel verifier rejected program {program} ({errno}); its log follows\n{log}")]
    Verifier {
        program: &'static str,
        errno: std::io::Error,
        log: String,
    },
    #[error(
        "program {program} needs bpf_probe_read_kernel() to tell namespaces apart, which this \
         kernel refuses (lockdown=confidentiality?): run without kernel lockdown"
    )]
    NoProbeRead { program: &'static str },
    #[error("{0}: the inspector cannot locate the namespace of a packet's device on this kernel")]
    Btf(#[from] btf::BtfError),
    #[error(
        "--attach global needs the kernel's BTF for tp_btf programs ({0}): use --attach tcx or tc"
    )]
    GlobalBtf(String),
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        source: ProgramError,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("attaching to {ifname} in namespace {netns}: {source}")]
    Attach {
        ifname: String,
        netns: String,
        source: std::io::Error,
    },
    #[error("opening cgroup {}: {source}", dir.display())]
    Cgroup {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("reading map {map} in batches: {source}")]
    Batch {
        map: &'static str,
        source: std::io::Error,
    },
    #[error("the kernel log ring (aya-log): {0}")]
    KernelLog(#[from] aya_log::Error),
}

impl ProbeError {
    /// An attach that failed because its interface (or namespace) went between the scan
    /// that listed it and the attach: nothing to report (a veth being moved into a
    /// container, or removed with it); the next rescan sees where it is.
    #[must_use]
    pub fn interface_gone(&self) -> bool {
        matches!(self, Self::Attach { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENODEV | libc::ENOENT)))
    }

    /// A TCX attach the kernel refused because our programs are on the device already:
    /// only this process holds them, so it is a device we attached under another
    /// namespace, seen in both by one scan while it moved (namespaces are listed one after
    /// another). Its links go on counting; the next rescan files them under the new one.
    #[must_use]
    pub fn already_ours(&self) -> bool {
        matches!(self, Self::Attach { source, .. } if source.raw_os_error() == Some(libc::EEXIST))
    }
}

/// The error for a failure on map `name`.
pub(super) fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError + Copy {
    move |source| ProbeError::Map { map: name, source }
}

/// The error for a program that failed to load: the verifier's log when it refused it.
pub(super) fn load_error(program: &'static str, e: ProgramError) -> ProbeError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            // Under lockdown=confidentiality the helper has no prototype: "unknown func".
            if log.contains("unknown func bpf_probe_read_kernel") {
                ProbeError::NoProbeRead { program }
            } else {
                ProbeError::Verifier {
                    program,
                    errno: io_error,
                    log,
                }
            }
        }
        source => ProbeError::Program { program, source },
    }
}

/// The error for a program of the object that is not of the expected type.
pub(super) fn program_err(program: &'static str) -> impl Fn(ProgramError) -> ProbeError + Copy {
    move |source| ProbeError::Program { program, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a user on Linux 6.1 reads: the version as people write it, never Debug output.
    #[test]
    fn no_tcx_names_the_kernel_as_people_write_it() {
        let e = ProbeError::NoTcx(aya::util::KernelVersion::new(6, 1, 170));
        let text = e.to_string();
        assert!(text.starts_with("kernel 6.1.170 has no TCX"), "{text}");
        assert!(!text.contains('{'), "{text}");
        assert!(text.contains("--attach tc"), "{text}");
    }
}
