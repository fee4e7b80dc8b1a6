//! Writes a translated filter over every copy of the placeholder in the object file, before
//! aya parses it. The placeholder is inline assembly in each program that filters (see
//! `inspector_common::pcap`): found by its exact shape (`MARKER`, `SLOTS - 2` times `ja +0`,
//! `r0 = 0`) in the object's sections, so a change there cannot be overwritten blindly.
//! Same size, same place: nothing else in the object (relocations, BTF line and function
//! information) moves.
use inspector_common::pcap::{MARKER, SLOTS};
use object::{Object as _, ObjectSection as _};

const JA0: u64 = 0x05;
const R0_0: u64 = 0xb7;

fn is_placeholder(w: &[u64]) -> bool {
    w.len() == SLOTS
        && w[0] == MARKER
        && w[1..SLOTS - 1].iter().all(|&x| x == JA0)
        && w[SLOTS - 1] == R0_0
}

/// The object with `code` in every placeholder's place, in 8-aligned memory (as aya parses
/// it), or why not.
pub(crate) fn patch(object: &[u8], code: &[u64]) -> Result<Vec<u64>, String> {
    if code.len() != SLOTS {
        return Err(format!(
            "filter code is {} instructions, not {SLOTS}",
            code.len()
        ));
    }
    let file = object::File::parse(object).map_err(|e| format!("parsing the object: {e}"))?;
    let mut words: Vec<u64> = object
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    let mut found = 0;
    for section in file.sections() {
        let Some((start, size)) = section.file_range() else {
            continue;
        };
        let (Ok(start), Ok(size)) = (usize::try_from(start), usize::try_from(size)) else {
            continue;
        };
        if start % 8 != 0 || start + size > object.len() {
            continue;
        }
        let (first, end) = (start / 8, (start + size) / 8);
        let mut i = first;
        while i + SLOTS <= end {
            if words[i] == MARKER && is_placeholder(&words[i..i + SLOTS]) {
                words[i..i + SLOTS].copy_from_slice(code);
                found += 1;
                i += SLOTS;
            } else {
                i += 1;
            }
        }
    }
    if found == 0 {
        return Err("the object has no filter placeholder".to_owned());
    }
    Ok(words)
}

/// The bytes of `patch`'s result, as long as the original object.
pub(crate) fn bytes(words: &[u64], len: usize) -> &[u8] {
    // SAFETY: u64s are plain bytes; `len` never exceeds the words' size (see `patch`).
    let all = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) };
    &all[..len]
}
