//! Who we run as: root, and the effective capabilities the kernel grants.

/// Whether the process runs as root (effective uid 0).
#[must_use]
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The effective capability set, from /proc/self/status (0 if unreadable).
#[must_use]
pub fn effective_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}
