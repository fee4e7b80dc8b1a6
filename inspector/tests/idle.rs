//! An idle session sleeps: with no traffic and nothing changing, `flows` waits in the kernel
//! between rescans instead of spinning. Measured with the kernel's own accounting of the
//! process's CPU time (`/proc/PID/stat`), over a window after it is ready.
mod support;

use std::time::Duration;

use support::{BridgeLab, Inspector};

/// User + system CPU time of a process so far, in seconds.
fn cpu_secs(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // Fields after the command name (which may hold spaces, but ends at the last ')').
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: plain libc call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Regression: with no Docker daemon to hear from, the runtime-event wake-up socket polled
/// readable for ever (its sender was gone) and an idle `flows` used a whole core, which
/// also took a third of an unpinned iperf3's rate in `bench overhead`.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn an_idle_session_sleeps() {
    let lab = BridgeLab::new("id");
    let mut args = vec!["flows", "--duration", "300"];
    for ns in lab.all() {
        args.extend(["--netns", ns.name.as_str()]);
    }
    let insp = Inspector::start(&args);
    let window = Duration::from_secs(3);
    let before = cpu_secs(insp.pid());
    std::thread::sleep(window);
    let used = cpu_secs(insp.pid()) - before;
    let out = insp.interrupt();
    assert!(out.status.success(), "inspector failed");
    assert!(
        used < 0.1 * window.as_secs_f64(),
        "an idle session used {used:.2} s of CPU in {window:?}"
    );
}
