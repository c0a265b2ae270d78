//! Comparisons over a case's figures: the operator and quantity words that `taskbench compare --fail-if`
//! and a scenario's thresholds both read, so `p99 > +10%` and `p99 = "< 2ms"` parse the same way.

use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    /// Splits a leading operator off `text` (after leading spaces); `None` when there is none.
    pub fn split(text: &str) -> Option<(Op, &str)> {
        let t = text.trim_start();
        // Two-character operators first, so `<=` is not read as `<` followed by `=`.
        for (word, op) in [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if let Some(rest) = t.strip_prefix(word) {
                return Some((op, rest.trim()));
            }
        }
        None
    }

    /// Whether `left op right` holds.
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Eq => left == right,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// What a quantity measures, which decides how its number is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A latency: a duration such as `2ms`, `850us`, `1.5s` (a bare number is nanoseconds).
    Duration,
    /// A plain number (publishes per second, a count); `_` and `,` may group digits.
    Number,
}

/// Reads `text` as a quantity of `kind`, in nanoseconds for durations. The error says what was expected.
pub fn quantity(text: &str, kind: Kind) -> Result<f64, String> {
    let t = text.trim();
    let plain: String = t.chars().filter(|c| !matches!(c, '_' | ',')).collect();
    if let Ok(v) = plain.parse::<f64>()
        && v.is_finite()
    {
        return Ok(v);
    }
    match kind {
        Kind::Number => Err(format!("{t:?} is not a number")),
        Kind::Duration => {
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (number, unit) = t.split_at(split);
            let scale = match unit.trim() {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                _ => {
                    return Err(format!(
                        "{t:?} is not a duration (write it like 2ms, 850us, 1.5s)"
                    ));
                }
            };
            number
                .parse::<f64>()
                .map(|v| v * scale)
                .map_err(|_| format!("{t:?} is not a duration (write it like 2ms, 850us, 1.5s)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_and_quantities() {
        assert_eq!(Op::split(" <= 2ms"), Some((Op::Le, "2ms")));
        assert_eq!(Op::split("==0"), Some((Op::Eq, "0")));
        assert_eq!(Op::split("> +10%"), Some((Op::Gt, "+10%")));
        assert_eq!(Op::split("~ 3"), None);
        assert_eq!(quantity("2ms", Kind::Duration), Ok(2e6));
        assert_eq!(quantity("850us", Kind::Duration), Ok(850e3));
        assert_eq!(quantity("1.5 s", Kind::Duration), Ok(1.5e9));
        assert_eq!(quantity("1500", Kind::Duration), Ok(1500.0));
        assert_eq!(quantity("10_000", Kind::Number), Ok(1e4));
        assert!(quantity("2 parsecs", Kind::Duration).is_err());
        assert!(quantity("2ms", Kind::Number).is_err());
    }
}
