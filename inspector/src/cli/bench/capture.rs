//! `inspector bench capture`: capture files at the flood's rate, ours and tcpdump's.
use crate::{
    bench::capture,
    output::{self, Format, Printer},
    sys::signals::StopFlag,
};

#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    /// Repetitions (each runs every writer once); medians are over repetitions.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub repeat: u16,
    /// Seconds of each measured run.
    #[arg(long, default_value_t = 3.0, value_parser = crate::cli::args::parse_secs)]
    pub run_secs: f64,
    /// `-s` for both writers (1-16384); default: each one's own, whole packets (ours up to
    /// 16384 bytes, tcpdump's up to 262144). 128 or less takes the inspector's fixed-size
    /// records.
    #[arg(short = 's', long, value_parser = clap::value_parser!(u32).range(1..=16384))]
    pub snaplen: Option<u32>,
}

pub fn run(a: &CaptureArgs, fmt: Format) -> anyhow::Result<()> {
    crate::probe::preflight::privileges()?;
    let opts = capture::Options {
        repeat: usize::from(a.repeat),
        run_secs: a.run_secs,
        stop: StopFlag::register()?,
        snaplen: a.snaplen,
    };
    eprintln!(
        "inspector: bench capture: {} repetitions x 3 writers x {:.1} s of the udp flood, captured on the server's veth and eth0 (snap length {})",
        opts.repeat,
        opts.run_secs,
        opts.snaplen.map_or_else(
            || "each writer's default: whole packets".to_owned(),
            |n| n.to_string()
        )
    );
    let mut p = Printer::stdout(fmt);
    let (_, summary) = capture::run(&opts, |s| {
        if p.json() {
            let _ = p.record("capture_sample", s);
        } else {
            eprintln!(
                "  repetition {} {:<10} {:>10.0} pkt/s  counted {:>9}  written {:>9}  lost {:>8}  said lost {:>8}  {:>7.1} MB/s",
                s.repetition + 1,
                s.writer.name(),
                s.rate,
                s.counted,
                s.written,
                s.lost,
                s.says_lost
                    .map_or_else(|| "-".to_owned(), |v| v.to_string()),
                s.bytes_per_sec / 1e6
            );
        }
    })?;
    output::bench::capture(&mut p, &summary)?;
    Ok(())
}
