//! `--private-dockerd`: a dockerd of the run's own, with its data root, exec root and socket
//! in a temporary directory and its bridge inside 198.18.0.0/15, stopped at the end. What a
//! dockerd leaves on the node after it stops (the docker0 bridge, its iptables rules and nft
//! tables, `ip_forward`, the host namespace it bind-mounts) is put back as it was.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::cli::Cli;
use crate::{bench::BenchError, sys::signals::StopFlag};

/// The private daemon's bridge address.
pub(super) const BIP: &str = "198.19.64.1/24";
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
const DEFAULT_NETNS: &str = "/run/docker/netns/default";

/// What the node had before the daemon started.
struct Before {
    iptables: Option<String>,
    nft_tables: Vec<String>,
    ip_forward: String,
    links: Vec<String>,
    default_netns: bool,
}

fn links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn nft_tables() -> Vec<String> {
    output("nft", &["list", "tables"])
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| l.starts_with("table "))
        .collect()
}

/// A running private dockerd; stopped, and the node put back, on drop.
pub(super) struct Private {
    child: Child,
    dir: PathBuf,
    before: Before,
}

impl Private {
    pub(super) fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }
}

/// Starts the daemon and waits (up to 60 s) until it answers.
///
/// # Errors
/// A dockerd already on the node, one that does not start, or Ctrl-C while waiting.
pub(super) fn start(stop: &StopFlag) -> Result<Private, BenchError> {
    if Cli::new(Path::new(DEFAULT_SOCKET)).ok(&["version"]) {
        return Err(BenchError::Input(format!(
            "--private-dockerd: a dockerd already answers on {DEFAULT_SOCKET}; use it (--runtime docker without --private-dockerd) or stop it"
        )));
    }
    if Path::new("/sys/class/net/docker0").exists() {
        return Err(BenchError::Input(
            "--private-dockerd: docker0 exists (another dockerd's bridge); remove it or use that dockerd".into(),
        ));
    }
    let before = Before {
        iptables: output("iptables-save", &[]),
        nft_tables: nft_tables(),
        ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default(),
        links: links(),
        default_netns: Path::new(DEFAULT_NETNS).exists(),
    };
    let dir = std::env::temp_dir().join(format!("insp-bench-dockerd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(BenchError::io(format!("creating {}", dir.display())))?;
    let child = super::super::daemon::spawn(
        Command::new("dockerd")
            .args(["--bip", BIP, "--data-root"])
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display())),
        &dir.join("dockerd.log"),
        "--private-dockerd: dockerd",
    );
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let mut me = Private { child, dir, before };
    let cli = Cli::new(&me.socket());
    let log = me.dir.join("dockerd.log");
    super::super::daemon::wait(
        &mut me.child,
        stop,
        &log,
        "--private-dockerd: dockerd",
        || cli.ok(&["version"]),
    )?;
    Ok(me)
}

impl Drop for Private {
    fn drop(&mut self) {
        super::super::daemon::stop(&mut self.child, Duration::from_secs(30));
        let b = &self.before;
        if !b.default_netns && Path::new(DEFAULT_NETNS).exists() {
            let _ = Command::new("umount").arg(DEFAULT_NETNS).status();
            let _ = std::fs::remove_file(DEFAULT_NETNS);
        }
        for l in links() {
            if !b.links.contains(&l) && (l == "docker0" || l.starts_with("br-")) {
                let _ = Command::new("ip").args(["link", "del", &l]).status();
            }
        }
        for t in nft_tables().iter().filter(|t| !b.nft_tables.contains(t)) {
            let mut args = vec!["delete"];
            args.extend(t.split_whitespace());
            let _ = Command::new("nft").args(&args).status();
        }
        if let Some(dump) = &b.iptables
            && let Ok(mut p) = Command::new("iptables-restore")
                .stdin(Stdio::piped())
                .spawn()
        {
            if let Some(mut stdin) = p.stdin.take() {
                let _ = stdin.write_all(dump.as_bytes());
            }
            let _ = p.wait();
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &b.ip_forward);
        // The host namespace dockerd bind-mounts under its exec root goes with the rest.
        super::super::daemon::remove_dir(&self.dir);
    }
}
