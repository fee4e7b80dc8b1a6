//! `inspector status`: what works on this node and why (see `session::status`).
use super::args::Output;
use crate::output::{self, Printer};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub out: Output,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let s = crate::session::status::status();
    let mut p = Printer::stdout(a.out.output.into());
    output::status::render(&mut p, &s)?;
    Ok(())
}
