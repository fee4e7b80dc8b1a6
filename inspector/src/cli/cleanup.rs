//! `inspector cleanup`: removes what an inspector that died left behind (legacy tc filters,
//! and the clsact qdiscs it created once empty), and nothing else (see `probe::cleanup`).
use super::args::Output;
use crate::{
    output::{self, Printer},
    probe::{cleanup, preflight},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this namespace (inode, name, docker:<id>, "host" or path). Repeatable; default:
    /// every namespace on the node.
    #[arg(long = "netns", value_name = "NS")]
    pub netns: Vec<String>,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: Output,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    preflight::privileges()?;
    let all = crate::topology::netns::discover();
    let chosen: Vec<crate::topology::Netns> = if a.netns.is_empty() {
        all.clone()
    } else {
        a.netns
            .iter()
            .map(|spec| crate::session::resolve_netns(spec, &all).cloned())
            .collect::<Result<_, _>>()?
    };
    let (removed, errors) = cleanup::sweep(&chosen, a.dry_run);
    let mut p = Printer::stdout(a.out.output.into());
    output::cleanup::render(&mut p, &removed, a.dry_run)?;
    for e in &errors {
        eprintln!("inspector: warning: {e}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} namespaces could not be swept", errors.len())
    }
}
