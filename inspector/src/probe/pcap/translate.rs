//! Classic BPF (libpcap's output) to eBPF for the filter subprogram of the kernel programs.
//! Hand-written: no crate translates classic BPF for a subprogram (the kernel's own
//! converter, `bpf_convert_filter`, is for socket filters and is not exported); the mapping
//! is the one the kernel and pwru's elibpcap use.
//!
//! The filter runs inline in each program with r1 = the per-CPU scratch
//! (`inspector_common::pcap::Scratch`: packet view, then classic BPF's 16 memory words),
//! r2 = bytes in the view, r3 = the packet's length; it leaves its verdict in r0 (0
//! rejects) and jumps to the instruction after its [`SLOTS`] (a return is not `exit`, which
//! would end the whole program). It may clobber r0-r5 only. Registers: A = w4, X = w5, r0 the
//! scratch register of loads. A and X stay 32-bit (ALU32 ops, 32-bit jumps, zero-extending
//! loads). Every packet load checks its end against r2 (the packet's bytes; a load past them
//! rejects, as in libpcap) and against the view's size (for the verifier, which then knows
//! the map value access is in bounds). Classic BPF jumps only forward, so does the output.
use inspector_common::pcap::{MEM_OFF, SLOTS, VIEW};

use super::cbpf::{self, Insn};

// eBPF opcodes (uapi `linux/bpf.h`, `linux/bpf_common.h`).
const CLS_LDX: u8 = 0x01;
const CLS_STX: u8 = 0x03;
const CLS_ALU: u8 = 0x04;
const CLS_JMP: u8 = 0x05;
const CLS_JMP32: u8 = 0x06;
const CLS_ALU64: u8 = 0x07;
const SZ_W: u8 = 0x00;
const SZ_H: u8 = 0x08;
const SZ_B: u8 = 0x10;
const MODE_MEM: u8 = 0x60;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const OP_ADD: u8 = 0x00;
const OP_SUB: u8 = 0x10;
const OP_MOV: u8 = 0xb0;
const OP_END: u8 = 0xd0;
const TO_BE: u8 = 0x08;
const J_JA: u8 = 0x00;
const J_JEQ: u8 = 0x10;
const J_JGT: u8 = 0x20;
const J_JLT: u8 = 0xa0;

const R0: u8 = 0;
const R_BUF: u8 = 1;
const R_CAPLEN: u8 = 2;
const R_WIRELEN: u8 = 3;
const R_A: u8 = 4;
const R_X: u8 = 5;

/// Why a classic program cannot be translated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranslateError {
    #[error("instruction {0} (code {1:#06x}) is not one libpcap emits for Ethernet captures")]
    Unsupported(usize, u16),
    #[error("instruction {0} jumps past the end of the program")]
    BadJump(usize),
    #[error("the filter needs {0} kernel instructions; at most {max} fit", max = SLOTS)]
    TooLong(usize),
}

/// An eBPF instruction, or a jump to a classic instruction's start or the reject block,
/// resolved once every start is known.
#[derive(Clone, Copy)]
enum Out {
    Raw(u64),
    Jump {
        code: u8,
        dst: u8,
        src: u8,
        imm: i32,
        to: Target,
    },
}

