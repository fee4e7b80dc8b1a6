//! `--private-containerd`: a containerd of the run's own with its CRI plugin and a CNI
//! bridge (`ibc<pid>`, 198.19.72.0/24, host-local addresses, no masquerade), following the
//! verified recipe (design/cri-pods): root, state, runc root and socket in a temporary
//! directory; the sandbox ("pause") image built here from busybox-static as an OCI layout and
//! imported with `ctr`, so nothing is pulled. Stopped at the end with everything it made:
//! its shims, mounts, bridge, cgroup parent and directory, and `ip_forward` as it was.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use sha2::{Digest as _, Sha256};

use super::client::Client;
use crate::{bench::BenchError, sys::signals::StopFlag};

pub(super) const SUBNET: &str = "198.19.72.0/24";
const GATEWAY: &str = "198.19.72.1";
const IMAGE: &str = "docker.io/inspector-bench/pause:1";

/// A running private containerd; stopped, and what it made removed, on drop.
pub(super) struct Private {
    child: Child,
    /// `ip_forward` before: the CNI bridge plugin (`isGateway`) turns it on.
    ip_forward: String,
    pub dir: PathBuf,
    pub bridge: String,
    pub cgroup_parent: String,
}

impl Private {
    pub(super) fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
}

fn config(d: &str, bridge: &str) -> (String, String) {
    let toml = format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{d}/runc"
        SystemdCgroup = false
"#
    );
    let cni = format!(
        r#"{{"cniVersion": "1.0.0", "name": "{bridge}", "plugins": [
  {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {{"type": "host-local", "dataDir": "{d}/ipam",
              "ranges": [[{{"subnet": "{SUBNET}", "gateway": "{GATEWAY}"}}]],
              "routes": [{{"dst": "0.0.0.0/0"}}]}}}}]}}"#
    );
    (toml, cni)
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |e| BenchError::Input(format!("--private-containerd: {what}: {e}"))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), BenchError> {
    let out = cmd.output().map_err(io(what))?;
    if out.status.success() {
        return Ok(());
    }
    Err(BenchError::Input(format!(
        "--private-containerd: {what}: {}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("failed")
    )))
}

/// The pause image: busybox-static's `sleep` as an OCI image layout, imported into CRI's
/// `k8s.io` namespace.
fn import_image(dir: &Path, socket: &Path) -> Result<(), BenchError> {
    let root = dir.join("rootfs/bin");
    std::fs::create_dir_all(&root).map_err(io("image rootfs"))?;
    std::fs::copy("/bin/busybox", root.join("busybox"))
        .map_err(io("/bin/busybox (busybox-static)"))?;
    std::os::unix::fs::symlink("busybox", root.join("sleep")).map_err(io("image rootfs"))?;
    let oci = dir.join("oci");
    let blobs = oci.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io("image layout"))?;
    let layer = dir.join("layer.tar");
    run(
        Command::new("tar")
            .arg("-C")
            .arg(dir.join("rootfs"))
            .args(["--owner=0", "--group=0", "-cf"])
            .arg(&layer)
            .arg("."),
        "tar",
    )?;
    let put = |bytes: &[u8]| -> Result<(String, usize), BenchError> {
        let digest = format!("{:x}", Sha256::digest(bytes));
        std::fs::write(blobs.join(&digest), bytes).map_err(io("image layout"))?;
        Ok((digest, bytes.len()))
    };
    let (layer_d, layer_n) = put(&std::fs::read(&layer).map_err(io("layer"))?)?;
    let cfg = serde_json::json!({"architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_d}")]}});
    let (cfg_d, cfg_n) = put(cfg.to_string().as_bytes())?;
    let man = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{cfg_d}"), "size": cfg_n},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_d}"), "size": layer_n}]});
    let (man_d, man_n) = put(man.to_string().as_bytes())?;
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io("image layout"))?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{man_d}"), "size": man_n,
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": IMAGE,
                        "org.opencontainers.image.ref.name": "1"}}]});
    std::fs::write(oci.join("index.json"), index.to_string()).map_err(io("image layout"))?;
    let tar = dir.join("image.tar");
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&oci)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
        "tar",
    )?;
    run(
        Command::new("ctr")
            .arg("-a")
            .arg(socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(&tar),
        "ctr images import",
    )
}

/// Starts containerd, waits (up to 60 s) until its CRI answers, imports the pause image.
///
/// # Errors
/// containerd or its tools missing, one that does not start, or Ctrl-C while waiting.
pub(super) fn start(stop: &StopFlag) -> Result<Private, BenchError> {
    let pid = std::process::id();
    let ip_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("insp-bench-cri-{pid}"));
    let bridge = format!("ibc{pid}");
    std::fs::create_dir_all(dir.join("net.d")).map_err(io("its directory"))?;
    let (toml, cni) = config(&dir.display().to_string(), &bridge);
    std::fs::write(dir.join("containerd.toml"), toml).map_err(io("its config"))?;
    std::fs::write(dir.join("net.d/10-insp-bench.conflist"), cni).map_err(io("its CNI config"))?;
    let child = super::super::daemon::spawn(
        Command::new("containerd")
            .arg("--config")
            .arg(dir.join("containerd.toml")),
        &dir.join("containerd.log"),
        "--private-containerd: containerd",
    );
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let mut me = Private {
        child,
        ip_forward,
        dir,
        bridge,
        cgroup_parent: format!("/insp-bench-cri-{pid}"),
    };
    let (socket, log) = (me.socket(), me.dir.join("containerd.log"));
    super::super::daemon::wait(
        &mut me.child,
        stop,
        &log,
        "--private-containerd: containerd",
        || Client::connect(&socket).is_ok(),
    )?;
    import_image(&me.dir, &me.socket())?;
    Ok(me)
}

impl Drop for Private {
    fn drop(&mut self) {
        super::super::daemon::stop(&mut self.child, Duration::from_secs(20));
        // Shims that survived it, found by their -address argument.
        let sock = self.socket().display().to_string();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&sock)
                && let Ok(p) = e.file_name().to_string_lossy().parse::<i32>()
            {
                // SAFETY: kill(2) on a shim of our containerd.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        super::super::daemon::remove_dir(&self.dir);
        if !self.ip_forward.is_empty() {
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
        }
        if let Ok(nl) = crate::lab::netlink::Nl::new() {
            let _ = nl.delete(&self.bridge);
        }
        // The cgroup parent, under each hierarchy (v2: one; v1: one per controller).
        let name = self.cgroup_parent.trim_start_matches('/');
        let mut dirs = vec![PathBuf::from("/sys/fs/cgroup").join(name)];
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            dirs.push(e.path().join(name));
        }
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}
