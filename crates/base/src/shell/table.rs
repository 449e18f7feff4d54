//! The closing tables commands print on stdout: columns padded to their
//! widest cell, numbers right-aligned, and byte sizes in binary units.

/// Renders `rows` (the first is the header); columns from `right_from` on
/// are right-aligned.
pub fn render(rows: &[Vec<String>], right_from: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c >= right_from {
                    format!("{cell:>w$}", w = widths[c])
                } else {
                    format!("{cell:w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `212.7 KiB`, `3 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_aligns() {
        let rows = vec![
            vec!["NAME".into(), "SIZE".into()],
            vec!["hello".into(), "3 B".into()],
        ];
        assert_eq!(render(&rows, 1), "NAME   SIZE\nhello   3 B\n");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(217_805), "212.7 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
    }
}