#[derive(Clone, Copy)]
enum Target {
    Classic(usize),
    Reject,
    /// The instruction after the filter: its "return".
    End,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

/// The classic instructions a run can reach (libpcap's optimiser leaves none unreachable,
/// but the verifier refuses a program that has one, so make sure).
fn reachable(prog: &[Insn]) -> Result<Vec<bool>, TranslateError> {
    let mut seen = vec![false; prog.len()];
    if prog.is_empty() {
        return Ok(seen);
    }
    seen[0] = true;
    for (pc, i) in prog.iter().enumerate() {
        if !seen[pc] {
            continue;
        }
        let next: &[usize] = match cbpf::class(i.code) {
            cbpf::RET => &[],
            cbpf::JMP if cbpf::op(i.code) == cbpf::JA => &[pc + 1 + i.k as usize],
            cbpf::JMP => &[pc + 1 + i.jt as usize, pc + 1 + i.jf as usize],
            _ => &[pc + 1],
        };
        for &n in next {
            *seen.get_mut(n).ok_or(TranslateError::BadJump(pc))? = true;
        }
    }
    Ok(seen)
}

/// Translates `prog` into exactly [`SLOTS`] eBPF instructions (padded in front with
/// `ja +0`, which the verifier removes), as little-endian words. Every path ends in a jump
/// to the instruction after them.
pub fn translate(prog: &[Insn]) -> Result<Vec<u64>, TranslateError> {
    let live = reachable(prog)?;
    let mut out: Vec<Out> = Vec::new();
    let mut starts = vec![0usize; prog.len()];
    // A = X = 0, as the classic machine starts.
    raw(&mut out, CLS_ALU | OP_MOV | SRC_K, R_A, 0, 0, 0);
    raw(&mut out, CLS_ALU | OP_MOV | SRC_K, R_X, 0, 0, 0);
    let view = VIEW as u32;
    for (pc, i) in prog.iter().enumerate() {
        starts[pc] = out.len();
        if !live[pc] {
            continue;
        }
        let unsupported = || TranslateError::Unsupported(pc, i.code);
        let k = i.k;
        let to = |n: u8| Target::Classic(pc + 1 + n as usize);
        match cbpf::class(i.code) {
            cls @ (cbpf::LD | cbpf::LDX) => {
                let dst = if cls == cbpf::LD { R_A } else { R_X };
                match cbpf::mode(i.code) {
                    cbpf::IMM => raw(&mut out, CLS_ALU | OP_MOV | SRC_K, dst, 0, 0, k as i32),
                    cbpf::LEN => raw(&mut out, CLS_ALU | OP_MOV | SRC_X, dst, R_WIRELEN, 0, 0),
                    cbpf::MEM if k < cbpf::MEMWORDS => {
                        let off = (MEM_OFF as u32 + 4 * k) as i16;
                        raw(&mut out, CLS_LDX | MODE_MEM | SZ_W, dst, R_BUF, off, 0);
                    }
                    cbpf::ABS if cls == cbpf::LD => {
                        let n = cbpf::width(i.code);
                        load_abs(&mut out, k, n, dst);
                    }
                    cbpf::MSH if cls == cbpf::LDX && cbpf::size(i.code) == cbpf::B => {
                        load_abs(&mut out, k, 1, dst);
                        raw(&mut out, CLS_ALU | 0x50 | SRC_K, dst, 0, 0, 0xf);
                        raw(&mut out, CLS_ALU | 0x60 | SRC_K, dst, 0, 0, 2);
                    }
                    cbpf::IND if cls == cbpf::LD => {
                        let n = cbpf::width(i.code);
                        if k >= view {
                            jump(&mut out, CLS_JMP | J_JA, 0, 0, Target::Reject);
                            continue;
                        }
                        // r0 = X + k, in [0, VIEW - n] for the verifier, and + n <= bytes.
                        raw(&mut out, CLS_ALU64 | OP_MOV | SRC_X, R0, R_X, 0, 0);
                        raw(&mut out, CLS_ALU64 | OP_ADD | SRC_K, R0, 0, 0, k as i32);
                        jump(
                            &mut out,
                            CLS_JMP | J_JGT | SRC_K,
                            R0,
                            (view - n) as i32,
                            Target::Reject,
                        );
                        raw(&mut out, CLS_ALU64 | OP_ADD | SRC_K, R0, 0, 0, n as i32);
                        jump_reg(
                            &mut out,
                            CLS_JMP | J_JGT | SRC_X,
                            R0,
                            R_CAPLEN,
                            Target::Reject,
                        );
                        raw(&mut out, CLS_ALU64 | OP_SUB | SRC_K, R0, 0, 0, n as i32);
                        raw(&mut out, CLS_ALU64 | OP_ADD | SRC_X, R0, R_BUF, 0, 0);
                        raw(&mut out, CLS_LDX | MODE_MEM | ebpf_size(n), R_A, R0, 0, 0);
                        swap(&mut out, R_A, n);
                    }
                    _ => return Err(unsupported()),
                }
            }
            cbpf::ST | cbpf::STX if k < cbpf::MEMWORDS => {
                let from = if cbpf::class(i.code) == cbpf::ST {
                    R_A
                } else {
                    R_X
                };
                let off = (MEM_OFF as u32 + 4 * k) as i16;
                raw(&mut out, CLS_STX | MODE_MEM | SZ_W, R_BUF, from, off, 0);
            }
            cbpf::ALU => {
                let op = cbpf::op(i.code);
                let by_x = cbpf::src(i.code) == cbpf::X;
                let code = match op {
                    cbpf::ADD => 0x00,
                    cbpf::SUB => 0x10,
                    cbpf::MUL => 0x20,
                    cbpf::DIV => 0x30,
                    cbpf::OR => 0x40,
                    cbpf::AND => 0x50,
                    cbpf::LSH => 0x60,
                    cbpf::RSH => 0x70,
                    cbpf::NEG => 0x80,
                    cbpf::MOD => 0x90,
                    cbpf::XOR => 0xa0,
                    _ => return Err(unsupported()),
                };
                if op == cbpf::NEG {
                    raw(&mut out, CLS_ALU | code, R_A, 0, 0, 0);
                } else if by_x {
                    if op == cbpf::DIV || op == cbpf::MOD {
                        // Division by zero rejects the packet.
                        jump(&mut out, CLS_JMP32 | J_JEQ | SRC_K, R_X, 0, Target::Reject);
                    }
                    if op == cbpf::LSH || op == cbpf::RSH {
                        // A shift by 32 or more gives 0, as in libpcap's interpreter.
                        raw(&mut out, CLS_JMP32 | J_JLT | SRC_K, R_X, 0, 2, 32);
                        raw(&mut out, CLS_ALU | OP_MOV | SRC_K, R_A, 0, 0, 0);
                        raw(&mut out, CLS_JMP | J_JA, 0, 0, 1, 0);
                    }
                    raw(&mut out, CLS_ALU | code | SRC_X, R_A, R_X, 0, 0);
                } else {
                    if (op == cbpf::DIV || op == cbpf::MOD) && k == 0 {
                        jump(&mut out, CLS_JMP | J_JA, 0, 0, Target::Reject);
                        continue;
                    }
                    if (op == cbpf::LSH || op == cbpf::RSH) && k >= 32 {
                        raw(&mut out, CLS_ALU | OP_MOV | SRC_K, R_A, 0, 0, 0);
                        continue;
                    }
                    raw(&mut out, CLS_ALU | code | SRC_K, R_A, 0, 0, k as i32);
                }
            }
            cbpf::JMP => {
                let op = cbpf::op(i.code);
                if op == cbpf::JA {
                    jump(
                        &mut out,
                        CLS_JMP | J_JA,
                        0,
                        0,
                        Target::Classic(pc + 1 + k as usize),
                    );
                    continue;
                }
                let cond = match op {
                    cbpf::JEQ => J_JEQ,
                    cbpf::JGT => J_JGT,
                    cbpf::JGE => 0x30,
                    cbpf::JSET => 0x40,
                    _ => return Err(unsupported()),
                };
                let by_x = cbpf::src(i.code) == cbpf::X;
                if i.jt == i.jf {
                    if i.jt != 0 {
                        jump(&mut out, CLS_JMP | J_JA, 0, 0, to(i.jt));
                    }
                    continue;
                }
                if by_x {
                    jump_reg(&mut out, CLS_JMP32 | cond | SRC_X, R_A, R_X, to(i.jt));
                } else {
                    jump(&mut out, CLS_JMP32 | cond | SRC_K, R_A, k as i32, to(i.jt));
                }
                if i.jf != 0 {
                    jump(&mut out, CLS_JMP | J_JA, 0, 0, to(i.jf));
                }
            }
            cbpf::RET => {
                match i.code & 0x18 {
                    cbpf::A => raw(&mut out, CLS_ALU | OP_MOV | SRC_X, R0, R_A, 0, 0),
                    cbpf::K => raw(&mut out, CLS_ALU | OP_MOV | SRC_K, R0, 0, 0, k as i32),
                    _ => return Err(unsupported()),
                }
                jump(&mut out, CLS_JMP | J_JA, 0, 0, Target::End);
            }
            cbpf::MISC => match i.code & 0xf8 {
                cbpf::TAX => raw(&mut out, CLS_ALU | OP_MOV | SRC_X, R_X, R_A, 0, 0),
                cbpf::TXA => raw(&mut out, CLS_ALU | OP_MOV | SRC_X, R_A, R_X, 0, 0),
                _ => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        }
    }
    // The reject block, if anything jumps to it (the verifier refuses unreachable code).
    // Nothing runs off the end: `reachable` refused a program whose last reachable
    // instruction is not a return or a jump.
    let reject = out.len();
    if out.iter().any(|o| {
        matches!(
            o,
            Out::Jump {
                to: Target::Reject,
                ..
            }
        )
    }) {
        raw(&mut out, CLS_ALU | OP_MOV | SRC_K, R0, 0, 0, 0);
        jump(&mut out, CLS_JMP | J_JA, 0, 0, Target::End);
    }
    let total = out.len();
    if total > SLOTS {
        return Err(TranslateError::TooLong(total));
    }
    let pad = SLOTS - total;
    let mut words = vec![insn(CLS_JMP | J_JA, 0, 0, 0, 0); pad];
    for (at, o) in out.iter().enumerate() {
        words.push(match *o {
            Out::Raw(w) => w,
            Out::Jump {
                code,
                dst,
                src,
                imm,
                to,
            } => {
                let target = match to {
                    Target::Classic(n) => *starts.get(n).ok_or(TranslateError::BadJump(n))?,
                    Target::Reject => reject,
                    Target::End => total,
                };
                let off = i16::try_from(target as isize - at as isize - 1)
                    .map_err(|_| TranslateError::TooLong(total))?;
                insn(code, dst, src, off, imm)
            }
        });
    }
    Ok(words)
}

fn raw(out: &mut Vec<Out>, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
    out.push(Out::Raw(insn(code, dst, src, off, imm)));
}

/// A jump comparing `dst` with `imm` (or none, for `ja`), resolved later.
fn jump(out: &mut Vec<Out>, code: u8, dst: u8, imm: i32, to: Target) {
    out.push(Out::Jump {
        code,
        dst,
        src: 0,
        imm,
        to,
    });
}

/// A jump comparing `dst` with register `src`.
fn jump_reg(out: &mut Vec<Out>, code: u8, dst: u8, src: u8, to: Target) {
    out.push(Out::Jump {
        code,
        dst,
        src,
        imm: 0,
        to,
    });
}

fn ebpf_size(n: u32) -> u8 {
    match n {
        4 => SZ_W,
        2 => SZ_H,
        _ => SZ_B,
    }
}

/// Network to host order for a load of `n` bytes (classic loads are big-endian).
fn swap(out: &mut Vec<Out>, reg: u8, n: u32) {
    if n > 1 {
        raw(out, CLS_ALU | OP_END | TO_BE, reg, 0, 0, (n * 8) as i32);
    }
}

/// A load of `n` bytes at the constant offset `k` into `dst`.
fn load_abs(out: &mut Vec<Out>, k: u32, n: u32, dst: u8) {
    if u64::from(k) + u64::from(n) > VIEW as u64 {
        jump(out, CLS_JMP | J_JA, 0, 0, Target::Reject);
        return;
    }
    // Reject if the packet's bytes end before k + n.
    jump(
        out,
        CLS_JMP32 | J_JLT | SRC_K,
        R_CAPLEN,
        (k + n) as i32,
        Target::Reject,
    );
    raw(
        out,
        CLS_LDX | MODE_MEM | ebpf_size(n),
        dst,
        R_BUF,
        k as i16,
        0,
    );
    swap(out, dst, n);
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn i(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    #[test]
    fn a_program_fills_the_placeholder_exactly_and_ends_in_exit() {
        let prog = [i(cbpf::RET | cbpf::K, 0, 0, 262_144)];
        let w = translate(&prog).unwrap();
        assert_eq!(w.len(), SLOTS);
        assert_eq!(w[0], insn(CLS_JMP | J_JA, 0, 0, 0, 0));
        // The return: r0 = 262144, then a jump to the instruction after the filter.
        assert_eq!(
            w[SLOTS - 2],
            insn(CLS_ALU | OP_MOV | SRC_K, R0, 0, 0, 262_144)
        );
        assert_eq!(w[SLOTS - 1], insn(CLS_JMP | J_JA, 0, 0, 0, 0));
    }

    #[test]
    fn no_reject_block_without_a_jump_to_it() {
        // "len > 200": no packet load, so nothing can reject early.
        let prog = [
            i(cbpf::LD | cbpf::W | cbpf::LEN, 0, 0, 0),
            i(cbpf::JMP | cbpf::JGT | cbpf::K, 0, 1, 200),
            i(cbpf::RET | cbpf::K, 0, 0, 262_144),
            i(cbpf::RET | cbpf::K, 0, 0, 0),
        ];
        let w = translate(&prog).unwrap();
        // The last instructions are the second return's, not a reject block's; the first
        // return jumps over them to the end.
        assert_eq!(w[SLOTS - 2], insn(CLS_ALU | OP_MOV | SRC_K, R0, 0, 0, 0));
        assert_eq!(w[SLOTS - 3], insn(CLS_JMP | J_JA, 0, 0, 2, 0));
    }

    #[test]
    fn a_too_long_program_is_refused() {
        let ld = i(cbpf::LD | cbpf::B | cbpf::ABS, 0, 0, 0);
        let mut prog = vec![ld; SLOTS];
        prog.push(i(cbpf::RET | cbpf::A, 0, 0, 0));
        assert!(matches!(translate(&prog), Err(TranslateError::TooLong(_))));
    }

    #[test]
    fn a_jump_past_the_end_is_refused() {
        let prog = [i(cbpf::JMP | cbpf::JA, 0, 0, 5)];
        assert_eq!(translate(&prog), Err(TranslateError::BadJump(0)));
    }
}
