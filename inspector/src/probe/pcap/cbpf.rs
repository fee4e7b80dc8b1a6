//! Classic BPF, as libpcap compiles a filter expression to it: the instruction and an
//! interpreter with the kernel's and libpcap's semantics (a load past the captured bytes
//! rejects the packet, as does a division by zero). The interpreter is what `trace -r`
//! filters a capture file with, and what the translator's tests check it against.

/// One classic BPF instruction (`struct bpf_insn` of `<pcap/bpf.h>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Instruction classes and fields (`<pcap/bpf.h>`).
pub const LD: u16 = 0x00;
pub const LDX: u16 = 0x01;
pub const ST: u16 = 0x02;
pub const STX: u16 = 0x03;
pub const ALU: u16 = 0x04;
pub const JMP: u16 = 0x05;
pub const RET: u16 = 0x06;
pub const MISC: u16 = 0x07;
pub const W: u16 = 0x00;
pub const H: u16 = 0x08;
pub const B: u16 = 0x10;
pub const IMM: u16 = 0x00;
pub const ABS: u16 = 0x20;
pub const IND: u16 = 0x40;
pub const MEM: u16 = 0x60;
pub const LEN: u16 = 0x80;
pub const MSH: u16 = 0xa0;
pub const ADD: u16 = 0x00;
pub const SUB: u16 = 0x10;
pub const MUL: u16 = 0x20;
pub const DIV: u16 = 0x30;
pub const OR: u16 = 0x40;
pub const AND: u16 = 0x50;
pub const LSH: u16 = 0x60;
pub const RSH: u16 = 0x70;
pub const NEG: u16 = 0x80;
pub const MOD: u16 = 0x90;
pub const XOR: u16 = 0xa0;
pub const JA: u16 = 0x00;
pub const JEQ: u16 = 0x10;
pub const JGT: u16 = 0x20;
pub const JGE: u16 = 0x30;
pub const JSET: u16 = 0x40;
pub const K: u16 = 0x00;
pub const X: u16 = 0x08;
pub const A: u16 = 0x10;
pub const TAX: u16 = 0x00;
pub const TXA: u16 = 0x80;

/// Scratch memory words.
pub const MEMWORDS: u32 = 16;

#[must_use]
pub const fn class(code: u16) -> u16 {
    code & 0x07
}
#[must_use]
pub const fn size(code: u16) -> u16 {
    code & 0x18
}
#[must_use]
pub const fn mode(code: u16) -> u16 {
    code & 0xe0
}
#[must_use]
pub const fn op(code: u16) -> u16 {
    code & 0xf0
}
#[must_use]
pub const fn src(code: u16) -> u16 {
    code & 0x08
}

/// Bytes a load of this size reads.
#[must_use]
pub const fn width(code: u16) -> u32 {
    match size(code) {
        W => 4,
        H => 2,
        _ => 1,
    }
}

/// Runs the program over `bytes` (the captured part of a packet of `wirelen` bytes) and
/// returns its result: 0 rejects the packet. A malformed program rejects every packet.
#[must_use]
pub fn run(prog: &[Insn], bytes: &[u8], wirelen: u32) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; MEMWORDS as usize];
    let load = |off: u32, n: u32| -> Option<u32> {
        let start = off as usize;
        let b = bytes.get(start..start.checked_add(n as usize)?)?;
        Some(b.iter().fold(0u32, |v, &c| v << 8 | u32::from(c)))
    };
    let mut pc = 0usize;
    while let Some(i) = prog.get(pc) {
        pc += 1;
        let k = i.k;
        match class(i.code) {
            LD => {
                a = match mode(i.code) {
                    IMM => k,
                    LEN => wirelen,
                    MEM if k < MEMWORDS => mem[k as usize],
                    ABS => match load(k, width(i.code)) {
                        Some(v) => v,
                        None => return 0,
                    },
                    IND => match x.checked_add(k).and_then(|o| load(o, width(i.code))) {
                        Some(v) => v,
                        None => return 0,
                    },
                    _ => return 0,
                }
            }
            LDX => {
                x = match mode(i.code) {
                    IMM => k,
                    LEN => wirelen,
                    MEM if k < MEMWORDS => mem[k as usize],
                    MSH => match load(k, 1) {
                        Some(v) => (v & 0xf) << 2,
                        None => return 0,
                    },
                    _ => return 0,
                }
            }
            ST if k < MEMWORDS => mem[k as usize] = a,
            STX if k < MEMWORDS => mem[k as usize] = x,
            ALU => {
                let v = if src(i.code) == X { x } else { k };
                a = match op(i.code) {
                    ADD => a.wrapping_add(v),
                    SUB => a.wrapping_sub(v),
                    MUL => a.wrapping_mul(v),
                    DIV | MOD if v == 0 => return 0,
                    DIV => a / v,
                    MOD => a % v,
                    OR => a | v,
                    AND => a & v,
                    LSH => a.checked_shl(v).unwrap_or(0),
                    RSH => a.checked_shr(v).unwrap_or(0),
                    NEG => a.wrapping_neg(),
                    XOR => a ^ v,
                    _ => return 0,
                }
            }
            JMP => {
                let v = if src(i.code) == X { x } else { k };
                let skip = match op(i.code) {
                    JA => k as usize,
                    JEQ => usize::from(if a == v { i.jt } else { i.jf }),
                    JGT => usize::from(if a > v { i.jt } else { i.jf }),
                    JGE => usize::from(if a >= v { i.jt } else { i.jf }),
                    JSET => usize::from(if a & v != 0 { i.jt } else { i.jf }),
                    _ => return 0,
                };
                pc += skip;
            }
            RET => {
                return match i.code & 0x18 {
                    A => a,
                    K => k,
                    _ => 0,
                };
            }
            MISC => match i.code & 0xf8 {
                TAX => x = a,
                TXA => a = x,
                _ => return 0,
            },
            _ => return 0,
        }
    }
    0
}
