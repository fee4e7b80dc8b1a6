//! `inspector lab up|down|status|run|spec`: the four-mode lab (see `lab::modes`).
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::{
    identity::lab::LabRecord,
    lab::{
        modes,
        spec::{DEFAULT_SPEC, KUBE_SPEC, LabSpec},
    },
    output::{self, Format, Table},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: LabCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum LabCmd {
    /// Build a lab from a spec (TOML; default: the embedded four-mode spec, see `lab spec`).
    Up {
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// The embedded Kubernetes-node spec (`lab spec --kube`) with kube-proxy in this mode:
        /// iptables or nftables.
        #[arg(long, value_name = "MODE", conflicts_with = "spec")]
        kube: Option<String>,
    },
    /// Remove a lab: exactly what `lab up` made (namespaces, links, rules, cgroups).
    Down {
        /// The lab's name (default: the spec's, or the embedded spec's).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// The embedded Kubernetes-node lab (insp-kube).
        #[arg(long, conflicts_with_all = ["spec", "name"])]
        kube: bool,
    },
    /// The labs on this node: workloads, modes, namespaces, addresses, published ports.
    Status,
    /// Run a command as a lab workload: in its namespace and cgroup (like `docker exec`).
    Run {
        lab: String,
        workload: String,
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Print the embedded default spec (a starting point for your own).
    Spec {
        /// The Kubernetes-node spec instead (Services, kube-proxy rules).
        #[arg(long)]
        kube: bool,
    },
}

fn load_spec(path: Option<&PathBuf>) -> anyhow::Result<LabSpec> {
    match path {
        None => LabSpec::from_toml(DEFAULT_SPEC).map_err(anyhow::Error::msg),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading lab spec {}", p.display()))?;
            LabSpec::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("lab spec {}: {}", p.display(), e.replace('\n', " ")))
        }
    }
}

fn need_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab needs root (it creates namespaces, links, rules and cgroups)");
    }
    Ok(())
}

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    match &a.cmd {
        LabCmd::Spec { kube } => {
            print!("{}", if *kube { KUBE_SPEC } else { DEFAULT_SPEC });
            Ok(())
        }
        LabCmd::Up { spec, kube } => {
            let spec = match kube.as_deref() {
                None => load_spec(spec.as_ref())?,
                Some(m @ ("iptables" | "nftables")) => LabSpec::from_toml(&KUBE_SPEC.replace(
                    "kube_proxy = \"iptables\"",
                    &format!("kube_proxy = \"{m}\""),
                ))
                .map_err(anyhow::Error::msg)?,
                Some(m) => bail!(
                    "--kube '{m}': kube-proxy modes the lab builds are iptables and nftables (IPVS needs a kernel with IP_VS)"
                ),
            };
            let plan = spec.plan().map_err(|e| anyhow::anyhow!("lab spec: {e}"))?;
            need_root()?;
            let rec = modes::up(&plan)?;
            eprintln!(
                "inspector: lab {} up: {} namespaces, {} workloads; remove it with `inspector lab down --name {}`",
                rec.lab,
                rec.namespaces.len(),
                rec.workloads.len(),
                rec.lab
            );
            print_status(&[rec], fmt)
        }
        LabCmd::Down { name, spec, kube } => {
            let name = match name {
                Some(n) => n.clone(),
                None if *kube => {
                    LabSpec::from_toml(KUBE_SPEC)
                        .map_err(anyhow::Error::msg)?
                        .name
                }
                None => load_spec(spec.as_ref())?.name,
            };
            need_root()?;
            let rec = LabRecord::load(&name).map_err(|_| {
                anyhow::anyhow!("no lab named '{name}' is up (see `inspector lab status`)")
            })?;
            modes::down(&rec);
            eprintln!(
                "inspector: lab {name} down: removed {} namespaces and {} cgroups",
                rec.namespaces.len(),
                rec.cgroups.len()
            );
            Ok(())
        }
        LabCmd::Status => print_status(&LabRecord::all(), fmt),
        LabCmd::Run {
            lab,
            workload,
            command,
        } => {
            need_root()?;
            let rec = LabRecord::load(lab).map_err(|_| {
                anyhow::anyhow!("no lab named '{lab}' is up (see `inspector lab status`)")
            })?;
            Err(modes::exec(&rec, workload, command))
        }
    }
}

fn print_status(recs: &[LabRecord], fmt: Format) -> anyhow::Result<()> {
    match fmt {
        Format::Json => {
            for r in recs {
                output::json_line(r)?;
            }
        }
        Format::Table | Format::Dot => {
            let mut t = Table::new(&[
                "LAB",
                "WORKLOAD",
                "MODE",
                "NETNS",
                "IPS",
                "PUBLISHED",
                "STATE",
            ]);
            for r in recs {
                for w in &r.workloads {
                    let live = crate::sys::netns::named(&w.netns).exists();
                    t.row(vec![
                        r.lab.clone(),
                        w.name.clone(),
                        w.network_mode.clone(),
                        w.netns.clone(),
                        w.ips
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        w.published.join(","),
                        if live { "up" } else { "namespace gone" }.into(),
                    ]);
                }
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}
