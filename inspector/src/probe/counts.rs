//! One flow's counts as userspace reports them (the parts the kernel keeps, per CPU and in
//! the flow cache, added up).

/// One flow's counters summed over CPUs, with both times in `CLOCK_MONOTONIC` ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: u64,
    /// Resolution: one kernel tick (1/HZ).
    pub last_ns: u64,
    pub tcp_flags: u8,
    pub status: u8,
}

impl Counts {
    /// Adds another part of the same flow's counts.
    pub fn add(&mut self, o: &Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        if o.first_ns != 0 && (self.first_ns == 0 || o.first_ns < self.first_ns) {
            self.first_ns = o.first_ns;
        }
        self.last_ns = self.last_ns.max(o.last_ns);
        self.tcp_flags |= o.tcp_flags;
        self.status |= o.status;
    }
}
