//! Where `trace -w` writes: one capture file, stdout, or a series of files rotated as
//! tcpdump rotates them. `-C N`: a new file once the current one holds N million bytes;
//! `-G SECS`: a new file when a packet comes SECS seconds or more after the current file was
//! opened. Each file is complete on its own (its own section header and interfaces).
//!
//! Names, as tcpdump's: the first file is FILE, the next FILE1, FILE2, ... With `-G`, FILE
//! may hold `strftime` fields (`%Y %m %d %H %M %S %%`, UTC), filled with the time the file
//! is opened; without any, the numbers are appended as with `-C` (tcpdump would overwrite
//! the same file instead). The few fields are formatted here by hand: no date crate is a
//! dependency, and the civil-date arithmetic is ten lines.
use std::{
    cell::Cell,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    rc::Rc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use super::capture::{About, Capture};
use crate::session::{records::Packet, trace::Again};

/// When to start a new file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rotate {
    /// `-G`: seconds.
    pub secs: Option<u64>,
    /// `-C`: bytes (millions, as tcpdump counts).
    pub bytes: Option<u64>,
}

/// Counts what goes through to the file.
struct Counted<W> {
    inner: W,
    bytes: Rc<Cell<u64>>,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.set(self.bytes.get() + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The capture output of one `trace -w`.
pub struct Files {
    current: Capture<Box<dyn Write>>,
    written: Rc<Cell<u64>>,
    /// None: stdout.
    base: Option<PathBuf>,
    rotate: Rotate,
    classic: bool,
    snaplen: u32,
    about: About,
    opened_at: Instant,
    /// Files written so far (the current one last).
    pub files: Vec<PathBuf>,
    /// Packets written, in all files.
    pub packets: u64,
}

/// `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `pattern` with its `strftime` fields filled for `unix` seconds (UTC).
fn strftime(pattern: &str, unix: u64) -> String {
    let secs = unix as i64;
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let field = match chars.next() {
            Some('Y') => format!("{y:04}"),
            Some('m') => format!("{mo:02}"),
            Some('d') => format!("{d:02}"),
            Some('H') => format!("{:02}", t / 3600),
            Some('M') => format!("{:02}", t / 60 % 60),
            Some('S') => format!("{:02}", t % 60),
            Some('%') | None => "%".to_owned(),
            Some(o) => format!("%{o}"),
        };
        out.push_str(&field);
    }
    out
}

/// The name of file number `index` (0 = the first).
fn name(base: &Path, index: u32, rotate: Rotate, now: u64) -> PathBuf {
    let text = base.to_string_lossy();
    let timed = rotate.secs.is_some() && text.contains('%');
    let mut name = if timed {
        strftime(&text, now)
    } else {
        text.into_owned()
    };
    if index > 0 && (!timed || rotate.bytes.is_some()) {
        name.push_str(&index.to_string());
    }
    PathBuf::from(name)
}

/// A file's writer and the count of bytes written through it.
type Opened = (Box<dyn Write>, Rc<Cell<u64>>);

fn open(path: Option<&Path>) -> std::io::Result<Opened> {
    let written = Rc::new(Cell::new(0));
    let w: Box<dyn Write> = match path {
        None => Box::new(Counted {
            inner: std::io::stdout(),
            bytes: Rc::clone(&written),
        }),
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot write {}: {e}", p.display()))
            })?;
            Box::new(Counted {
                inner: BufWriter::new(f),
                bytes: Rc::clone(&written),
            })
        }
    };
    Ok((w, written))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Files {
    /// Opens the first file (`-`: stdout, which cannot rotate).
    ///
    /// # Errors
    /// It cannot be created.
    pub fn open(path: &Path, classic: bool, snaplen: u32, rotate: Rotate) -> std::io::Result<Self> {
        let base = (path.as_os_str() != "-").then(|| path.to_path_buf());
        let first = base.as_deref().map(|b| name(b, 0, rotate, unix_now()));
        let (w, written) = open(first.as_deref())?;
        let about = About::here();
        let current = Capture::new(w, classic, snaplen, &about)?;
        Ok(Self {
            current,
            written,
            base,
            rotate,
            classic,
            snaplen,
            about,
            opened_at: Instant::now(),
            files: first.into_iter().collect(),
            packets: 0,
        })
    }

    fn due(&self) -> bool {
        self.base.is_some()
            && (self.rotate.bytes.is_some_and(|b| self.written.get() >= b)
                || self
                    .rotate
                    .secs
                    .is_some_and(|s| self.opened_at.elapsed().as_secs() >= s))
    }

    /// Writes one packet, into a new file first if the current one is full or old.
    ///
    /// # Errors
    /// A file cannot be written or created.
    pub fn write(&mut self, p: &Packet) -> std::io::Result<()> {
        self.rotate_if_due()?;
        self.current.write(p)?;
        self.packets += 1;
        Ok(())
    }

    /// The file being written (`stdout` for `-w -`), for messages.
    #[must_use]
    pub fn current_name(&self) -> String {
        self.files
            .last()
            .map_or_else(|| "stdout".to_owned(), |f| f.display().to_string())
    }

    /// Writes another packet of a flow already written (see `Capture::write_again`).
    ///
    /// # Errors
    /// A file cannot be written or created.
    pub fn write_again(&mut self, first: &Rc<Packet>, a: &Again) -> std::io::Result<()> {
        self.rotate_if_due()?;
        self.current.write_again(first, a)?;
        self.packets += 1;
        Ok(())
    }

    fn rotate_if_due(&mut self) -> std::io::Result<()> {
        if self.due()
            && let Some(base) = &self.base
        {
            self.current.flush()?;
            let next = name(base, self.files.len() as u32, self.rotate, unix_now());
            let (w, written) = open(Some(&next))?;
            self.current = Capture::new(w, self.classic, self.snaplen, &self.about)?;
            self.written = written;
            self.opened_at = Instant::now();
            self.files.push(next);
        }
        Ok(())
    }

    /// Flushes the current file.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.current.flush()
    }

    /// Removes what was written (the session could not start).
    pub fn discard(self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_tcpdump() {
        let c = Rotate {
            secs: None,
            bytes: Some(1_000_000),
        };
        assert_eq!(
            name(Path::new("/t/x.pcapng"), 0, c, 0),
            PathBuf::from("/t/x.pcapng")
        );
        assert_eq!(
            name(Path::new("/t/x.pcapng"), 2, c, 0),
            PathBuf::from("/t/x.pcapng2")
        );
        let g = Rotate {
            secs: Some(60),
            bytes: None,
        };
        // 2026-12-03 21:05:09 UTC.
        let t = 1_796_331_909;
        assert_eq!(
            name(Path::new("cap-%Y%m%d-%H%M%S.pcapng"), 3, g, t),
            PathBuf::from("cap-20261203-210509.pcapng")
        );
        assert_eq!(name(Path::new("cap"), 3, g, t), PathBuf::from("cap3"));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_790), (2026, 12, 3));
    }
}
