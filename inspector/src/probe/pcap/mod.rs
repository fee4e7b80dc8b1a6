//! pcap-filter expressions in the kernel: compiled by libpcap (`compile`), translated from
//! classic BPF to eBPF (`translate`), written over the programs' placeholder subprogram
//! before load (`patch`). `cbpf` runs the same program in userspace (for `trace -r`).
//! docs/filters.md says why this design and what it costs.
pub mod cbpf;
mod compile;
pub(crate) mod patch;
pub mod translate;

pub use compile::SyntaxError;
pub use translate::TranslateError;

/// A compiled expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The expression as given.
    pub expr: String,
    /// libpcap's classic BPF.
    pub program: Vec<cbpf::Insn>,
    /// The kernel's version: exactly the placeholder's size.
    pub code: Vec<u64>,
}

/// Why an expression cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    #[error("filter expression '{0}': {1}")]
    Translate(String, TranslateError),
}

impl Filter {
    /// Compiles and translates `expr`.
    pub fn new(expr: &str) -> Result<Self, FilterError> {
        let program = compile::compile(expr)?;
        let code = translate::translate(&program)
            .map_err(|e| FilterError::Translate(expr.to_owned(), e))?;
        Ok(Self {
            expr: expr.to_owned(),
            program,
            code,
        })
    }

    /// Whether a packet matches: `bytes` as captured (an Ethernet frame), `wirelen` its
    /// length on the wire.
    #[must_use]
    pub fn matches(&self, bytes: &[u8], wirelen: u32) -> bool {
        cbpf::run(&self.program, bytes, wirelen) != 0
    }
}
