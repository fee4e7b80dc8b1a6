//! `inspector bench`: what the inspector costs, measured side by side.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_a: &Args, _fmt: crate::output::Format) -> anyhow::Result<()> {
    anyhow::bail!("bench is not implemented yet")
}
