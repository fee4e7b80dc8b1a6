//! pcap-filter expressions to classic BPF with libpcap's own compiler (`pcap_compile` for an
//! Ethernet link, as `tcpdump -r` compiles for a capture file): the grammar, the semantics
//! and the error messages are tcpdump's, to the letter.
//!
//! libpcap's messages carry no position. The position is found by asking libpcap itself:
//! the error is at the first token after which no completion from a short list (a number,
//! an address, a closing bracket, a comparison...) makes the prefix compile; if every
//! prefix can be completed, the expression ended too early.
use pcap::{Capture, Linktype};

use super::cbpf::Insn;

/// Why an expression does not compile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid filter expression at column {column} ({near}): {message}")]
pub struct SyntaxError {
    /// libpcap's message.
    pub message: String,
    /// 1-based column of the offending token (one past the end if the expression ended
    /// too early).
    pub column: usize,
    /// The token there, quoted, or "at its end".
    pub near: String,
}

/// Completions tried after a prefix: one of them makes any viable prefix of a common
/// expression compile.
const COMPLETIONS: &[&str] = &[
    "",
    " 1",
    " 1)",
    " 1))",
    " tcp)",
    " tcp))",
    ")",
    "))",
    " 198.18.0.1",
    " host 198.18.0.1",
    " ::1",
    " 00:00:00:00:00:01",
    " 1-2",
    " tcp",
    " = 1",
    " 1 = 1",
    "] = 1",
    " 1] = 1",
    ":1] = 1",
    " 1:1] = 1",
    " and tcp",
];

fn libpcap(expr: &str) -> Result<Vec<Insn>, String> {
    let dead = Capture::dead(Linktype::ETHERNET).map_err(|e| e.to_string())?;
    let prog = dead.compile(expr, true).map_err(|e| match e {
        pcap::Error::PcapError(m) => m,
        other => other.to_string(),
    })?;
    prog.get_instructions()
        .iter()
        .map(|i| {
            // The crate shows an instruction as "code jt jf k" and has no accessors.
            let f: Vec<u32> = i
                .to_string()
                .split(' ')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| format!("unreadable instruction {i}"))?;
            match f[..] {
                [code, jt, jf, k] => Ok(Insn {
                    code: code as u16,
                    jt: jt as u8,
                    jf: jf as u8,
                    k,
                }),
                _ => Err(format!("unreadable instruction {i}")),
            }
        })
        .collect()
}

/// The longest expression taken (tcpdump's are a line; the agent's API takes one per query,
/// and placing an error compiles a prefix per token).
pub const MAX_EXPR: usize = 4096;

/// Tokens examined when placing an error (each costs a few compiles); beyond, the error is
/// placed at the last one examined.
const MAX_LOCATE: usize = 128;

/// Compiles `expr` (optimised, as tcpdump does).
pub fn compile(expr: &str) -> Result<Vec<Insn>, SyntaxError> {
    if expr.len() > MAX_EXPR {
        return Err(SyntaxError {
            message: format!("longer than {MAX_EXPR} bytes"),
            column: MAX_EXPR + 1,
            near: "at its end".to_owned(),
        });
    }
    libpcap(expr).map_err(|message| locate(expr, message))
}

/// Token spans, split as libpcap's scanner splits them where it matters for a position:
/// at white space and at operator characters.
fn tokens(expr: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if b"()[]&|!=<>+-*/%^".contains(&c) {
            i += 1;
            // Two-character operators.
            if i < b.len()
                && matches!(
                    &b[start..=i],
                    b"&&" | b"||" | b"!=" | b"<=" | b">=" | b"<<" | b">>" | b"=="
                )
            {
                i += 1;
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() && !b"()[]&|!=<>+*/%^".contains(&b[i])
            {
                i += 1;
            }
        }
        out.push((start, i));
    }
    out
}

fn locate(expr: &str, message: String) -> SyntaxError {
    let viable = |prefix: &str| {
        COMPLETIONS
            .iter()
            .any(|c| libpcap(&format!("{prefix}{c}")).is_ok())
    };
    let tokens = tokens(expr);
    for (i, &(start, end)) in tokens.iter().enumerate() {
        if i + 1 == MAX_LOCATE || !viable(&expr[..end]) {
            return SyntaxError {
                message,
                column: expr[..start].chars().count() + 1,
                near: format!("'{}'", &expr[start..end]),
            };
        }
    }
    SyntaxError {
        message,
        column: expr.chars().count() + 1,
        near: "at its end".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(expr: &str) -> SyntaxError {
        compile(expr).expect_err(expr)
    }

    #[test]
    fn hostile_lengths_are_bounded() {
        let long = "tcp or ".repeat(MAX_EXPR / 7 + 1) + "udp";
        let e = err(&long);
        assert_eq!(e.message, format!("longer than {MAX_EXPR} bytes"));
        // A thousand tokens, each prefix viable, the whole not: placed at the last token
        // examined, not after compiling a thousand prefixes.
        let bad = "tcp and ".repeat(500) + "and";
        let e = err(&bad);
        assert_eq!(e.column, 4 * (MAX_LOCATE - 1) + 1, "{e}");
    }

    #[test]
    fn tcpdump_expressions_compile() {
        for e in [
            "tcp port 80 and not host 198.18.0.1",
            "vlan 10 and udp",
            "tcp[tcpflags] & tcp-syn != 0",
            "len > 100",
            "",
        ] {
            assert!(compile(e).is_ok(), "{e}");
        }
    }

    #[test]
    fn errors_name_the_offending_token() {
        let e = err("tcp and and udp");
        assert_eq!((e.column, e.near.as_str()), (9, "'and'"), "{e}");
        let e = err("tcp port 99999");
        assert_eq!((e.column, e.near.as_str()), (10, "'99999'"), "{e}");
        assert!(e.message.contains("99999"), "{e}");
        let e = err("tcp port 80 and");
        assert_eq!((e.column, e.near.as_str()), (16, "at its end"), "{e}");
        let e = err("(tcp or udp");
        assert_eq!(e.column, 12, "{e}");
        let e = err("ip[2:3] = 1");
        assert_eq!(e.near, "'2:3'", "{e}");
    }
}
