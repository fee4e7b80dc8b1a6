//! `inspector demo`: the main job on a fresh machine (see `lab::demo`): each step shown as
//! it comes.
use super::args::Output;
use crate::{
    lab::demo::{self, Step},
    output::{self, Printer},
    probe::preflight,
    sys::signals::StopFlag,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Leave the lab in place afterwards, to explore it with `topology`, `explain`, `flows`.
    #[arg(long, conflicts_with = "clean")]
    pub keep: bool,
    /// Only remove a lab left by `--keep` (or by a demo that was killed).
    #[arg(long)]
    pub clean: bool,
    #[command(flatten)]
    pub out: Output,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    preflight::privileges()?;
    if a.clean {
        eprintln!(
            "inspector: removed the demo lab ({} namespaces)",
            demo::clean()
        );
        return Ok(());
    }
    // Ctrl-C must not skip the clean-up: the flag is checked between steps and the labs are
    // removed as the demo unwinds.
    let stop = StopFlag::register()?;
    let mut p = Printer::stdout(a.out.output.into());
    let mut failed: Option<std::io::Error> = None;
    demo::run(a.keep, &stop, &mut |step| {
        let r = match step {
            Step::Note(n) => {
                eprintln!("inspector: {n}");
                Ok(())
            }
            Step::Flows(f) => {
                let (paths, drops, stats) = *f;
                output::paths::render(&mut p, &paths, false)
                    .and_then(|()| output::drops::render(&mut p, &drops))
                    .and_then(|()| output::stats::render(&mut p, &stats))
            }
            Step::Services(nodes) => output::services::render(&mut p, &nodes, |_| true),
            Step::Probe(cmd, report) => {
                let head = if p.json() {
                    Ok(())
                } else {
                    p.line("").and_then(|()| p.line(&format!("$ {cmd}")))
                };
                head.and_then(|()| output::probe::render(&mut p, &report))
            }
        };
        if let Err(e) = r {
            failed.get_or_insert(e);
        }
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
