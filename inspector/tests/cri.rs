//! Real pods: a private containerd with CRI and the CNI bridge plugin; pod sandboxes created
//! through CRI with Kubernetes metadata, a server and a client container in them. Every flow
//! end between them is the right pod (namespace/name, sandbox id, runtime), and topology
//! lists the pods with the namespace and address CRI reports.
mod support;

use std::os::unix::fs::MetadataExt as _;

use serde_json::Value;
use support::{Inspector, cri::CriLab, json_lines, run_inspector, unique};

/// A pod as CRI names it.
fn pod_end(f: &Value, end: &str, name: &str, id: &str) {
    support::check_end(f, end, [name, id, "pod", "containerd", "pod"]);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn cri_pods_are_attributed_and_listed() {
    let tag = unique("p");
    let mut lab = CriLab::start(&tag);
    let sock = lab.socket.display().to_string();
    let web = lab.pod("demo", "web-0", &format!("uid-web-{tag}"));
    let client = lab.pod("demo", "client-0", &format!("uid-client-{tag}"));
    lab.container(
        &web,
        "httpd",
        &["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let shell = lab.container(&client, "shell", &["/bin/sleep", "3600"]);
    let (web_ip, web_ns) = lab.status(&web);
    let (cli_ip, cli_ns) = lab.status(&client);
    assert!(web_ip.starts_with("198.19.8.") && cli_ip.starts_with("198.19.8."));

    let out = run_inspector(&["topology", "-o", "json", "--cri-socket", &sock], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ws = json_lines(&out.stdout, "workload");
    for (pod, ip, ns, container) in [
        (&web, &web_ip, &web_ns, "httpd"),
        (&client, &cli_ip, &cli_ns, "shell"),
    ] {
        let name = format!("{}/{}", pod.namespace, pod.name);
        let w = ws
            .iter()
            .find(|w| w["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not in topology: {ws:#?}"));
        assert_eq!(w["id"], pod.id.as_str());
        assert_eq!(
            (w["kind"].as_str(), w["runtime"].as_str()),
            (Some("pod"), Some("containerd"))
        );
        assert_eq!(w["network_mode"], "pod");
        let inode = std::fs::metadata(ns).expect("pod netns").ino();
        assert_eq!(w["netns"].as_u64(), Some(inode), "{w}");
        assert!(
            w["ips"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == ip.as_str()),
            "{w}"
        );
        assert!(
            w["containers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == container),
            "{w}"
        );
        assert_eq!(w["labels"]["io.kubernetes.pod.uid"], pod.uid.as_str());
        let eth0 = w["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "eth0")
            .expect("eth0");
        assert_eq!(eth0["peer"]["bridge"], lab.bridge.as_str(), "{w}");
    }

    let insp = Inspector::start(&["-o", "json", "flows", "-q", "--cri-socket", &sock]);
    let (code, body) = lab.exec(
        &shell,
        &["wget", "-q", "-O-", &format!("http://{web_ip}/")],
        10,
    );
    assert_eq!(code, 0, "wget from client-0 to web-0");
    assert!(body.contains("hello from a CRI pod"), "{body}");
    let (code, _) = lab.exec(&shell, &["ping", "-c", "2", "-W", "1", &web_ip], 10);
    assert_eq!(code, 0, "ping from client-0 to web-0");
    let out = insp.interrupt_ok();

    let flows = json_lines(&out.stdout, "flow");
    let (mut to_web, mut from_web) = (0, 0);
    for f in flows
        .iter()
        .filter(|f| f["proto"] == "tcp" || f["proto"] == "icmp")
    {
        let (src, dst) = (f["src"].as_str().unwrap(), f["dst"].as_str().unwrap());
        if src == cli_ip && dst == web_ip {
            pod_end(f, "src_endpoint", "demo/client-0", &client.id);
            pod_end(f, "dst_endpoint", "demo/web-0", &web.id);
            to_web += 1;
        } else if src == web_ip && dst == cli_ip {
            pod_end(f, "src_endpoint", "demo/web-0", &web.id);
            pod_end(f, "dst_endpoint", "demo/client-0", &client.id);
            from_web += 1;
        }
    }
    // TCP and ICMP, each seen at 4 hooks (two eth0, two bridge ports) in each direction.
    assert!(
        to_web >= 8 && from_web >= 8,
        "flows between the pods: {to_web} {from_web}: {flows:#?}"
    );

    // A pod made and removed while `inspector events` runs: its namespace appears and
    // disappears, named with the pod CRI reports.
    let ev = Inspector::start(&["-o", "json", "events", "--cri-socket", &sock]);
    let tmp = lab.pod("demo", "tmp-0", &format!("uid-tmp-{tag}"));
    let (_, tmp_ns) = lab.status(&tmp);
    let inode = std::fs::metadata(&tmp_ns).expect("pod netns").ino();
    let seen = |evs: &[Value], action: &str| {
        evs.iter().any(|e| {
            e["type"] == "lifecycle"
                && e["object"] == "netns"
                && e["action"] == action
                && e["netns"].as_u64() == Some(inode)
                && e["workload"]["name"] == "demo/tmp-0"
        })
    };
    // Removed once its coming has been reported, named; its going is awaited too.
    let limit = std::time::Duration::from_secs(20);
    ev.wait_json(limit, |e| seen(e, "appeared"));
    lab.remove(&tmp);
    ev.wait_json(limit, |e| seen(e, "disappeared"));
    let out = ev.interrupt();
    let evs = json_lines(&out.stdout, "lifecycle");
    for action in ["appeared", "disappeared"] {
        assert!(
            evs.iter().any(|e| e["object"] == "netns"
                && e["action"] == action
                && e["netns"].as_u64() == Some(inode)
                && e["workload"]["name"] == "demo/tmp-0"
                && e["workload"]["id"] == tmp.id.as_str()
                && e["workload"]["kind"] == "pod"),
            "no netns {action} event for demo/tmp-0: {evs:#?}"
        );
    }
}
