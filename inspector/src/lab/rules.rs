//! The iptables rules Docker (moby v28, iptables backend) writes for one bridge network,
//! as moby's bridge driver (`libnetwork/drivers/bridge`) writes them: the raw-table guard against direct
//! routing to container addresses, the filter chains DOCKER-USER, DOCKER-FORWARD,
//! DOCKER-CT, DOCKER-INTERNAL, DOCKER-BRIDGE and DOCKER (with a per-port ACCEPT for each
//! published port), and in nat the DOCKER chain with one DNAT per published port plus the
//! MASQUERADE of the bridge subnet. Fed to `iptables-restore` in the lab's node namespace,
//! with kube-proxy's rules (`services::rules`) for a Kubernetes node, as kube-proxy itself
//! feeds them (iptables-restore, `nft -f`).
use std::{fmt::Write as _, path::Path};

use super::{LabError, Plan, spec::KubeProxy};

/// The `iptables-restore` input for a plan (userland proxy on, icc on, masquerade on).
#[must_use]
pub fn docker_rules(p: &Plan) -> String {
    let br = &p.bridge;
    let subnet = format!("{}/{}", p.subnet.0, p.subnet.1);
    let mut raw = String::new();
    let mut docker_filter = String::new();
    let mut docker_nat = String::new();
    for w in &p.workloads {
        let Some(ip) = w.addr else { continue };
        let _ = writeln!(raw, "-A PREROUTING -d {ip}/32 ! -i {br} -j DROP");
        for pp in &w.publish {
            let proto = &pp.proto;
            let _ = writeln!(
                docker_filter,
                "-A DOCKER -d {ip}/32 ! -i {br} -o {br} -p {proto} -m {proto} --dport {} -j ACCEPT",
                pp.port
            );
            let _ = writeln!(
                docker_nat,
                "-A DOCKER ! -i {br} -p {proto} -m {proto} --dport {} -j DNAT --to-destination {ip}:{}",
                pp.host_port, pp.port
            );
        }
    }
    format!(
        "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
{raw}COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-BRIDGE - [0:0]
:DOCKER-CT - [0:0]
:DOCKER-FORWARD - [0:0]
:DOCKER-INTERNAL - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-FORWARD
{docker_filter}-A DOCKER ! -i {br} -o {br} -j DROP
-A DOCKER-BRIDGE -o {br} -j DOCKER
-A DOCKER-CT -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-FORWARD -j DOCKER-CT
-A DOCKER-FORWARD -j DOCKER-INTERNAL
-A DOCKER-FORWARD -j DOCKER-BRIDGE
-A DOCKER-FORWARD -i {br} -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s {subnet} ! -o {br} -j MASQUERADE
{docker_nat}COMMIT
"
    )
}

