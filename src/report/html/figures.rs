//! A note split into its wording and its figures (a number with its unit: `91%`, `1.06ms`, `1,000`,
//! `3.11.7`), so that notes worded alike are said once, with each case's figures beside them.

/// One piece of a note: words, or a figure.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Words(String),
    Figure(String),
}

/// Whether the character before a digit lets it start a figure: a digit inside a word or a name (`p99`,
/// `v4`, `shard-2`, `%2f`, `10.0.0.1`'s later parts) does not.
fn starts_figure(before: Option<char>) -> bool {
    before.is_none_or(|b| !(b.is_alphanumeric() || "-_./:%@#".contains(b)))
}

/// `text` as words and figures, in order.
pub fn pieces(text: &str) -> Vec<Piece> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut words = String::new();
    let mut i = 0;
    while i < chars.len() {
        if !(chars[i].is_ascii_digit() && starts_figure(i.checked_sub(1).map(|b| chars[b]))) {
            words.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i;
        // Digits, with `.` or `,` between digits (`1,000`, `1.06`, `3.11.7`), then a unit (`ms`, `%`).
        while j < chars.len()
            && (chars[j].is_ascii_digit()
                || ((chars[j] == '.' || chars[j] == ',')
                    && chars.get(j + 1).is_some_and(char::is_ascii_digit)))
        {
            j += 1;
        }
        while j < chars.len() && (chars[j].is_alphabetic() || chars[j] == '%') {
            j += 1;
        }
        if !words.is_empty() {
            out.push(Piece::Words(std::mem::take(&mut words)));
        }
        out.push(Piece::Figure(chars[i..j].iter().collect()));
        i = j;
    }
    if !words.is_empty() {
        out.push(Piece::Words(words));
    }
    out
}

/// The wording of `pieces` with each figure as a blank: two notes with the same wording differ only in
/// their figures.
pub fn wording(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Words(w) => w.as_str(),
            Piece::Figure(_) => "\u{0}",
        })
        .collect()
}

/// The figures of `pieces`, in order.
pub fn figures(pieces: &[Piece]) -> Vec<&str> {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Figure(f) => Some(f.as_str()),
            Piece::Words(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_numbers_with_their_units_and_names_keep_their_digits() {
        let note = "open loop at 1,000/s: started late by p50 1.06ms, p99 945µs (pid 616) on 10.0.0.1:5672/%2f, 91% busy";
        assert_eq!(
            figures(&pieces(note)),
            ["1,000", "1.06ms", "945µs", "616", "10.0.0.1", "91%"]
        );
        let other = "open loop at 2,000/s: started late by p50 8ms, p99 1.2s (pid 9) on 10.0.0.1:5672/%2f, 5% busy";
        assert_eq!(wording(&pieces(note)), wording(&pieces(other)));
        assert_ne!(
            wording(&pieces("12.0 timed calls per publish")),
            wording(&pieces("12.0 timed calls per second"))
        );
        assert_eq!(
            pieces("client celery: Celery 5.7.0."),
            [
                Piece::Words("client celery: Celery ".into()),
                Piece::Figure("5.7.0".into()),
                Piece::Words(".".into()),
            ]
        );
    }
}
