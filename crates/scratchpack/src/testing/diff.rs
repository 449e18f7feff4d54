//! A line diff of expected against actual text, for test failure reports:
//! `-` lines are expected only, `+` lines actual only, as in a unified diff.

/// Texts longer than this many lines are shown whole instead of diffed, to
/// keep the quadratic table small.
const MAX_LINES: usize = 2000;

/// The diff of `expected` against `actual`, one line per output line, each
/// prefixed with `-`, `+` or a space.
pub fn lines(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        for l in &a {
            push(&mut out, '-', l);
        }
        for l in &b {
            push(&mut out, '+', l);
        }
        return out;
    }
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            push(&mut out, ' ', a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals before additions, as unified diffs show a change.
            push(&mut out, '-', a[i]);
            i += 1;
        } else {
            push(&mut out, '+', b[j]);
            j += 1;
        }
    }
    // A difference only in the final newline is invisible line by line.
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out.push_str(if actual.ends_with('\n') {
            "\\ expected no newline at the end\n"
        } else {
            "\\ actual has no newline at the end\n"
        });
    }
    out
}

fn push(out: &mut String, sign: char, line: &str) {
    out.push(sign);
    out.push_str(line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_changed_added_and_removed_lines() {
        let d = lines("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(d, " a\n-b\n+B\n c\n+d\n");
    }

    #[test]
    fn equal_texts_have_no_signed_lines() {
        let d = lines("x\ny\n", "x\ny\n");
        assert!(!d.lines().any(|l| l.starts_with(['-', '+'])), "{d}");
    }

    #[test]
    fn a_missing_final_newline_is_named() {
        let d = lines("x\n", "x");
        assert!(d.contains("actual has no newline"), "{d}");
    }
}
