//! `inspector bench pipeline`: the userspace per-packet pipeline on a synthetic producer.
use crate::{
    bench::pipeline,
    cli::args::parse_secs_or_zero,
    output::{self, Format, Printer},
    sys::signals::StopFlag,
};

#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// Events for each throughput repetition (decoded and aggregated as fast as one core
    /// goes).
    #[arg(long, default_value_t = 50_000_000, value_parser = clap::value_parser!(u64).range(1000..=10_000_000_000))]
    pub events: u64,
    /// Events per second of the paced run.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..=100_000_000))]
    pub rate: u64,
    /// Seconds of the paced run (0: skip it).
    #[arg(long, value_parser = parse_secs_or_zero)]
    pub run_secs: Option<f64>,
    /// The old spelling of --run-secs.
    #[arg(long, hide = true, value_parser = parse_secs_or_zero)]
    pub secs: Option<f64>,
    /// Hooks each synthetic packet crosses.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    pub hops: u8,
    /// Endpoint pairs the synthetic packets go between (a histogram per pair and hop).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pairs: u32,
    /// Throughput repetitions (median, min and max are reported).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub repeat: Option<u16>,
    /// The old spelling of --repeat.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: Option<u16>,
}

pub fn run(a: &PipelineArgs, fmt: Format) -> anyhow::Result<()> {
    let hops = usize::from(a.hops);
    let repeat = super::repeat(a.repeat, a.rounds, 5);
    let secs = crate::cli::compat::renamed(a.run_secs, a.secs, ("--secs", "--run-secs"), 60.0);
    eprintln!(
        "inspector: bench pipeline: {} events through decode + filter + stitch + histograms on CPU 0",
        a.events
    );
    let runs: Vec<pipeline::Throughput> = (0..repeat)
        .map(|r| {
            let t = pipeline::throughput(a.events, hops, a.pairs, 10_000_000, 0);
            eprintln!(
                "inspector: repetition {}: {:.2} M events/s",
                r + 1,
                t.events_per_sec / 1e6
            );
            t
        })
        .collect();
    let summary =
        pipeline::summarize(runs).ok_or_else(|| anyhow::anyhow!("no throughput repetition ran"))?;
    let stop = StopFlag::register()?;
    let paced = (secs > 0.0).then(|| {
        eprintln!(
            "inspector: bench pipeline: {} events/s for {secs:.0} s through an {} MiB ring (producer on CPU 1, consumer on CPU 0)",
            a.rate,
            pipeline::RING_BYTES >> 20
        );
        pipeline::paced(a.rate, secs, hops, 1, 0, stop.flag())
    });
    output::bench::pipeline(&mut Printer::stdout(fmt), &summary, paced.as_ref())?;
    Ok(())
}
