//! Unit tests of lab specs and plans: the embedded specs plan, and every bad spec is refused
//! with its reason in one line.
use std::net::Ipv4Addr;

use super::{
    plan::{Plan, Publish},
    spec::{
        BENCH_KUBE_SPEC, BENCH_MODES_SPEC, BENCH_OVERHEAD_SPEC, DEFAULT_SPEC, KUBE_SPEC, KubeProxy,
        LabSpec,
    },
};

#[test]
fn every_embedded_spec_plans() {
    for s in [
        DEFAULT_SPEC,
        KUBE_SPEC,
        BENCH_MODES_SPEC,
        BENCH_KUBE_SPEC,
        BENCH_OVERHEAD_SPEC,
    ] {
        LabSpec::embedded(s)
            .plan()
            .unwrap_or_else(|e| panic!("{e}:\n{s}"));
    }
}

fn plan(text: &str) -> Result<Plan, String> {
    LabSpec::from_toml(text)
        .and_then(|s| s.plan())
        .map_err(|e| e.to_string())
}

#[test]
fn kube_spec_plans_services_with_their_pods() {
    let p = plan(KUBE_SPEC).expect("kube spec");
    assert_eq!(p.kube_proxy, Some(KubeProxy::Iptables));
    assert!(!p.docker_rules);
    assert_eq!(p.services.len(), 3);
    let web = &p.services[0];
    assert_eq!(web.cluster_ip, Ipv4Addr::new(198, 18, 32, 10));
    assert_eq!(
        web.endpoints,
        [2, 3, 4].map(|i| Ipv4Addr::new(198, 18, 30, i))
    );
    assert_eq!(web.ports[0].node_port, Some(30080));
    assert_eq!(p.services[1].affinity, Some(10_800));
    assert!(p.services[2].endpoints.is_empty());
    let nft =
        plan(&KUBE_SPEC.replace("kube_proxy = \"iptables\"", "kube_proxy = \"nftables\"")).unwrap();
    assert_eq!(nft.kube_proxy, Some(KubeProxy::Nftables));
}

