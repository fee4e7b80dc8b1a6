//! What /proc says of a running inspector: resident memory, threads, open descriptors and
//! BPF links; for the churn tests, which check that these come back after each round.
use std::time::Duration;

use super::held_objects;

/// What /proc says of a process.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
    pub threads: u64,
    pub fds: usize,
    pub links: usize,
}

pub fn usage(pid: i32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in /proc/{pid}/status"))
    };
    Usage {
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:"),
        threads: field("Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count(),
        links: held_objects(pid).links.len(),
    }
}

/// Descriptors, threads and links.
pub fn held(u: &Usage) -> (usize, u64, usize) {
    (u.fds, u.threads, u.links)
}

/// A sample whose descriptors, threads and links held still for 300 ms (within 10 s).
pub fn steady(now: impl Fn() -> (Usage, Usage)) -> (Usage, Usage) {
    let mut last = now();
    for _ in 0..33 {
        std::thread::sleep(Duration::from_millis(300));
        let u = now();
        if (held(&u.0), held(&u.1)) == (held(&last.0), held(&last.1)) {
            return u;
        }
        last = u;
    }
    panic!("descriptors, threads or links never held still: {last:?}")
}

/// Descriptors, threads and links of two processes (flows, trace).
pub type Held2 = ((usize, u64, usize), (usize, u64, usize));

/// After the first round, records where the two processes' descriptors, threads and links
/// held still; after a later one, waits (up to 20 s: a rescan in flight holds a namespace's
/// descriptor for a moment) until they are back there, and fails if not. The sample.
pub fn back_after_round(
    base: &mut Option<Held2>,
    round: usize,
    now: impl Fn() -> (Usage, Usage),
) -> (Usage, Usage) {
    let Some(base) = *base else {
        let u = steady(now);
        *base = Some((held(&u.0), held(&u.1)));
        return u;
    };
    let mut last = now();
    let back = super::eventually(Duration::from_secs(20), || {
        last = now();
        (held(&last.0), held(&last.1)) == base
    });
    assert!(
        back,
        "round {round}: descriptors, threads or links (flows, trace) not back to {base:?}: {:?}",
        (held(&last.0), held(&last.1))
    );
    last
}
