//! `path` records: each direction of each flow with its hops in order and what each hop is.
use std::io::Write;

use super::{Printer, labelled};
use crate::session::Path;

pub fn render<W: Write>(p: &mut Printer<W>, paths: &[Path], refresh: bool) -> std::io::Result<()> {
    if p.json() {
        for x in paths {
            p.record("path", x)?;
        }
        return Ok(());
    }
    if refresh && super::stdout_is_tty() {
        p.text("\x1b[2J\x1b[H")?;
    }
    for x in paths {
        let f = &x.path;
        p.line(&format!(
            "{} {} -> {}",
            f.proto,
            labelled(
                crate::net::endpoint(f.src, f.sport),
                x.src_endpoint.as_ref()
            ),
            labelled(
                crate::net::endpoint(f.dst, f.dport),
                x.dst_endpoint.as_ref()
            ),
        ))?;
        for (i, h) in f.hops.iter().enumerate() {
            p.line(&format!(
                "  {:>2}. {:<28} {:<7} {:>6} pkts {:>9} bytes  {}",
                i + 1,
                format!("{}/{}", h.netns_name, h.ifname),
                h.direction,
                h.packets,
                h.bytes,
                h.role
            ))?;
        }
        p.line("")?;
    }
    Ok(())
}
