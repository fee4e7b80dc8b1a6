//! The agent's image run as kubelet would run `deploy/daemonset.yaml`'s pod, through real
//! containerd's CRI: host network and PID, the capabilities, security options and host
//! mounts read from the file (the subset a kubelet passes), next to two CNI pods that talk to
//! each other. Its `/metrics`, and a real Prometheus scraping it, agree with the pods'
//! interface counters over a window, and stopping the container (SIGTERM through CRI) leaves
//! no program, link or map. The same image tarball loads into a real dockerd and runs.
mod support;

use std::{collections::HashMap, path::Path, time::Duration};

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerSecurityContext, Mount, SecurityProfile,
};
use support::{bpf_objects, cri::CriLab, deploy_dir, eventually, held_objects, load_yaml, sh};

const PORT: u16 = 9590;

/// The image tarball `deploy/build-image.sh` makes (what `cargo xtask image` runs), removed
/// on drop.
struct Tarball(std::path::PathBuf);

impl Tarball {
    fn build() -> Self {
        let tar = std::env::temp_dir().join(support::unique("image") + ".tar");
        sh(&[
            deploy_dir().join("build-image.sh").to_str().unwrap(),
            env!("CARGO_BIN_EXE_inspector"),
            tar.to_str().unwrap(),
        ]);
        Self(tar)
    }
}

impl Drop for Tarball {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An image loaded into dockerd by the test, removed on drop (unless it was there before).
struct LoadedImage(Option<String>);

impl Drop for LoadedImage {
    fn drop(&mut self) {
        if let Some(i) = &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "-f", i])
                .output();
        }
    }
}

/// `docker load` takes the tarball as it is (no registry), and the image runs: its entry
/// point is the binary, which answers `--version` as the one built here does.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_image_tarball_loads_into_docker_and_runs() {
    let tar = Tarball::build();
    let _dockerd = support::docker::Dockerd::start();
    let ds = load_yaml(&deploy_dir().join("daemonset.yaml")).remove(0);
    let image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    let had = std::process::Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    let _loaded = LoadedImage((!had).then(|| image.clone()));
    let out = support::docker::docker(&["load", "-i", tar.0.to_str().unwrap()]);
    assert!(out.contains(&format!("Loaded image: {image}")), "{out}");
    assert_eq!(
        support::docker::docker(&[
            "image",
            "inspect",
            &image,
            "-f",
            "{{json .Config.Entrypoint}}"
        ]),
        "[\"/bin/inspector\"]"
    );
    let ran = support::docker::docker(&["run", "--rm", "--network", "none", &image, "--version"]);
    let here = sh(&[env!("CARGO_BIN_EXE_inspector"), "--version"]);
    assert_eq!(ran.trim(), here.trim());
}

fn get(path: &str) -> Option<(u16, String)> {
    support::http_get(PORT, path)
}

/// The `DaemonSet`'s container as the CRI request kubelet would send, with the containerd
/// socket's host path swapped for the lab's own.
/// Host paths the test made for `DirectoryOrCreate`/`FileOrCreate` volumes (as kubelet would),
/// removed again on drop.
#[derive(Default)]
struct Created(std::cell::RefCell<Vec<std::path::PathBuf>>);

impl Drop for Created {
    fn drop(&mut self) {
        for p in self.0.borrow().iter().rev() {
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
        }
    }
}

