//! The `ClusterIP` Service of the CRI modes: kube-proxy's own rules (`services::rules`, the
//! same generator the Kubernetes labs use) for one Service whose endpoint is the server pod,
//! installed in the node's namespace the way kube-proxy installs them (`iptables-restore
//! --noflush`, `nft -f`) only while that mode's runs go (`ServiceRules`: the other modes, and
//! the other kube-proxy mode, are measured on a node without them), and removed exactly: the jumps from the built-in chains
//! deleted, the KUBE-* chains flushed and deleted, the table `ip kube-proxy` deleted. A node
//! where kube-proxy already runs is refused (its chains would be ours to flush).
use std::{
    fmt::Write as _,
    io::Write as _,
    net::Ipv4Addr,
    process::{Command, Stdio},
};

use crate::{
    bench::{BenchError, LoadKind},
    services::rules::{Config, Port, Service, iptables, nftables},
};

/// The Services' `ClusterIPs`: one per kube-proxy mode, so both can be installed at once and
/// each mode's traffic meets only its own rules.
pub(super) const IPTABLES_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 129, 10);
pub(super) const NFTABLES_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 129, 20);
const SERVICE_CIDR: &str = "198.18.129.0/24";
const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

fn run(program: &str, args: &[&str], input: &str) -> Result<String, BenchError> {
    let what = format!("{program} {}", args.join(" "));
    let mut c = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(BenchError::io(what.clone()))?;
    if let Some(mut i) = c.stdin.take() {
        i.write_all(input.as_bytes())
            .map_err(BenchError::io(what.clone()))?;
    }
    let out = c.wait_with_output().map_err(BenchError::io(what.clone()))?;
    if !out.status.success() {
        return Err(BenchError::Input(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("failed")
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Refuses a node whose kube-proxy (or a run of ours) already wrote its rules.
///
/// # Errors
/// KUBE-SERVICES in iptables' nat table, or the table `ip kube-proxy` in nftables.
pub(super) fn refuse_if_taken(iptables: bool, nft: bool) -> Result<(), BenchError> {
    if iptables && run("iptables-save", &["-t", "nat"], "")?.contains(":KUBE-SERVICES") {
        return Err(BenchError::Input(
            "kube-proxy's iptables chains exist on this node (a kube-proxy runs here): the cri-iptables mode would overwrite them; measure a Service of yours with --between POD NS/SERVICE-POD instead".into(),
        ));
    }
    if nft
        && run("nft", &["list", "tables"], "")?
            .lines()
            .any(|l| l.trim() == "table ip kube-proxy")
    {
        return Err(BenchError::Input(
            "kube-proxy's nftables table (ip kube-proxy) exists on this node: the cri-nftables mode would overwrite it".into(),
        ));
    }
    Ok(())
}

/// One Service `insp-bench/target` at `vip`, a port per workload, `endpoint` behind it.
fn service(vip: Ipv4Addr, endpoint: Ipv4Addr) -> Service {
    Service {
        namespace: "insp-bench".into(),
        name: "target".into(),
        cluster_ip: vip,
        ports: LoadKind::TESTS
            .iter()
            .map(|t| Port {
                name: t.name().into(),
                port: t.port(),
                target_port: t.port(),
                protocol: t.proto().into(),
                node_port: None,
            })
            .collect(),
        affinity: None,
        endpoints: vec![endpoint],
    }
}

/// The rules installed; removed on drop.
#[derive(Default)]
pub(super) struct Installed {
    /// The `iptables-restore` input fed, to undo it line by line.
    iptables: Option<String>,
    nft: bool,
}

/// The `iptables-restore --noflush` input that undoes `fed`: built-in chains' jumps deleted,
/// then the chains it declared flushed and deleted.
fn undo(fed: &str) -> String {
    let mut out = String::new();
    let mut table = String::new();
    let (mut deletes, mut chains) = (Vec::new(), Vec::new());
    let flush =
        |out: &mut String, table: &str, deletes: &mut Vec<String>, chains: &mut Vec<String>| {
            if table.is_empty() {
                return;
            }
            let _ = writeln!(out, "*{table}");
            for d in deletes.drain(..) {
                out.push_str(&d);
                out.push('\n');
            }
            for c in chains.iter() {
                let _ = writeln!(out, "-F {c}");
            }
            for c in chains.drain(..) {
                let _ = writeln!(out, "-X {c}");
            }
            out.push_str("COMMIT\n");
        };
    for l in fed.lines() {
        if let Some(t) = l.strip_prefix('*') {
            flush(&mut out, &table, &mut deletes, &mut chains);
            t.clone_into(&mut table);
        } else if let Some(c) = l.strip_prefix(':') {
            let name = c.split_whitespace().next().unwrap_or_default();
            if !BUILT_IN.contains(&name) {
                chains.push(name.to_owned());
            }
        } else if let Some(rest) = l.strip_prefix("-I ").or_else(|| l.strip_prefix("-A ")) {
            let mut w = rest.splitn(2, ' ');
            let (chain, tail) = (w.next().unwrap_or_default(), w.next().unwrap_or_default());
            if BUILT_IN.contains(&chain) {
                // `-I CHAIN 1 RULE` and `-A CHAIN RULE` are deleted as `-D CHAIN RULE`.
                let rule = if l.starts_with("-I ") {
                    tail.split_once(' ').map_or(tail, |(n, r)| {
                        if n.parse::<u32>().is_ok() { r } else { tail }
                    })
                } else {
                    tail
                };
                deletes.push(format!("-D {chain} {rule}"));
            }
        }
    }
    flush(&mut out, &table, &mut deletes, &mut chains);
    out
}

/// Installs the Service for each mode asked (`iptables`, `nft`), with `endpoint` (the server
/// pod) behind it; the pods' subnet is kube-proxy's cluster CIDR.
///
/// # Errors
/// A tool missing or refusing the rules (what was installed is removed again).
pub(super) fn install(
    iptables_mode: bool,
    nft_mode: bool,
    endpoint: Ipv4Addr,
    cluster_cidr: String,
) -> Result<Installed, BenchError> {
    let cfg = Config {
        cluster_cidr: Some(cluster_cidr),
        service_cidr: Some(SERVICE_CIDR.into()),
    };
    let mut done = Installed::default();
    if iptables_mode {
        // The built-in chains' policies are the node's: their declarations are left out.
        let text: String = iptables(&[service(IPTABLES_VIP, endpoint)], &cfg)
            .lines()
            .filter(|l| {
                !l.strip_prefix(':')
                    .is_some_and(|c| BUILT_IN.iter().any(|b| c.starts_with(&format!("{b} "))))
            })
            .fold(String::new(), |mut t, l| {
                t.push_str(l);
                t.push('\n');
                t
            });
        run("iptables-restore", &["--noflush"], &text)?;
        done.iptables = Some(text);
    }
    if nft_mode {
        run(
            "nft",
            &["-f", "-"],
            &nftables(&[service(NFTABLES_VIP, endpoint)], &cfg),
        )?;
        done.nft = true;
    }
    Ok(done)
}

/// The words of one `iptables-restore` line (double quotes group, as in kube-proxy's
/// comments).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// [`undo`] one command at a time, for when the atomic one was refused (a jump added twice,
/// by another run or by hand, keeps a chain referenced): each jump is deleted as often as it
/// is there, then the chains are flushed and deleted; each failure is left behind.
fn undo_each(undo: &str) {
    let mut table = "filter".to_owned();
    for l in undo.lines() {
        if let Some(t) = l.strip_prefix('*') {
            t.clone_into(&mut table);
            continue;
        }
        if l == "COMMIT" {
            continue;
        }
        let mut args = vec!["-t".to_owned(), table.clone()];
        args.extend(words(l));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let repeat = if l.starts_with("-D ") { 16 } else { 1 };
        for _ in 0..repeat {
            if run("iptables", &args, "").is_err() {
                break;
            }
        }
    }
}

/// One kube-proxy mode's rules for the Service, put in place around each of its mode's runs.
pub(super) struct ServiceRules {
    nft: bool,
    endpoint: Ipv4Addr,
    cluster_cidr: String,
    on: std::sync::Mutex<Option<Installed>>,
}

impl ServiceRules {
    pub(super) fn new(nft: bool, endpoint: Ipv4Addr, cluster_cidr: String) -> Self {
        Self {
            nft,
            endpoint,
            cluster_cidr,
            on: std::sync::Mutex::new(None),
        }
    }

    /// Removes the rules if they are in place.
    pub(super) fn off(&self) {
        let taken = self
            .on
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(taken);
    }
}

impl crate::bench::modes::target::Around for ServiceRules {
    fn before(&self) -> Result<(), BenchError> {
        let mut on = self
            .on
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if on.is_none() {
            *on = Some(install(
                !self.nft,
                self.nft,
                self.endpoint,
                self.cluster_cidr.clone(),
            )?);
        }
        Ok(())
    }

    fn after(&self) {
        self.off();
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(fed) = self.iptables.take() {
            let u = undo(&fed);
            if run("iptables-restore", &["--noflush"], &u).is_err() {
                undo_each(&u);
            }
        }
        if self.nft {
            let _ = run("nft", &["delete", "table", "ip", "kube-proxy"], "");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_comments_stay_one_word() {
        assert_eq!(
            words("-D INPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
            [
                "-D",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "kubernetes service portals",
                "-j",
                "KUBE-SERVICES"
            ]
        );
    }

    #[test]
    fn the_undo_deletes_the_jumps_then_the_chains_it_made() {
        let fed = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A KUBE-SERVICES -d 198.18.129.10 -j KUBE-SVC-X\n:KUBE-SVC-X - [0:0]\nCOMMIT\n";
        assert_eq!(
            undo(fed),
            "*nat\n-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-F KUBE-SERVICES\n-F KUBE-SVC-X\n-X KUBE-SERVICES\n-X KUBE-SVC-X\nCOMMIT\n"
        );
    }
}
