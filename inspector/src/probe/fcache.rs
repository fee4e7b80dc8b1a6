//! The flow cache's part of the IPv4 flows' counts (`inspector_fcache`; see
//! `inspector_common::FlowSlot` and the kernel's `fcache`), and the clamp that keeps counts
//! read while packets flow from ever going down.
//!
//! A flow's count is the LRU table's part plus the cache's part. The two are read one after
//! the other (the table first), and a packet of another flow may move a slot's counts into
//! the table in between: that read then misses the moved part (never counts it twice). So
//! every read is at most the truth, and the clamp (never report less than last time, for a
//! flow that had a cache part last time) makes the reads monotone. With no traffic there is
//! nothing to move, and a read is exact: the final read after the traffic stops.
use std::collections::HashMap;

use inspector_common::FlowKey4;

use super::Counts;

/// Adds the cache's part to the table's (`flows`, read first), then clamps: a flow that had
/// a cache part in the last read is reported at least as it was then (and is reported even
/// if its counts were moved out of sight between the two reads). `held` carries the flows
/// with a cache part from one read to the next.
pub(super) fn merge(
    flows: &mut HashMap<FlowKey4, Counts>,
    cache: &HashMap<FlowKey4, Counts>,
    held: &mut HashMap<FlowKey4, Counts>,
) {
    for (k, c) in cache {
        flows.entry(*k).or_default().add(c);
    }
    for (k, was) in held.iter() {
        let now = flows.entry(*k).or_default();
        if now.packets < was.packets {
            *now = *was;
        }
    }
    held.clear();
    held.extend(cache.keys().map(|k| (*k, flows[k])));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey4 {
        FlowKey4 {
            src: [198, 18, 0, 1],
            dst: [198, 18, 0, 2],
            netns: 1,
            ifindex: 2,
            sport: port,
            dport: 80,
            vlan: 0,
            proto: 17,
            direction: 0,
        }
    }

    fn counts(packets: u64) -> Counts {
        Counts {
            packets,
            bytes: packets * 100,
            first_ns: 10,
            last_ns: 20 + packets,
            tcp_flags: 0,
            status: 0,
        }
    }

    #[test]
    fn the_two_parts_add_up() {
        let mut flows = HashMap::from([(key(1), counts(5))]);
        let mut held = HashMap::new();
        merge(
            &mut flows,
            &HashMap::from([(key(1), counts(3)), (key(2), counts(1))]),
            &mut held,
        );
        assert_eq!(flows[&key(1)].packets, 8);
        assert_eq!(flows[&key(1)].bytes, 800);
        assert_eq!(flows[&key(2)].packets, 1);
        assert_eq!(held.len(), 2);
    }

    /// A slot moved into the table between the two reads: the table part was read before
    /// the move, the slot after it. The read misses the moved part, the clamp covers it.
    #[test]
    fn a_part_moved_between_the_reads_is_clamped() {
        let mut held = HashMap::new();
        let mut first = HashMap::from([(key(1), counts(5))]);
        merge(&mut first, &HashMap::from([(key(1), counts(3))]), &mut held);
        assert_eq!(first[&key(1)].packets, 8);
        // Next read: the table still shows 5 (read before the move), the cache no longer
        // holds the flow.
        let mut second = HashMap::from([(key(1), counts(5))]);
        merge(&mut second, &HashMap::new(), &mut held);
        assert_eq!(second[&key(1)].packets, 8);
        // The read after: the table has all of it (and more); nothing is held any more.
        let mut third = HashMap::from([(key(1), counts(9))]);
        merge(&mut third, &HashMap::new(), &mut held);
        assert_eq!(third[&key(1)].packets, 9);
        assert!(held.is_empty());
    }

    /// A flow that only ever lived in the cache, moved into a table entry created after
    /// the table was read: still reported.
    #[test]
    fn a_flow_moved_out_of_sight_is_still_reported() {
        let mut held = HashMap::new();
        let mut first = HashMap::new();
        merge(&mut first, &HashMap::from([(key(7), counts(2))]), &mut held);
        let mut second = HashMap::new();
        merge(&mut second, &HashMap::new(), &mut held);
        assert_eq!(second[&key(7)].packets, 2);
    }
}
