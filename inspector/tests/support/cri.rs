//! A private containerd with its CRI plugin and the CNI bridge plugin (the verified recipe in
//! the design folder): own root, state, socket, runc root and CNI state under a scratch
//! directory, pods on a bridge of their own in 198.19.8.0/24. Pods are created through CRI
//! with metadata, as kubelet would; everything (pods, daemon, bridge, cgroups, files) is
//! removed on drop.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::Channel;

use super::{eventually, sh};

pub const IMAGE: &str = "docker.io/inspector-test/pause:1";
const SUBNET: &str = "198.19.8.0/24";
const GATEWAY: &str = "198.19.8.1";

pub struct CriLab {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub bridge: String,
    cgroup_parent: String,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    pods: Vec<String>,
}

/// One pod made by the lab: its sandbox id (CRI's own answer) and its config.
pub struct Pod {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    config: PodSandboxConfig,
}

fn sha256(path: &Path) -> String {
    sh(&["sha256sum", path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

impl CriLab {
    pub fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("insp-cri-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("net.d")).expect("dir");
        let socket = dir.join("containerd.sock");
        let bridge = format!("cri{tag}");
        assert!(bridge.len() <= 15, "bridge name too long: {bridge}");
        let d = dir.display();
        std::fs::write(
            dir.join("containerd.toml"),
            format!(
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
  level = "info"
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
            ),
        )
        .expect("config");
        std::fs::write(
            dir.join("net.d/10-insp.conflist"),
            format!(
                r#"{{"cniVersion": "1.0.0", "name": "insp-{tag}", "plugins": [
  {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {{"type": "host-local", "dataDir": "{d}/ipam",
              "ranges": [[{{"subnet": "{SUBNET}", "gateway": "{GATEWAY}"}}]],
              "routes": [{{"dst": "0.0.0.0/0"}}]}}}}]}}"#
            ),
        )
        .expect("cni config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("containerd.toml"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("containerd (installed by `cargo xtask setup`)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let deadline = Instant::now() + Duration::from_mins(1);
        let client = loop {
            let c = rt.block_on(async {
                let ch = inspector::identity::cri::channel(&socket).await.ok()?;
                let mut c = RuntimeServiceClient::new(ch);
                c.version(VersionRequest {
                    version: "v1".into(),
                })
                .await
                .ok()?;
                Some(c)
            });
            if let Some(c) = c {
                break c;
            }
            assert!(
                Instant::now() < deadline,
                "containerd's CRI did not answer within 60 s: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let me = Self {
            cgroup_parent: format!("/insp-cri-{tag}"),
            dir,
            socket,
            bridge,
            child: Some(child),
            rt,
            client,
            pods: Vec::new(),
        };
        me.import_image();
        me
    }

    /// An OCI image layout (uncompressed layer) of busybox-static, imported with `ctr` into
    /// CRI's namespace; it serves as pause image and app image.
    fn import_image(&self) {
        let root = self.dir.join("rootfs");
        std::fs::create_dir_all(root.join("bin")).expect("rootfs");
        std::fs::create_dir_all(root.join("www")).expect("www");
        std::fs::write(root.join("www/index.html"), "hello from a CRI pod\n").expect("page");
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
        for a in sh(&["/bin/busybox", "--list"])
            .lines()
            .filter(|a| *a != "busybox")
        {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
        }
        let oci = self.dir.join("oci");
        let blobs = oci.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("oci");
        let layer = self.dir.join("layer.tar");
        sh(&[
            "tar",
            "-C",
            root.to_str().unwrap(),
            "--owner=0",
            "--group=0",
            "-cf",
            layer.to_str().unwrap(),
            ".",
        ]);
        let put = |path: &Path| -> (String, u64) {
            let digest = sha256(path);
            let size = std::fs::metadata(path).unwrap().len();
            std::fs::copy(path, blobs.join(&digest)).unwrap();
            (digest, size)
        };
        let (layer_d, layer_n) = put(&layer);
        let write = |name: &str, v: &serde_json::Value| -> (String, u64) {
            let p = self.dir.join(name);
            std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
            put(&p)
        };
        let (cfg_d, cfg_n) = write(
            "config.json",
            &serde_json::json!({"architecture": "amd64", "os": "linux",
                "config": {"Cmd": ["/bin/sleep", "3600"], "Env": ["PATH=/bin"]},
                "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_d}")]}}),
        );
        let (man_d, man_n) = write(
            "manifest.json",
            &serde_json::json!({"schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": format!("sha256:{cfg_d}"), "size": cfg_n},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": format!("sha256:{layer_d}"), "size": layer_n}]}),
        );
        std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::write(
            oci.join("index.json"),
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{man_d}"), "size": man_n,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": IMAGE,
                                "org.opencontainers.image.ref.name": "1"}}]}))
            .unwrap(),
        )
        .unwrap();
        let tar = self.dir.join("image.tar");
        sh(&[
            "tar",
            "-C",
            oci.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ]);
        self.import(&tar);
    }

    /// Runs a pod sandbox (network namespace of its own, on the lab's bridge) with metadata
    /// and labels as kubelet would set them.
    pub fn pod(&mut self, namespace: &str, name: &str, uid: &str) -> Pod {
        self.pod_in(namespace, name, uid, false)
    }

    /// The same; with `host`, in the node's network and PID namespaces (`hostNetwork`,
    /// `hostPID`), as kubelet runs a `DaemonSet` pod that asks for them.
    pub fn pod_in(&mut self, namespace: &str, name: &str, uid: &str, host: bool) -> Pod {
        let labels: HashMap<String, String> = [
            ("app", name),
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", namespace),
            ("io.kubernetes.pod.uid", uid),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: namespace.into(),
                uid: uid.into(),
                attempt: 0,
            }),
            // A host-network pod shares the node's UTS namespace: no hostname of its own.
            hostname: if host { String::new() } else { name.into() },
            log_directory: self.dir.join("logs").join(name).display().to_string(),
            labels,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: if host { 2 } else { 0 }, // NODE or POD
                        pid: if host { 2 } else { 1 },     // NODE or CONTAINER
                        ipc: 0,                            // POD
                        ..NamespaceOption::default()
                    }),
                    ..LinuxSandboxSecurityContext::default()
                }),
                ..LinuxPodSandboxConfig::default()
            }),
            ..PodSandboxConfig::default()
        };
        let mut c = self.client.clone();
        let cfg = config.clone();
        let id = self
            .rt
            .block_on(async move {
                c.run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(cfg),
                    runtime_handler: String::new(),
                })
                .await
            })
            .unwrap_or_else(|e| panic!("RunPodSandbox {namespace}/{name}: {e}"))
            .into_inner()
            .pod_sandbox_id;
        self.pods.push(id.clone());
        Pod {
            id,
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            config,
        }
    }

    /// Creates and starts a container in `pod`; returns its id.
    pub fn container(&mut self, pod: &Pod, name: &str, command: &[&str]) -> String {
        let cc = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..ImageSpec::default()
            }),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            log_path: format!("{name}.log"),
            ..ContainerConfig::default()
        };
        self.start_container(pod, cc)
    }

    /// Creates and starts a container of any config in `pod`; returns its id.
    pub fn start_container(&mut self, pod: &Pod, cc: ContainerConfig) -> String {
        let name = cc
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let mut c = self.client.clone();
        let (pod_id, sandbox) = (pod.id.clone(), pod.config.clone());
        self.rt
            .block_on(async move {
                let id = c
                    .create_container(CreateContainerRequest {
                        pod_sandbox_id: pod_id,
                        config: Some(cc),
                        sandbox_config: Some(sandbox),
                    })
                    .await?
                    .into_inner()
                    .container_id;
                c.start_container(StartContainerRequest {
                    container_id: id.clone(),
                })
                .await?;
                Ok::<_, tonic::Status>(id)
            })
            .unwrap_or_else(|e| panic!("container {name}: {e}"))
    }

    /// Stops a container (SIGTERM, then SIGKILL after `grace` seconds), as kubelet does.
    pub fn stop_container(&self, id: &str, grace: i64) {
        let mut c = self.client.clone();
        let id = id.to_owned();
        self.rt
            .block_on(async move {
                c.stop_container(k8s_cri::v1::StopContainerRequest {
                    container_id: id,
                    timeout: grace,
                })
                .await
            })
            .expect("StopContainer");
    }

    /// Imports an image tarball (OCI layout) into CRI's image store.
    pub fn import(&self, tar: &Path) {
        sh(&[
            "ctr",
            "-a",
            self.socket.to_str().unwrap(),
            "-n",
            "k8s.io",
            "images",
            "import",
            tar.to_str().unwrap(),
        ]);
    }

    /// `ExecSync` (bounded by `timeout` seconds); returns (exit code, stdout).
    pub fn exec(&self, container: &str, cmd: &[&str], timeout: i64) -> (i32, String) {
        let mut c = self.client.clone();
        let req = ExecSyncRequest {
            container_id: container.into(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout,
        };
        let r = self
            .rt
            .block_on(async move { c.exec_sync(req).await })
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"))
            .into_inner();
        (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned())
    }

    /// The verbose status of a pod: (pod IP, netns path from the info JSON).
    pub fn status(&self, pod: &Pod) -> (String, String) {
        let mut c = self.client.clone();
        let id = pod.id.clone();
        let r = self
            .rt
            .block_on(async move {
                c.pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: true,
                })
                .await
            })
            .expect("PodSandboxStatus")
            .into_inner();
        let ip = r
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default();
        let info: serde_json::Value =
            serde_json::from_str(r.info.get("info").expect("verbose info")).expect("info JSON");
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
            .expect("network namespace path")
            .to_owned();
        (ip, netns)
    }

    /// (namespace/name, IP) of every pod sandbox the runtime lists (made here or not).
    pub fn listed(&self) -> Vec<(String, String)> {
        let mut c = self.client.clone();
        let items = self
            .rt
            .block_on(async move {
                c.list_pod_sandbox(ListPodSandboxRequest { filter: None })
                    .await
            })
            .expect("ListPodSandbox")
            .into_inner()
            .items;
        items
            .into_iter()
            .map(|p| {
                let m = p.metadata.unwrap_or_default();
                let mut c = self.client.clone();
                let id = p.id.clone();
                let ip = self
                    .rt
                    .block_on(async move {
                        c.pod_sandbox_status(PodSandboxStatusRequest {
                            pod_sandbox_id: id,
                            verbose: false,
                        })
                        .await
                    })
                    .ok()
                    .and_then(|r| r.into_inner().status)
                    .and_then(|s| s.network)
                    .map(|n| n.ip)
                    .unwrap_or_default();
                (format!("{}/{}", m.namespace, m.name), ip)
            })
            .collect()
    }

    /// Stops and removes one pod now (its namespace and veth go with it).
    pub fn remove(&mut self, pod: &Pod) {
        self.pods.retain(|p| *p != pod.id);
        self.stop_remove(pod.id.clone());
    }

    fn stop_remove(&self, id: String) {
        let mut c = self.client.clone();
        let _ = self.rt.block_on(async move {
            c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
            c.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
        });
    }

    fn remove_pods(&mut self) {
        for id in std::mem::take(&mut self.pods) {
            self.stop_remove(id);
        }
    }
}

impl Drop for CriLab {
    fn drop(&mut self) {
        self.remove_pods();
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let gone = eventually(Duration::from_secs(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !gone {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        // Shims of this containerd (if any survived) are found by their -address argument.
        let sock = self.socket.display().to_string();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.filter_map(Result::ok) {
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                if cmd.contains("containerd-shim")
                    && cmd.contains(&sock)
                    && let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>()
                {
                    // SAFETY: kill(2) on a shim this lab started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        for ctl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            let p = ctl.path().join(self.cgroup_parent.trim_start_matches('/'));
            let _ = std::fs::remove_dir(&p);
        }
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/unified{}", self.cgroup_parent));
        // Leftover mounts under the lab (snapshots, shm) would make removal fail.
        if let Ok(m) = std::fs::read_to_string("/proc/self/mounts") {
            let dir = self.dir.display().to_string();
            let mut ps: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|p| p.starts_with(&dir))
                .collect();
            ps.sort_unstable_by_key(|p| std::cmp::Reverse(p.len()));
            for p in ps {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