#[test]
fn bad_services_are_refused_with_their_reason() {
    for (from, to, want) in [
        (
            "kube_proxy = \"iptables\"",
            "kube_proxy = \"userspace\"",
            "not a mode this lab can build (iptables, nftables, ipvs)",
        ),
        (
            "kube_proxy = \"iptables\"\n",
            "",
            "services need kube_proxy",
        ),
        (
            "\"web-0\", \"web-1\", \"web-2\"]\n[[service.port]]\nname",
            "\"nope\"]\n[[service.port]]\nname",
            "names no workload",
        ),
        (
            "node_port = 30080",
            "node_port = 8080",
            "outside 30000-32767",
        ),
        (
            "cluster_ip = \"198.18.32.10\"",
            "cluster_ip = \"198.18.33.10\"",
            "outside service_cidr",
        ),
        (
            "cluster_ip = \"198.18.32.11\"",
            "cluster_ip = \"198.18.32.10\"",
            "is taken",
        ),
        (
            "session_affinity = \"ClientIP\"",
            "session_affinity = \"Sticky\"",
            "None or ClientIP",
        ),
        (
            "service_cidr = \"198.18.32.0/24\"",
            "service_cidr = \"198.18.30.0/23\"",
            "overlaps the bridge",
        ),
        ("name = \"sticky\"", "name = \"web\"", "duplicate service"),
        (
            "docker_rules = false",
            "docker_rules = false\nextra_services = 30001",
            "more than 30000",
        ),
    ] {
        let text = KUBE_SPEC.replacen(from, to, 1);
        assert_ne!(text, KUBE_SPEC, "{from:?} not in the spec");
        let e = plan(&text).expect_err(want);
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn extra_services_come_first_in_rule_order() {
    let text = KUBE_SPEC
        .replace(
            "docker_rules = false",
            "docker_rules = false\nextra_services = 1000",
        )
        .replace(
            "service_cidr = \"198.18.32.0/24\"",
            "service_cidr = \"198.18.128.0/17\"",
        )
        .replace("198.18.32.1", "198.18.128.1");
    let p = plan(&text).unwrap();
    assert_eq!(p.services.len(), 1003);
    assert_eq!(p.services[0].name, "svc-0");
    assert_eq!(p.services[1000].name, "web");
    assert_eq!(p.services[0].cluster_ip, Ipv4Addr::new(198, 18, 129, 0));
}

#[test]
fn default_spec_plans_all_four_modes() {
    let p = plan(DEFAULT_SPEC).expect("default spec");
    let modes: Vec<String> = p.workloads.iter().map(|w| w.mode.as_string()).collect();
    assert_eq!(modes, ["bridge", "bridge", "container:web", "host", "none"]);
    let web = &p.workloads[0];
    assert_eq!(web.addr, Some(Ipv4Addr::new(198, 18, 20, 2)));
    assert_eq!(
        web.publish,
        [Publish {
            proto: "tcp".into(),
            host_port: 8080,
            port: 80
        }]
    );
    assert_eq!(
        p.workloads[2].netns, "insp-lab-web",
        "container mode joins its target"
    );
    assert_eq!(
        p.workloads[3].netns, "insp-lab-node",
        "host mode is the node"
    );
    assert_eq!(p.workloads[4].netns, "insp-lab-batch");
    assert_eq!(p.gateway, Ipv4Addr::new(198, 18, 20, 1));
    assert!(web.host_veth.as_ref().unwrap().len() <= 15);
}

#[test]
fn every_bad_spec_names_its_problem() {
    let base = |extra: &str| format!("name = \"t\"\nsubnet = \"198.18.30.0/24\"\n{extra}");
    for (spec, want) in [
        (
            base("").replace("198.18.30.0/24", "203.0.113.0/24"),
            "outside 198.18.0.0/15",
        ),
        (
            base("").replace("198.18.30.0/24", "198.18.30.0/33"),
            "prefix length",
        ),
        (
            base("").replace("198.18.30.0/24", "198.18.30.7/24"),
            "host bits",
        ),
        (base("").replace("198.18.30.0/24", "banana"), "not a CIDR"),
        (
            base(
                "[[workload]]\nname = \"a\"\nmode = \"bridge\"\n[[workload]]\nname = \"a\"\nmode = \"none\"\n",
            ),
            "duplicate workload name 'a'",
        ),
        (
            base("[[workload]]\nname = \"a\"\nmode = \"macvlan\"\n"),
            "unknown network mode 'macvlan'",
        ),
        (
            base("[[workload]]\nname = \"a\"\nmode = \"container:b\"\n"),
            "names no other workload",
        ),
        (
            base("[[workload]]\nname = \"a\"\nmode = \"host\"\npublish = [\"80:80\"]\n"),
            "only bridge mode",
        ),
        (
            base("[[workload]]\nname = \"a\"\nmode = \"bridge\"\npublish = [\"x:80\"]\n"),
            "is not a port",
        ),
        (
            base("[[workload]]\nname = \"a\"\nmode = \"bridge\"\naddr = \"198.18.31.2\"\n"),
            "outside the subnet",
        ),
        (
            base(
                "[[workload]]\nname = \"a\"\nmode = \"container:b\"\n[[workload]]\nname = \"b\"\nmode = \"container:a\"\n",
            ),
            "cycle",
        ),
        (
            base("[[workload]]\nname = \"A\"\nmode = \"bridge\"\n"),
            "must be 1-12 characters",
        ),
        (base("colour = \"red\"\n"), "unknown field"),
        (
            base("[external]\nname = \"e\"\nsubnet = \"198.18.30.0/25\"\n"),
            "overlaps",
        ),
    ] {
        let e = plan(&spec).expect_err(&spec);
        assert!(e.contains(want), "{spec:?}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}
