//! A line diff for schema renderings: hunks of changed lines with a little context, each
//! headed by the statement it is in, so a changed column reads as part of its table.

/// Unchanged lines shown around each change.
const CONTEXT: usize = 2;

/// Above this many cells (old lines × new lines between the common start and end) the diff
/// gives up on aligning lines and shows the whole middle as removed, then added: the table
/// would take more memory than such a diff is worth reading.
const MAX_CELLS: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

impl Op<'_> {
    fn changed(self) -> bool {
        !matches!(self, Op::Same(_))
    }
}

/// The differences between `old` and `new`, line by line: `- ` lines only in `old`, `+ `
/// lines only in `new`, `  ` context lines, and an `@@` line opening each hunk with the
/// statement it is in when that is not shown; every line indented by four spaces and ended
/// by a newline, for embedding in a message. Empty when the texts are equal.
pub(crate) fn lines(old: &str, new: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let ops = align(&old, &new);
    let changed: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].changed()).collect();
    let mut out = String::new();
    let mut rest = changed.as_slice();
    while let Some(&first) = rest.first() {
        // A hunk runs until the gap to the next change is wider than both contexts.
        let mut last = first;
        let mut taken = 0;
        for &i in rest {
            if i > last + 2 * CONTEXT + 1 {
                break;
            }
            last = i;
            taken += 1;
        }
        rest = &rest[taken..];
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT + 1).min(ops.len());
        out.push_str("    @@");
        if let Some(statement) = enclosing(&ops[..=first], start) {
            out.push(' ');
            out.push_str(statement);
        }
        out.push('\n');
        for op in &ops[start..end] {
            let (mark, line) = match *op {
                Op::Same(l) => (' ', l),
                Op::Removed(l) => ('-', l),
                Op::Added(l) => ('+', l),
            };
            out.push_str(format!("    {mark} {line}").trim_end());
            out.push('\n');
        }
    }
    out
}

/// The statement the first change of a hunk belongs to (the nearest line at or before it
/// that starts one: not indented, not a comment, not a closing parenthesis), unless the hunk
/// shows it anyway because it is at or after `shown`.
fn enclosing<'a>(upto_change: &[Op<'a>], shown: usize) -> Option<&'a str> {
    let (index, line) = upto_change
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, op)| match *op {
            Op::Same(l) | Op::Removed(l) | Op::Added(l)
                if !l.is_empty()
                    && !l.starts_with(char::is_whitespace)
                    && !l.starts_with("--")
                    && !l.starts_with(')') =>
            {
                Some((i, l))
            }
            _ => None,
        })?;
    (index < shown).then_some(line)
}

/// Lines in order, each kept, removed or added: the common start and end as they are, the
/// middle aligned on a longest common subsequence.
fn align<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (a, b) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut ops: Vec<Op<'a>> = old[..prefix].iter().map(|l| Op::Same(l)).collect();
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        ops.extend(a.iter().map(|l| Op::Removed(l)));
        ops.extend(b.iter().map(|l| Op::Added(l)));
    } else {
        ops.extend(common_subsequence(a, b));
    }
    ops.extend(old[old.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

fn common_subsequence<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let width = b.len() + 1;
    // lcs[i * width + j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(a.len() + b.len());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push(Op::Same(a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j == b.len()
            || (i < a.len() && lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])
        {
            ops.push(Op::Removed(a[i]));
            i += 1;
        } else {
            ops.push(Op::Added(b[j]));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(lines("a\nb\n", "a\nb\n"), "");
        assert_eq!(lines("", ""), "");
    }

    #[test]
    fn a_column_left_behind_is_shown_inside_its_table() {
        let old = "-- tables\n\nCREATE TABLE public.t (\n    id integer,\n    a text,\n    \
                   b text,\n    c text\n);\n";
        let new = "-- tables\n\nCREATE TABLE public.t (\n    id integer,\n    a text,\n    \
                   b text,\n    c text,\n    extra text\n);\n";
        let expected = [
            "    @@ CREATE TABLE public.t (",
            "          a text,",
            "          b text,",
            "    -     c text",
            "    +     c text,",
            "    +     extra text",
            "      );",
        ];
        assert_eq!(lines(old, new), expected.join("\n") + "\n");
    }

    #[test]
    fn distant_changes_make_separate_hunks_and_close_ones_merge() {
        let old: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let new = old
            .replace("line 2\n", "line two\n")
            .replace("line 4\n", "line four\n")
            .replace("line 15\n", "");
        let diff = lines(&old, &new);
        assert_eq!(diff.matches("@@").count(), 2, "{diff}");
        assert!(diff.contains("    - line 2\n") && diff.contains("    + line four\n"));
        assert!(
            diff.contains("    - line 15\n") && !diff.contains("line 10"),
            "{diff}"
        );
    }

    #[test]
    fn huge_rewrites_fall_back_to_removed_then_added() {
        let old: String = (0..2100).map(|i| format!("a{i}\n")).collect();
        let new: String = (0..2100).map(|i| format!("b{i}\n")).collect();
        let diff = lines(&old, &new);
        assert_eq!(diff.matches("\n    - ").count(), 2100);
        assert_eq!(diff.matches("\n    + ").count(), 2100);
    }
}
