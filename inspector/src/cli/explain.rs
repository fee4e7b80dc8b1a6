//! `inspector explain NAME|ID`: a container's, pod's or lab workload's network mode with its
//! live kernel objects, and the hops of its packets (see `crate::explain`).
use anyhow::Context as _;

use super::args::{IdentityArgs, Output};
use crate::{
    output::{self, Printer},
    probe::preflight,
    topology::{self, NsidCache},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name, id or id prefix (4+ characters) of a container, pod (namespace/name) or lab
    /// workload.
    pub workload: String,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub out: Output,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    preflight::privileges()?;
    let tracker = a.identity.tracker();
    let w = tracker
        .identity
        .live()
        .iter()
        .find(|w| w.name == a.workload || w.id == a.workload)
        .or_else(|| tracker.identity.find(&a.workload))
        .cloned()
        .with_context(|| {
            format!(
                "no container, pod or lab workload is called '{}' (list them with `inspector topology`)",
                a.workload
            )
        })?;
    let mut topo = topology::scan(&mut NsidCache::default());
    crate::identity::owners::name_namespaces(&tracker.identity, &mut topo);
    let ex = crate::explain::explain(&tracker.identity, &topo, &w);
    output::explain::render(&mut Printer::stdout(a.out.output.into()), &ex)?;
    Ok(())
}
