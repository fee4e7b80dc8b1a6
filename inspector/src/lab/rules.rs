//! The iptables rules Docker (moby v28, iptables backend) writes for one bridge network,
//! as ../shared/design/DATAPATHS.md §1.2 describes them: the raw-table guard against direct
//! routing to container addresses, the filter chains DOCKER-USER, DOCKER-FORWARD,
//! DOCKER-CT, DOCKER-INTERNAL, DOCKER-BRIDGE and DOCKER (with a per-port ACCEPT for each
//! published port), and in nat the DOCKER chain with one DNAT per published port plus the
//! MASQUERADE of the bridge subnet. Fed to `iptables-restore` in the lab's node namespace.
use std::fmt::Write as _;

use super::spec::Plan;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::spec::{DEFAULT_SPEC, LabSpec};

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
