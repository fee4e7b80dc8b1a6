//! `inspector bench scale`: identity and attach time for N workloads.
use crate::{
    bench::scale,
    output::{self, Format, Printer},
};

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    /// Workloads (namespaces with a veth pair each), 1..2000.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=2000))]
    pub workloads: Option<u16>,
    /// The old spelling of --workloads.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u16).range(1..=2000))]
    pub count: Option<u16>,
    /// Repetitions; medians are over repetitions.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub repeat: Option<u16>,
    /// The old spelling of --repeat.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: Option<u16>,
}

pub fn run(a: &ScaleArgs, fmt: Format) -> anyhow::Result<()> {
    crate::probe::preflight::privileges()?;
    let n = crate::cli::compat::renamed(a.workloads, a.count, ("--count", "--workloads"), 500);
    let repeat = super::repeat(a.repeat, a.rounds, 5);
    let samples = scale::run(usize::from(n), repeat, |s| {
        eprintln!(
            "inspector: repetition {}: identity {:.1} ms, resolve {:.2} ms ({} of {}), scan {:.0} ms, load {:.0} ms, attach {:.0} ms, --fast-attach {:.0} ms, --attach global {:.0} ms ({} interfaces)",
            s.repetition + 1,
            s.identity_ms,
            s.resolve_ms,
            s.resolved,
            s.workloads,
            s.scan_ms,
            s.load_ms,
            s.attach_ms,
            s.attach_fast_ms,
            s.attach_global_ms,
            s.attached
        );
    })?;
    let summary = scale::summarize(&samples);
    output::bench::scale(&mut Printer::stdout(fmt), &samples, &summary)?;
    Ok(())
}
