//! Writes a translated filter over the placeholder subprogram in the object file, before aya
//! parses it. The placeholder is found by its symbol (`inspector_common::pcap::SYMBOL`) and
//! checked to be what the eBPF crate compiles (`SLOTS` instructions: `ja +0`s, `r0 = 0`,
//! `exit`), so a change there cannot be overwritten blindly. Same size, same place: nothing
//! else in the object (relocations, BTF line and function info) moves.
use inspector_common::pcap::{SLOTS, SYMBOL};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

const JA0: u64 = 0x05;
const R0_0: u64 = 0xb7;
const EXIT: u64 = 0x95;

/// The object with `code` in the placeholder's place, in 8-aligned memory (as aya parses
/// it), or why not.
pub(crate) fn patch(object: &[u8], code: &[u64]) -> Result<Vec<u64>, String> {
    if code.len() != SLOTS {
        return Err(format!(
            "filter code is {} instructions, not {SLOTS}",
            code.len()
        ));
    }
    let file = object::File::parse(object).map_err(|e| format!("parsing the object: {e}"))?;
    let sym = file
        .symbols()
        .find(|s| s.name().is_ok_and(|n| n.contains(SYMBOL)))
        .ok_or_else(|| format!("the object has no {SYMBOL}"))?;
    let section = sym
        .section_index()
        .and_then(|i| file.section_by_index(i).ok())
        .ok_or_else(|| format!("{SYMBOL} is in no section"))?;
    let (start, _) = section
        .file_range()
        .ok_or_else(|| format!("{SYMBOL}'s section has no data"))?;
    let at =
        usize::try_from(start + sym.address()).map_err(|_| format!("{SYMBOL} is out of range"))?;
    if sym.size() != (SLOTS * 8) as u64 || at % 8 != 0 || at + SLOTS * 8 > object.len() {
        return Err(format!(
            "{SYMBOL} is {} bytes, not {}",
            sym.size(),
            SLOTS * 8
        ));
    }
    let mut words: Vec<u64> = object
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    let slot = &mut words[at / 8..at / 8 + SLOTS];
    let expected = slot[..SLOTS - 2].iter().all(|&w| w == JA0)
        && slot[SLOTS - 2] == R0_0
        && slot[SLOTS - 1] == EXIT;
    if !expected {
        return Err(format!("{SYMBOL} is not the expected placeholder"));
    }
    slot.copy_from_slice(code);
    Ok(words)
}

/// The bytes of `patch`'s result, as long as the original object.
pub(crate) fn bytes(words: &[u64], len: usize) -> &[u8] {
    // SAFETY: u64s are plain bytes; `len` never exceeds the words' size (see `patch`).
    let all = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) };
    &all[..len]
}
