//! `inspector lab up|down|status|run|spec`: labs in network namespaces (see `crate::lab`).
//! `--kube` means the embedded Kubernetes-node lab in every subcommand; `--kube-proxy`
//! chooses its mode.
use std::path::PathBuf;

use super::args::Form;
use crate::{
    identity::lab_records::LabRecord,
    lab::{
        self, KubeProxy, LabError, LabSpec,
        spec::{DEFAULT_SPEC, KUBE_SPEC},
    },
    output::{self, Printer},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: LabCmd,
    /// Output format: aligned table, or one JSON object per line.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value_t,
        global = true
    )]
    pub output: Form,
}

/// Which lab: a spec file, the embedded Kubernetes node (`--kube`, in `--kube-proxy` mode),
/// or the embedded four-mode lab.
#[derive(clap::Args, Debug, Clone)]
pub struct Which {
    /// A lab spec (TOML; `lab spec` prints the embedded one as a starting point).
    #[arg(long, value_name = "FILE", conflicts_with = "kube")]
    pub spec: Option<PathBuf>,
    /// The embedded Kubernetes-node lab (Services behind kube-proxy's rules). (`--kube MODE`
    /// is the old spelling of `--kube --kube-proxy MODE`.)
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "OLD-MODE")]
    pub kube: Option<String>,
    /// With --kube: kube-proxy's mode, iptables (default) or nftables.
    #[arg(long, value_name = "MODE", requires = "kube")]
    pub kube_proxy: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum LabCmd {
    /// Build a lab (default: the embedded four-mode lab).
    Up {
        #[command(flatten)]
        which: Which,
    },
    /// Remove a lab: exactly what `lab up` made (namespaces, links, rules, cgroups).
    Down {
        /// The lab's name (default: the chosen spec's).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        which: Which,
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
    /// Print a spec: the embedded four-mode one, or with --kube the Kubernetes-node one.
    Spec {
        #[command(flatten)]
        which: Which,
    },
}

/// kube-proxy's mode from `--kube-proxy`, or from the old `--kube MODE` spelling.
fn kube_mode(w: &Which) -> anyhow::Result<KubeProxy> {
    let old = w.kube.as_deref().filter(|m| !m.is_empty());
    if old.is_some() {
        crate::cli::compat::deprecated("--kube MODE", "--kube --kube-proxy MODE");
    }
    match w.kube_proxy.as_deref().or(old).unwrap_or("iptables") {
        "iptables" => Ok(KubeProxy::Iptables),
        "nftables" => Ok(KubeProxy::Nftables),
        "ipvs" => Ok(KubeProxy::Ipvs),
        m => anyhow::bail!(
            "--kube-proxy '{m}': kube-proxy modes the lab builds are iptables, nftables and ipvs"
        ),
    }
}

fn spec(w: &Which) -> anyhow::Result<LabSpec> {
    if w.kube.is_some() {
        let mut s = LabSpec::from_toml(KUBE_SPEC)?;
        s.kube_proxy = Some(kube_mode(w)?.as_str().into());
        return Ok(s);
    }
    Ok(match &w.spec {
        Some(p) => LabSpec::from_file(p)?,
        None => LabSpec::from_toml(DEFAULT_SPEC)?,
    })
}

fn need_root() -> Result<(), LabError> {
    if crate::sys::privilege::is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let mut p = Printer::stdout(a.output.into());
    match &a.cmd {
        LabCmd::Spec { which } if which.kube.is_some() => {
            let mode = kube_mode(which)?.as_str();
            p.text(&KUBE_SPEC.replace(
                "kube_proxy = \"iptables\"",
                &format!("kube_proxy = \"{mode}\""),
            ))?;
        }
        LabCmd::Spec { .. } => p.text(DEFAULT_SPEC)?,
        LabCmd::Up { which } => {
            let plan = spec(which)?.plan()?;
            need_root()?;
            let rec = lab::up(&plan)?;
            eprintln!(
                "inspector: lab {} up: {} namespaces, {} workloads; remove it with `inspector lab down --name {}`",
                rec.lab,
                rec.namespaces.len(),
                rec.workloads.len(),
                rec.lab
            );
            output::lab::render(&mut p, &[rec])?;
        }
        LabCmd::Down { name, which } => {
            let name = match name {
                Some(n) => n.clone(),
                None => spec(which)?.name,
            };
            need_root()?;
            let rec = LabRecord::load(&name).map_err(|_| LabError::NotUp(name.clone()))?;
            lab::down(&rec);
            eprintln!(
                "inspector: lab {name} down: removed {} namespaces and {} cgroups",
                rec.namespaces.len(),
                rec.cgroups.len()
            );
        }
        LabCmd::Status => output::lab::render(&mut p, &LabRecord::all())?,
        LabCmd::Run {
            lab: name,
            workload,
            command,
        } => {
            need_root()?;
            let rec = LabRecord::load(name).map_err(|_| LabError::NotUp(name.clone()))?;
            return Err(lab::exec(&rec, workload, command).into());
        }
    }
    Ok(())
}
