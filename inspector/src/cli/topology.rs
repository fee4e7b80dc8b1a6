//! `inspector topology`: the node's map (see `output::topology`).
use super::args::{FormDot, IdentityArgs};
use crate::{
    identity::map,
    output::{self, Printer},
    probe::preflight,
    session::resolve_netns,
    topology::{self, NsidCache, view},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this namespace (inode, name, docker:<id>, "host" or path). Repeatable.
    #[arg(long = "netns", value_name = "NS")]
    pub netns: Vec<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Output format: aligned text, one JSON object per line, or Graphviz.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: FormDot,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    preflight::privileges()?;
    let all = topology::netns::discover();
    let want: Vec<u64> = a
        .netns
        .iter()
        .map(|spec| resolve_netns(spec, &all).map(|n| n.inode))
        .collect::<Result<_, _>>()?;
    let mut topo = topology::scan(&mut NsidCache::default());
    let tracker = a.identity.tracker();
    crate::identity::owners::name_namespaces(&tracker.identity, &mut topo);
    let workloads: Vec<map::WorkloadView> = map::build(&tracker.identity, &topo)
        .into_iter()
        .filter(|w| want.is_empty() || w.netns.is_some_and(|n| want.contains(&n)))
        .collect();
    let namespaces = view::namespaces(&topo, &want);
    let mut p = Printer::stdout(a.output.into());
    output::topology::render(&mut p, &workloads, &namespaces, &topo)?;
    Ok(())
}