fn container_config(
    ds: &serde_json::Value,
    image: &str,
    socket: &Path,
    created: &Created,
) -> ContainerConfig {
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(a).replace("$(NODE_NAME)", "node-1"))
        .collect();
    let volumes: HashMap<String, (String, String)> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                s(&v["name"]),
                (s(&v["hostPath"]["path"]), s(&v["hostPath"]["type"])),
            )
        })
        .collect();
    let mounts = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let (mut host, kind) = volumes[&s(&m["name"])].clone();
            if host == "/run/containerd/containerd.sock" {
                host = socket.display().to_string();
            }
            // What kubelet does for these hostPath types before starting the pod.
            if !Path::new(&host).exists() {
                // Its missing ancestors too, outermost first, to remove them innermost first.
                let mut missing: Vec<std::path::PathBuf> = Path::new(&host)
                    .ancestors()
                    .take_while(|a| !a.exists())
                    .map(Path::to_path_buf)
                    .collect();
                missing.reverse();
                match kind.as_str() {
                    "DirectoryOrCreate" => std::fs::create_dir_all(&host).unwrap(),
                    "FileOrCreate" => {
                        std::fs::create_dir_all(Path::new(&host).parent().unwrap()).unwrap();
                        std::fs::write(&host, b"").unwrap();
                    }
                    _ => {}
                }
                created.0.borrow_mut().extend(missing);
            }
            // Symlinks resolved (/var/run -> /run here): containerd looks up a
            // `HostToContainer` path's mount by the path as given.
            let host = std::fs::canonicalize(&host).map_or(host, |p| p.display().to_string());
            Mount {
                container_path: s(&m["mountPath"]),
                host_path: host,
                readonly: m["readOnly"] == true,
                propagation: i32::from(m["mountPropagation"] == "HostToContainer"),
                ..Mount::default()
            }
        })
        .collect();
    let sc = &c["securityContext"];
    let caps = |k: &str| -> Vec<String> {
        sc["capabilities"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(s)
            .collect()
    };
    let unconfined = |k: &str| {
        (sc[k]["type"] == "Unconfined").then(|| SecurityProfile {
            profile_type: 1,
            ..SecurityProfile::default()
        })
    };
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: s(&c["name"]),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..ImageSpec::default()
        }),
        args,
        envs: vec![KeyValue {
            key: "NODE_NAME".into(),
            value: "node-1".into(),
        }],
        mounts,
        log_path: "agent.log".into(),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: caps("add"),
                    drop_capabilities: caps("drop"),
                    ..Capability::default()
                }),
                privileged: sc["privileged"] == true,
                readonly_rootfs: sc["readOnlyRootFilesystem"] == true,
                run_as_user: sc["runAsUser"].as_i64().map(|value| Int64Value { value }),
                no_new_privs: sc["allowPrivilegeEscalation"] == false,
                seccomp: unconfined("seccompProfile"),
                apparmor: unconfined("appArmorProfile"),
                ..LinuxContainerSecurityContext::default()
            }),
            ..LinuxContainerConfig::default()
        }),
        ..ContainerConfig::default()
    }
}

