//! `lab` records (`lab status`, `lab up`): each lab with its workloads, modes, namespaces,
//! addresses and published ports.
use std::io::Write;

use super::{Printer, Table};
use crate::identity::lab_records::LabRecord;

pub fn render<W: Write>(p: &mut Printer<W>, recs: &[LabRecord]) -> std::io::Result<()> {
    if p.json() {
        for r in recs {
            p.record("lab", r)?;
        }
        return Ok(());
    }
    let mut t = Table::new(&[
        "LAB",
        "WORKLOAD",
        "MODE",
        "NETNS",
        "IPS",
        "PUBLISHED",
        "STATE",
    ]);
    for r in recs {
        for w in &r.workloads {
            let live = crate::sys::netns::named(&w.netns).exists();
            t.row(vec![
                r.lab.clone(),
                w.name.clone(),
                w.network_mode.clone(),
                w.netns.clone(),
                w.ips
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                w.published.join(","),
                if live { "up" } else { "namespace gone" }.into(),
            ]);
        }
    }
    p.text(&t.render())
}
