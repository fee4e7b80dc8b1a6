//! `inspector services`: the node's Kubernetes Services as kube-proxy programmed them, read
//! from the live rules (iptables nat/filter tables and the nftables table `ip kube-proxy`) of
//! the host and of every lab node (or one chosen with `--lab`).
use super::args::Output;
use crate::{
    output::{self, Printer},
    probe::preflight,
    services::read,
    session::check_service_name,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this lab's node namespace (default: the host and every lab node).
    #[arg(long)]
    pub lab: Option<String>,
    /// Only Services named NAMESPACE/NAME.
    #[arg(long)]
    pub service: Option<String>,
    #[command(flatten)]
    pub out: Output,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    preflight::privileges()?;
    if let Some(s) = &a.service {
        check_service_name(s)?;
    }
    let nodes = read::node_services(a.lab.as_deref())?;
    let mut p = Printer::stdout(a.out.output.into());
    output::services::render(&mut p, &nodes, |e| {
        a.service.as_ref().is_none_or(|s| &e.ns_name() == s)
    })?;
    Ok(())
}
