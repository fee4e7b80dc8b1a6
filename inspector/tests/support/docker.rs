//! A real dockerd for the tests: the one already running (if its bridge is inside
//! 198.18.0.0/15), or one started here with its bridge there (`--bip 198.19.0.1/24`) and
//! stopped on drop - after which the docker0 bridge and the iptables rules it wrote are
//! removed again, so the node is as before. Images are built locally from busybox-static
//! (no registry is reachable). The docker CLI is the test's oracle (`docker inspect`).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use std::io::Write as _;

use super::{eventually, sh};

pub const SOCKET: &str = "/var/run/docker.sock";
const DEFAULT_NETNS: &str = "/run/docker/netns/default";
pub const IMAGE: &str = "inspector-test/busybox:1";

pub struct Dockerd {
    child: Option<Child>,
    data_root: Option<PathBuf>,
    /// (`iptables-save`, nft tables, `ip_forward`) before a daemon of ours started.
    before: Option<(String, Vec<String>, String)>,
    /// dockerd bind-mounts the host namespace here for host-mode sandboxes, and leaves it.
    had_default_netns: bool,
    containers: Vec<String>,
    networks: Vec<String>,
    /// Links before a daemon of ours started (its bridges are removed after it stops).
    links_before: Vec<String>,
    /// One test of a process at a time has the daemon (another's drop would stop it under
    /// this one); released after `drop` stopped it.
    _turn: std::sync::MutexGuard<'static, ()>,
}

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The daemon's turn without a daemon (for a test that starts its own, or none).
pub fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a dockerd answers on the default socket.
pub fn answers() -> bool {
    docker_ok(&["version"])
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(["-H", &format!("unix://{SOCKET}")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `docker ARGS` against the test daemon; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let mut v = vec!["docker", "-H", "unix:///var/run/docker.sock"];
    v.extend_from_slice(args);
    sh(&v).trim().to_owned()
}

/// `table FAMILY NAME` lines of `nft list tables`.
pub fn nft_tables() -> Vec<String> {
    sh(&["nft", "list", "tables"])
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| l.starts_with("table "))
        .collect()
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

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

impl Dockerd {
    /// Uses the running daemon or starts one; imports the test image.
    pub fn start() -> Self {
        let turn = TURN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut me = Self {
            child: None,
            data_root: None,
            before: None,
            had_default_netns: Path::new(DEFAULT_NETNS).exists(),
            networks: Vec::new(),
            links_before: links(),
            containers: Vec::new(),
            _turn: turn,
        };
        if docker_ok(&["version"]) {
            let subnet = docker(&[
                "network",
                "inspect",
                "bridge",
                "-f",
                "{{(index .IPAM.Config 0).Subnet}}",
            ]);
            assert!(
                subnet.starts_with("198.18.") || subnet.starts_with("198.19."),
                "a dockerd is already running with its bridge on {subnet}, outside \
                 198.18.0.0/15 (the only range tests may use): stop it, or restart it with \
                 --bip 198.19.0.1/24"
            );
        } else {
            me.before = Some((
                sh(&["iptables-save"]),
                nft_tables(),
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default(),
            ));
            let root = std::env::temp_dir().join(format!("insp-docker-{}", std::process::id()));
            std::fs::create_dir_all(&root).expect("data root");
            me.child = Some(spawn_daemon(&root));
            me.data_root = Some(root);
            me.wait_answers();
        }
        Self::import_image();
        me
    }

    fn wait_answers(&self) {
        assert!(
            eventually(Duration::from_mins(1), || docker_ok(&["version"])),
            "dockerd did not answer within 60 s; its log: {}",
            self.data_root
                .as_ref()
                .and_then(|r| std::fs::read_to_string(r.with_extension("log")).ok())
                .unwrap_or_default()
        );
    }

    /// Whether the daemon is this test's own (started here, and so restartable).
    pub fn ours(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the daemon (SIGTERM: its containers stop with it) and starts it again on the same
    /// data root; returns once it answers. Only for a daemon of ours.
    pub fn restart(&mut self) {
        let mut child = self.child.take().expect("a daemon of ours");
        stop(&mut child);
        let root = self.data_root.clone().expect("its data root");
        self.child = Some(spawn_daemon(&root));
        self.wait_answers();
    }

    fn import_image() {
        if docker_ok(&["image", "inspect", IMAGE]) {
            return;
        }
        let dir = std::env::temp_dir().join(format!("insp-rootfs-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("rootfs");
        std::fs::create_dir_all(dir.join("www")).expect("www");
        std::fs::write(dir.join("www/index.html"), "hello from inspector's test\n").expect("page");
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .expect("/bin/busybox (busybox-static, installed by `cargo xtask setup`)");
        let list = sh(&["/bin/busybox", "--list"]);
        for a in list.lines().filter(|a| *a != "busybox") {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(a));
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar");
        let st = Command::new("docker")
            .args(["-H", &format!("unix://{SOCKET}"), "import", "-c"])
            .arg(r#"CMD ["/bin/sleep","3600"]"#)
            .args(["-", IMAGE])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .stdout(Stdio::null())
            .status()
            .expect("docker import");
        let tar_ok = tar.wait().is_ok_and(|s| s.success());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(st.success() && tar_ok, "docker import failed");
    }

    /// `docker run -d --name NAME OPTS... IMAGE CMD...`; removed on drop. Returns the id.
    pub fn run(&mut self, name: &str, opts: &[&str], cmd: &[&str]) -> String {
        let mut v = vec!["run", "-d", "--name", name];
        v.extend_from_slice(opts);
        v.push(IMAGE);
        v.extend_from_slice(cmd);
        let id = docker(&v);
        self.containers.push(id.clone());
        id
    }

    /// `docker inspect -f FORMAT NAME`.
    pub fn inspect(name: &str, format: &str) -> String {
        docker(&["inspect", "-f", format, name])
    }

    /// (ifindex, peer ifindex) of eth0 in the container's namespace, as iproute2 reports it.
    pub fn eth0_of(name: &str) -> (u64, u64) {
        let pid = Self::inspect(name, "{{.State.Pid}}");
        let out = sh(&[
            "nsenter",
            &format!("--net=/proc/{pid}/ns/net"),
            "ip",
            "-j",
            "link",
            "show",
            "dev",
            "eth0",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
        (
            v[0]["ifindex"].as_u64().expect("ifindex"),
            v[0]["link_index"].as_u64().expect("link_index"),
        )
    }

    /// `docker exec NAME sh -c SCRIPT`, bounded by busybox `timeout`; returns its success.
    pub fn exec(name: &str, script: &str) -> bool {
        Command::new("docker")
            .args([
                "-H",
                &format!("unix://{SOCKET}"),
                "exec",
                name,
                "timeout",
                "10",
                "sh",
                "-c",
                script,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `docker network create --subnet SUBNET NAME` (a user-defined bridge, `br-<id>`);
    /// removed on drop. Returns the network id.
    pub fn network(&mut self, name: &str, subnet: &str) -> String {
        let id = docker(&["network", "create", "--subnet", subnet, name]);
        self.networks.push(id.clone());
        id
    }

    /// The daemon's pid (ours, or the running one's).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or_else(
            || {
                sh(&["pidof", "-s", "dockerd"])
                    .trim()
                    .parse()
                    .expect("pid of dockerd")
            },
            |c| c.id() as i32,
        )
    }

    /// Freezes the daemon (SIGSTOP) until the guard goes: its socket still accepts
    /// connections, and nothing answers them - a daemon that hangs.
    pub fn freeze(&self) -> Frozen {
        let pid = self.pid();
        // SAFETY: kill(2) with a pid of dockerd.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Frozen(pid)
    }

    /// Moves the daemon's socket aside until the guard goes: connecting fails as when no
    /// daemon runs (the daemon keeps the socket, and answers again once it is back).
    pub fn socket_away() -> SocketAway {
        let away = format!("{SOCKET}.away-{}", std::process::id());
        std::fs::rename(SOCKET, &away).expect("move the socket aside");
        SocketAway(away)
    }

    pub fn remove(name_or_id: &str) {
        let _ = docker_ok(&["rm", "-f", name_or_id]);
    }
}

/// A dockerd of ours with its bridge inside 198.18.0.0/15, its log beside its data root.
fn spawn_daemon(root: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.with_extension("log"))
        .expect("log");
    Command::new("dockerd")
        .args(["--bip", "198.19.0.1/24", "--data-root"])
        .arg(root)
        .args(["-H", &format!("unix://{SOCKET}"), "--pidfile"])
        .arg(root.with_extension("pid"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("dockerd (installed by `cargo xtask setup`)")
}

/// SIGTERM, then (after 30 s) SIGKILL; reaped.
fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A frozen dockerd; thawed on drop (also on a panic).
pub struct Frozen(i32);

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: kill(2) with the pid frozen.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Docker's socket moved aside; put back on drop (also on a panic).
pub struct SocketAway(String);

impl Drop for SocketAway {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.0, SOCKET);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        for c in self.containers.drain(..) {
            let _ = docker_ok(&["rm", "-f", &c]);
        }
        for n in self.networks.drain(..) {
            let _ = docker_ok(&["network", "rm", &n]);
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        stop(&mut child);
        if !self.had_default_netns && Path::new(DEFAULT_NETNS).exists() {
            let _ = Command::new("umount").arg(DEFAULT_NETNS).status();
            let _ = std::fs::remove_file(DEFAULT_NETNS);
        }
        // Bridges the daemon made (docker0, br-<network>) stay after it stops.
        for l in links() {
            if !self.links_before.contains(&l) && (l == "docker0" || l.starts_with("br-")) {
                let _ = Command::new("ip").args(["link", "del", &l]).status();
            }
        }
        if let Some((dump, tables, forward)) = &self.before {
            // Tables dockerd created go; the ones that were there get their old rules back.
            for t in nft_tables().iter().filter(|t| !tables.contains(t)) {
                let mut args = vec!["delete"];
                args.extend(t.split_whitespace());
                let _ = Command::new("nft").args(&args).status();
            }
            let mut p = Command::new("iptables-restore")
                .stdin(Stdio::piped())
                .spawn()
                .expect("iptables-restore");
            let _ = p.stdin.take().expect("stdin").write_all(dump.as_bytes());
            let _ = p.wait();
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", forward);
        }
        if let Some(root) = self.data_root.take() {
            let _ = std::fs::remove_dir_all(&root);
            let _ = std::fs::remove_file(root.with_extension("log"));
            let _ = std::fs::remove_file(root.with_extension("pid"));
        }
    }
}
