//! Aligned human tables: columns as wide as their widest cell, numbers right-aligned.
//! [`Table`] holds its rows; [`Columns`] prints a table too long to hold, row by row, with
//! the widths measured in a pass over the rows before.
use std::fmt::Write as _;

/// A table whose columns are as wide as their widest cell.
pub struct Table {
    cols: Columns,
    rows: Vec<Vec<String>>,
}

impl Table {
    #[must_use]
    pub fn new(header: &[&str]) -> Self {
        Self {
            cols: Columns::new(header),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    #[must_use]
    pub fn render(&self) -> String {
        let mut cols = self.cols.clone();
        for r in &self.rows {
            cols.measure(r);
        }
        let mut s = cols.header();
        for r in &self.rows {
            s.push_str(&cols.line(r));
        }
        s
    }
}

/// The header and column widths of a table printed a row at a time: every row is
/// [`Columns::measure`]d first, then the header and each row are written.
#[derive(Clone)]
pub struct Columns {
    header: Vec<String>,
    /// Columns aligned right (numbers).
    right: Vec<bool>,
    widths: Vec<usize>,
}

impl Columns {
    #[must_use]
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            right: header
                .iter()
                .map(|h| {
                    matches!(*h, "PACKETS" | "BYTES" | "LEN" | "IFINDEX")
                        || h.ends_with(" US")
                        || h.ends_with(" MS")
                })
                .collect(),
            widths: header.iter().map(|h| h.len()).collect(),
        }
    }

    /// Widens the columns to fit a row.
    pub fn measure(&mut self, cells: &[String]) {
        for (w, c) in self.widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }

    /// The header line.
    #[must_use]
    pub fn header(&self) -> String {
        self.line(&self.header)
    }

    /// One row as a line (with its newline).
    #[must_use]
    pub fn line(&self, cells: &[String]) -> String {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            let width = self.widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                line.push_str("  ");
            }
            if self.right.get(i).copied().unwrap_or(false) {
                let _ = write!(line, "{c:>width$}");
            } else if i + 1 == cells.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<width$}");
            }
        }
        let mut line = line.trim_end().to_owned();
        line.push('\n');
        line
    }
}
