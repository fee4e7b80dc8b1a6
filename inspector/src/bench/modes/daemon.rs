//! What the private runtimes of a run (`--private-dockerd`, `--private-containerd`) share:
//! starting the daemon in its own process group with its log in its directory, waiting until
//! it answers, and stopping it with everything mounted under its directory.
use std::{
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{bench::BenchError, sys::signals::StopFlag};

/// Spawns `cmd` with its output in `log` and in its own process group: a Ctrl-C meant for
/// the bench does not stop it under its containers; the bench stops it after removing them.
pub(super) fn spawn(cmd: &mut Command, log: &Path, what: &str) -> Result<Child, BenchError> {
    let io = |e: std::io::Error| BenchError::Input(format!("{what}: cannot start it: {e}"));
    let out = std::fs::File::create(log).map_err(io)?;
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(io)?)
        .stderr(out)
        .spawn()
        .map_err(io)
}

/// Waits up to 60 s until `answers`; an error names the last line of `log`.
pub(super) fn wait(
    child: &mut Child,
    stop: &StopFlag,
    log: &Path,
    what: &str,
    mut answers: impl FnMut() -> bool,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_mins(1);
    while !answers() {
        if stop.raised() {
            return Err(BenchError::Interrupted);
        }
        if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(BenchError::Input(format!(
                "{what} did not start: {}",
                text.lines().last().unwrap_or("no log").trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// SIGTERM, up to `grace` for it to end, then SIGKILL; reaped.
pub(super) fn stop(child: &mut Child, grace: Duration) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Unmounts everything mounted under `dir` (deepest first) and removes it.
pub(super) fn remove_dir(dir: &Path) {
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}
