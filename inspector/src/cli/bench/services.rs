//! `inspector bench services`: parse time of a big cluster's Service rules.
use crate::{
    bench::services,
    output::{self, Format, Printer},
};

#[derive(clap::Args, Debug)]
pub struct ServicesArgs {
    /// Services, 1..30000.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=30_000))]
    pub services: Option<u16>,
    /// The old spelling of --services.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u16).range(1..=30_000))]
    pub count: Option<u16>,
    /// Endpoints per Service, 1..100.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub endpoints: u16,
    /// Repetitions; medians are over repetitions.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub repeat: Option<u16>,
    /// The old spelling of --repeat.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: Option<u16>,
}

pub fn run(a: &ServicesArgs, fmt: Format) -> anyhow::Result<()> {
    crate::probe::preflight::privileges()?;
    let n = crate::cli::compat::renamed(a.services, a.count, ("--count", "--services"), 10_000);
    let repeat = super::repeat(a.repeat, a.rounds, 5);
    let (setup, samples) = services::run(usize::from(n), usize::from(a.endpoints), repeat, |s| {
        eprintln!(
            "inspector: repetition {}: iptables-save parse {:.1} ms, nft JSON parse {:.1} ms",
            s.repetition + 1,
            s.iptables_ms,
            s.nft_ms
        );
    })?;
    let summary = services::summarize(&setup, &samples);
    output::bench::services(&mut Printer::stdout(fmt), &setup, &samples, &summary)?;
    Ok(())
}
