//! Old spellings: they keep working for one release, each with a one-line note on stderr.

/// The note an old spelling gets (it works for one more release).
pub fn deprecated(old: &str, new: &str) {
    eprintln!(
        "inspector: note: {old} is now spelled {new} (the old spelling goes in the next release)"
    );
}

/// The value of a renamed flag: the new one, else the old one (with its note).
pub fn renamed<T>(new: Option<T>, old: Option<T>, names: (&str, &str), default: T) -> T {
    match (new, old) {
        (Some(v), _) => v,
        (None, Some(v)) => {
            deprecated(names.0, names.1);
            v
        }
        (None, None) => default,
    }
}
