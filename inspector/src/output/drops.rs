//! `drop` records: packets the kernel freed, per flow, device and reason.
use std::io::Write;

use super::{Printer, Table, labelled};
use crate::session::Drop;

pub fn render<W: Write>(p: &mut Printer<W>, drops: &[Drop]) -> std::io::Result<()> {
    if p.json() {
        for d in drops {
            p.record("drop", d)?;
        }
        return Ok(());
    }
    if drops.is_empty() {
        return Ok(());
    }
    let mut t = Table::new(&[
        "DROPPED AT",
        "REASON",
        "FREED IN",
        "PROTO",
        "SRC",
        "DST",
        "PACKETS",
        "RULE",
    ]);
    for d in drops {
        let r = &d.rec;
        t.row(vec![
            format!("{}/{}", r.netns_name, r.ifname),
            r.reason.clone(),
            r.location.clone(),
            r.hdr.proto.to_string(),
            labelled(r.hdr.src_str(), d.src_endpoint.as_ref()),
            labelled(r.hdr.dst_str(), d.dst_endpoint.as_ref()),
            r.packets.to_string(),
            d.rule.clone().unwrap_or_default(),
        ]);
    }
    p.line("")?;
    p.text(&t.render())
}
