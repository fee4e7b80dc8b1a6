//! Workload selection (`--pod`, `--container`, `-l`, `--namespace`, `--from-*`, `--to-*`),
//! as the kernel's event filter and userspace both decide it, from three small values:
//! the bits of the packet's namespace and of its source and destination addresses in the
//! selection maps (`inspector_wns`, `inspector_waddr`), and the mode (which kinds of
//! selector were given, [`crate::config::Config::wsel`]).

/// A namespace or address of a workload that `--pod`, `--container`, `-l` or `--namespace`
/// selects (traffic in that namespace, or from or to that address, is wanted).
pub const ANY: u8 = 1;
/// An address of a workload `--from-pod`/`--from-container` selects (the source must be one).
pub const FROM: u8 = 2;
/// An address of a workload `--to-pod`/`--to-container` selects (the destination must be one).
pub const TO: u8 = 4;

/// Set in every `inspector_wns` entry while a new namespace waits for its owner: a packet
/// with an address not in `inspector_waddr` then passes, and userspace decides it once the
/// owner is known. (A bit of the entry the program reads anyway: a lookup of its own would
/// need a key on the stack, and the global hooks have none to spare.)
pub const WAITING: u8 = 0x80;

/// Whether a packet passes: every kind of selector in `mode` must hold. `ns`: the bits of
/// the namespace it was seen in; `src`, `dst`: those of its addresses (0 when not listed).
#[inline(always)]
#[must_use]
pub const fn pass(mode: u8, ns: u8, src: u8, dst: u8) -> bool {
    if mode & ANY != 0 && (ns | src | dst) & ANY == 0 {
        return false;
    }
    if mode & FROM != 0 && src & FROM == 0 {
        return false;
    }
    if mode & TO != 0 && dst & TO == 0 {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_given_must_hold() {
        assert!(pass(0, 0, 0, 0));
        assert!(pass(ANY, ANY, 0, 0));
        assert!(pass(ANY, 0, 0, ANY));
        assert!(!pass(ANY, 0, FROM, TO));
        assert!(pass(FROM | TO, 0, FROM, TO));
        assert!(!pass(FROM | TO, 0, TO, FROM));
        assert!(!pass(ANY | FROM, ANY, 0, 0));
        assert!(pass(ANY | FROM, 0, ANY | FROM, 0));
    }
}