/// Runs `program args` in the node namespace with `text` on its stdin.
fn feed(
    node: &Path,
    plan: &Plan,
    program: &str,
    args: &[&str],
    text: &str,
) -> Result<(), LabError> {
    let mut cmd = crate::sys::netns::command_in(node, program)
        .map_err(LabError::io(format!("entering {}", plan.node_ns)))?;
    cmd.args(args);
    let out = crate::sys::process::feed(cmd, text).map_err(|source| LabError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(LabError::Command {
            program: program.to_owned(),
            netns: plan.node_ns.clone(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Several `iptables-restore` inputs as one: each table once, the inputs' lines in order.
/// One full restore (no `--noflush`) is much faster than appending with `--noflush`, which
/// iptables-nft 1.8.9 makes quadratic (110,000 kube-proxy rules: 271 s against ~3 s).
fn merge_restore(texts: &[String]) -> String {
    let mut tables: Vec<(String, String)> = Vec::new();
    for text in texts {
        let mut cur: Option<usize> = None;
        for line in text.lines() {
            if let Some(t) = line.strip_prefix('*') {
                cur = Some(if let Some(i) = tables.iter().position(|(n, _)| n == t) {
                    i
                } else {
                    tables.push((t.to_owned(), String::new()));
                    tables.len() - 1
                });
            } else if line == "COMMIT" {
                cur = None;
            } else if let Some(i) = cur {
                tables[i].1.push_str(line);
                tables[i].1.push('\n');
            }
        }
    }
    let mut out = String::new();
    for (t, body) in tables {
        out.push('*');
        out.push_str(&t);
        out.push('\n');
        out.push_str(&body);
        out.push_str("COMMIT\n");
    }
    out
}

/// Installs the plan's rules in its node namespace: Docker's, and kube-proxy's in the
/// plan's mode (iptables through `iptables-restore`, nftables through `nft -f`).
pub(super) fn install(node: &Path, plan: &Plan) -> Result<(), LabError> {
    let mut restore = Vec::new();
    if plan.docker_rules {
        restore.push(docker_rules(plan));
    }
    let cfg = crate::services::rules::Config {
        cluster_cidr: Some(format!("{}/{}", plan.subnet.0, plan.subnet.1)),
        service_cidr: Some(format!("{}/{}", plan.service_cidr.0, plan.service_cidr.1)),
    };
    if let Some(mode) = plan.kube_proxy {
        prepare_kube_node(node, plan, mode)?;
        if mode == KubeProxy::Iptables {
            restore.push(crate::services::rules::iptables(&plan.services, &cfg));
        }
        if mode == KubeProxy::Ipvs {
            restore.push(install_ipvs(node, plan, &cfg)?);
        }
    }
    if !restore.is_empty() {
        feed(
            node,
            plan,
            "iptables-restore",
            &[],
            &merge_restore(&restore),
        )?;
    }
    if plan.kube_proxy == Some(KubeProxy::Nftables) {
        feed(
            node,
            plan,
            "nft",
            &["-f", "-"],
            &crate::services::rules::nftables(&plan.services, &cfg),
        )?;
    }
    Ok(())
}

/// kube-proxy's IPVS state (see `services::rules::ipvs`): `kube-ipvs0` with the
/// `ClusterIPs`, the virtual servers (`ipvsadm-restore`), the ipsets (`ipset restore`);
/// returns the iptables part for the one `iptables-restore`.
fn install_ipvs(
    node: &Path,
    plan: &Plan,
    cfg: &crate::services::rules::Config,
) -> Result<String, LabError> {
    use crate::services::rules::ipvs;
    let mut node_ips = vec![plan.gateway];
    node_ips.extend(plan.external.as_ref().map(|e| e.node_ip));
    let rules = ipvs::ipvs(&plan.services, cfg, &node_ips);
    let vips = ipvs::cluster_ips(&plan.services);
    crate::sys::netns::run_in(node, || -> std::io::Result<()> {
        let nl = super::netlink::Nl::new()?;
        nl.dummy("kube-ipvs0")?;
        for v in &vips {
            nl.add_addr("kube-ipvs0", (*v).into(), 32)?;
        }
        Ok(())
    })
    .and_then(|r| r)
    .map_err(LabError::io(format!(
        "creating kube-ipvs0 in {}",
        plan.node_ns
    )))?;
    feed(node, plan, "ipset", &["restore"], &rules.ipset)?;
    feed(node, plan, "ipvsadm", &["-R"], &rules.ipvsadm)?;
    // Connections through IPVS get conntrack entries (kube-proxy sets it: its masquerade
    // rules and our Service attribution both read them).
    crate::sys::netns::run_in(node, || {
        super::netlink::sysctl("net/ipv4/vs/conntrack", "1")
    })
    .and_then(|r| r)
    .map_err(LabError::io(format!(
        "net.ipv4.vs.conntrack in {}",
        plan.node_ns
    )))?;
    Ok(rules.iptables)
}

/// What a kubelet node has around kube-proxy's rules.
fn prepare_kube_node(node: &Path, plan: &Plan, mode: KubeProxy) -> Result<(), LabError> {
    // Bridged pod traffic goes through netfilter (so a reply from a backend to a client on
    // the same bridge is un-DNATed), and in iptables mode localhost NodePorts
    // (route_localnet).
    crate::sys::netns::run_in(node, || -> std::io::Result<()> {
        use super::netlink::sysctl;
        sysctl("net/bridge/bridge-nf-call-iptables", "1")?;
        // The ServiceCIDR route below points back out of the bridge; an ICMP redirect there
        // would use up the per-host ICMP budget the REJECT of a Service without endpoints
        // needs (the client would time out instead of being refused).
        sysctl("net/ipv4/conf/all/send_redirects", "0")?;
        sysctl(
            &format!("net/ipv4/conf/{}/send_redirects", plan.bridge),
            "0",
        )?;
        if mode == KubeProxy::Iptables {
            sysctl("net/ipv4/conf/all/route_localnet", "1")?;
        }
        Ok(())
    })
    .and_then(|r| r)
    .map_err(LabError::io(format!(
        "preparing {} as a Kubernetes node",
        plan.node_ns
    )))?;
    // Unanswered ClusterIPs (no endpoints, unallocated) must reach the filter hooks, as they
    // do on a node with a default route, instead of dying in the routing lookup.
    let (cidr, len) = plan.service_cidr;
    crate::sys::netns::run_in(node, || {
        super::netlink::Nl::new()?.route_dev_v4(cidr, len, &plan.bridge)
    })
    .and_then(|r| r)
    .map_err(LabError::io(format!(
        "routing the ServiceCIDR in {}",
        plan.node_ns
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::spec::{DEFAULT_SPEC, LabSpec};

    #[test]
    fn restores_merge_per_table_in_order() {
        let a = "*nat\n-A X -j A\nCOMMIT\n*filter\n-A F -j A\nCOMMIT\n".to_owned();
        let b = "*nat\n-A X -j B\nCOMMIT\n".to_owned();
        assert_eq!(
            merge_restore(&[a, b]),
            "*nat\n-A X -j A\n-A X -j B\nCOMMIT\n*filter\n-A F -j A\nCOMMIT\n"
        );
    }

    #[test]
    fn default_lab_rules_have_docker_shape() {
        let plan = LabSpec::from_toml(DEFAULT_SPEC).unwrap().plan().unwrap();
        let r = docker_rules(&plan);
        for line in [
            "-A PREROUTING -d 198.18.20.2/32 ! -i docker0 -j DROP",
            "-A DOCKER -d 198.18.20.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.20.2:80",
            "-A POSTROUTING -s 198.18.20.0/24 ! -o docker0 -j MASQUERADE",
            "-A FORWARD -j DOCKER-USER",
            "-A DOCKER-FORWARD -i docker0 -j ACCEPT",
        ] {
            assert!(r.lines().any(|l| l == line), "missing {line}\n{r}");
        }
        // The per-port ACCEPT comes before the network's default DROP.
        let acc = r.find("--dport 80 -j ACCEPT").unwrap();
        let drop = r.find("-A DOCKER ! -i docker0 -o docker0 -j DROP").unwrap();
        assert!(acc < drop);
        // Workloads without an address of their own (host, none, container) get no rules.
        assert_eq!(r.matches("-j DROP").count(), 1 + 2);
    }
}