/// Sum of `metric` over the series of one hop and direction, from the exposition text.
fn sample(text: &str, metric: &str, hop: &str, dir: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with(&format!("{metric}{{"))
                && l.contains(&format!("hop=\"{hop}\""))
                && l.contains(&format!("direction=\"{dir}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// (tx packets, tx bytes, rx packets, rx bytes) of eth0 in the namespace at `netns`.
fn eth0(netns: &str) -> [u64; 4] {
    let out = sh(&[
        "nsenter",
        &format!("--net={netns}"),
        "ip",
        "-s",
        "-j",
        "link",
        "show",
        "eth0",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let st = &v[0]["stats64"];
    let n = |d: &str, k: &str| st[d][k].as_u64().unwrap();
    [
        n("tx", "packets"),
        n("tx", "bytes"),
        n("rx", "packets"),
        n("rx", "bytes"),
    ]
}

/// `HostToContainer` propagation needs the host path on a shared mount (systemd makes `/`
/// shared on real nodes; this machine's `/` is private). Bind-mounts the path onto itself,
/// shared, for the test; unmounted on drop.
struct SharedMount(Option<String>);

impl SharedMount {
    fn ensure(path: &str) -> Self {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        // The mount a path lives on is the longest mount point that prefixes it.
        let on = info
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let mp = *f.get(4)?;
                (path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/'))))
                    .then(|| (mp.len(), l.contains(" shared:") || l.contains(" master:")))
            })
            .max();
        if on.is_some_and(|(_, shared)| shared) {
            return Self(None);
        }
        sh(&["mount", "--bind", path, path]);
        sh(&["mount", "--make-shared", path]);
        Self(Some(path.to_owned()))
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::process::Command::new("umount").arg(&p).status();
        }
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_daemonsets_pod_through_cri_counts_what_the_kernel_counted() {
    let tar = Tarball::build();
    let mut lab = CriLab::start("agentpod");
    lab.import(&tar.0);
    drop(tar);
    let ds = load_yaml(&deploy_dir().join("daemonset.yaml")).remove(0);
    let image = format!(
        "docker.io/library/{}",
        ds["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
    );
    let (a, b) = (
        lab.pod("default", "talker", "uid-a"),
        lab.pod("default", "listener", "uid-b"),
    );
    let ca = lab.container(&a, "main", &["/bin/sleep", "300"]);
    lab.container(&b, "main", &["/bin/sleep", "300"]);
    let ((_, a_ns), (b_ip, b_ns)) = (lab.status(&a), lab.status(&b));
    let agent_pod = lab.pod_in("inspector", "inspector-agent-x", "uid-agent", true);
    let created = Created::default();
    let cc = container_config(&ds, &image, &lab.socket, &created);
    let _shared: Vec<SharedMount> = cc
        .mounts
        .iter()
        .filter(|m| m.propagation == 1)
        .map(|m| SharedMount::ensure(&m.host_path))
        .collect();
    let agent = lab.start_container(&agent_pod, cc);
    let ready = eventually(Duration::from_secs(90), || {
        get("/readyz").is_some_and(|r| r.0 == 200)
    });
    assert!(
        ready,
        "the agent's pod never became ready: {:?}",
        get("/readyz")
    );

    // A window: quiet, read both sides, talk, quiet, read both sides again. Per pod eth0:
    // (tx packets, tx bytes, rx packets, rx bytes) from /metrics and from the kernel.
    // One packet each way first, so both pods have flows to name their namespaces by.
    assert_eq!(
        lab.exec(&ca, &["ping", "-c", "1", "-W", "2", &b_ip], 10).0,
        0
    );
    assert!(eventually(Duration::from_secs(10), || {
        get("/api/flows").is_some_and(|r| r.1.contains(&b_ip))
    }));
    // The agent names each namespace its way; its JSON API says which name an inode has.
    let names = |ns: &str| -> Option<String> {
        use std::os::unix::fs::MetadataExt as _;
        let ino = std::fs::metadata(ns).ok()?.ino();
        let (_, body) = get("/api/flows")?;
        support::json_lines(body.as_bytes(), "flow")
            .iter()
            .find(|f| f["netns"].as_u64() == Some(ino))
            .and_then(|f| f["netns_name"].as_str().map(str::to_owned))
    };
    let (a_name, b_name) = (names(&a_ns), names(&b_ns));
    assert!(
        a_name.is_some() && b_name.is_some(),
        "the agent saw no flow of a pod"
    );
    let hop = |ns: &str| {
        let n = if ns == a_ns { &a_name } else { &b_name };
        format!("{}/eth0", n.as_deref().unwrap_or("?"))
    };
    let read = || -> Vec<[u64; 4]> {
        let text = get("/metrics").map(|r| r.1).unwrap_or_default();
        let mut v = Vec::new();
        for ns in [&a_ns, &b_ns] {
            let h = hop(ns);
            v.push([
                sample(&text, "inspector_packets_total", &h, "egress"),
                sample(&text, "inspector_bytes_total", &h, "egress"),
                sample(&text, "inspector_packets_total", &h, "ingress"),
                sample(&text, "inspector_bytes_total", &h, "ingress"),
            ]);
            v.push(eth0(ns));
        }
        v
    };
    // Quiet: two reads equal with at least two whole agent rounds between them (a loaded
    // machine can stall the agent's thread past any fixed pause).
    let rounds = || {
        get("/metrics")
            .map(|r| r.1)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("inspector_rounds_total")?
                    .rsplit(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    let stable = || {
        // The rounds are read after the earlier read and before the later one, so two of
        // them completed wholly in between.
        let mut last = read();
        let mut r0 = rounds();
        for _ in 0..90 {
            std::thread::sleep(Duration::from_millis(1500));
            let r1 = rounds();
            let now = read();
            if r1 >= r0 + 2 && now == last {
                return now;
            }
            last = now;
            r0 = rounds();
        }
        panic!("never quiet: {last:?}");
    };
    // What a workload label stands for, as CRI has it: pod default/talker, container main.
    let info = get("/metrics").map(|r| r.1).unwrap_or_default();
    let talker = info
        .lines()
        .find(|l| {
            l.starts_with("inspector_workload_info{") && l.contains("workload=\"default/talker\"")
        })
        .unwrap_or_else(|| panic!("no workload_info for default/talker:\n{info}"));
    for want in [
        "kind=\"pod\"",
        "namespace=\"default\"",
        "pod=\"talker\"",
        "container=\"main\"",
        "runtime=\"containerd\"",
    ] {
        assert!(talker.contains(want), "{want} missing: {talker}");
    }
    // A real Prometheus scrapes the pod's port; at each end of the window it is waited for
    // until it holds what /metrics says.
    let prom = support::prom::Prometheus::start(PORT);
    let promql = |m: &[[u64; 4]]| -> Vec<[u64; 4]> {
        let mut last = Vec::new();
        let caught_up = eventually(Duration::from_secs(30), || {
            last = [&a_ns, &b_ns]
                .iter()
                .map(|ns| {
                    let h = hop(ns);
                    let q = |metric: &str, dir: &str| {
                        prom.query(&format!("sum({metric}{{hop=\"{h}\",direction=\"{dir}\"}})"))
                            .values()
                            .next()
                            .copied()
                            .unwrap_or(0.0) as u64
                    };
                    [
                        q("inspector_packets_total", "egress"),
                        q("inspector_bytes_total", "egress"),
                        q("inspector_packets_total", "ingress"),
                        q("inspector_bytes_total", "ingress"),
                    ]
                })
                .collect();
            last == [m[0], m[2]]
        });
        assert!(caught_up, "Prometheus {last:?} vs /metrics {m:?}");
        last
    };
    let m0 = stable();
    let p0 = promql(&m0);
    let (code, _) = lab.exec(&ca, &["ping", "-c", "5", "-W", "2", &b_ip], 20);
    assert_eq!(code, 0, "the pods cannot talk");
    let m1 = stable();
    let p1 = promql(&m1);
    for k in 0..2 {
        let got: [u64; 4] = std::array::from_fn(|j| p1[k][j] - p0[k][j]);
        let want: [u64; 4] = std::array::from_fn(|j| m1[2 * k + 1][j] - m0[2 * k + 1][j]);
        assert_eq!(
            got, want,
            "PromQL over the window vs the kernel's eth0 counters"
        );
        assert!(
            want[0] >= 5 && want[2] >= 5,
            "the window is vacuous: {want:?}"
        );
    }
    for (k, ns) in [&a_ns, &b_ns].iter().enumerate() {
        let d = |i: usize| -> [u64; 4] { std::array::from_fn(|j| m1[i][j] - m0[i][j]) };
        let (got, want) = (d(2 * k), d(2 * k + 1));
        assert_eq!(
            got,
            want,
            "{}: /metrics (tx pkts, tx bytes, rx pkts, rx bytes) vs the kernel; hops: {:?}",
            hop(ns),
            get("/metrics")
                .map(|r| r.1)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("inspector_packets_total"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        );
        assert!(want[0] >= 5, "{}: vacuous", hop(ns));
    }

    // SIGTERM through CRI: the agent detaches everything it held.
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.starts_with("/bin/inspector agent") && cmd.contains("0.0.0.0:9590"))
                .then(|| e.file_name().to_string_lossy().parse::<i32>().ok())
                .flatten()
        })
        .expect("the agent's process");
    let held = held_objects(pid);
    assert!(held.progs.len() >= 3, "{held:?}");
    lab.stop_container(&agent, 30);
    assert!(
        eventually(Duration::from_secs(20), || {
            let o = bpf_objects();
            held.progs.iter().all(|id| !o.progs.contains_key(id))
                && held.links.iter().all(|id| !o.links.contains_key(id))
                && held.maps.iter().all(|id| !o.maps.contains_key(id))
        }),
        "programs, links or maps of the stopped agent remain"
    );
}
