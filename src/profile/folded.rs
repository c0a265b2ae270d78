//! Folded stacks (`frame;frame;frame count` per line): the format flamegraph.pl, inferno and speedscope read.

use crate::record::CaseResult;
use std::collections::BTreeMap;

/// A line of folded text that is not `frame;frame count`, by its number (from 1).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FoldedError {
    #[error("line {line}: expected `frame;frame count`, got {text:?}")]
    NoCount { line: usize, text: String },
    #[error("line {line}: {count:?} is not a whole number")]
    BadCount { line: usize, count: String },
}

/// Counts per stack, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    stacks: BTreeMap<String, u64>,
}

impl Folded {
    /// Adds `count` to `stack` (frames joined by `;`).
    pub fn add(&mut self, stack: &str, count: u64) {
        if count > 0 {
            *self.stacks.entry(stack.to_string()).or_default() += count;
        }
    }

    /// Adds every stack of `other`.
    pub fn add_all(&mut self, other: &Folded) {
        for (stack, count) in &other.stacks {
            self.add(stack, *count);
        }
    }

    /// Parses folded text; an error names the first bad line.
    pub fn parse(text: &str) -> Result<Folded, FoldedError> {
        let mut folded = Folded::default();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let (stack, count) = line.rsplit_once(' ').ok_or_else(|| FoldedError::NoCount {
                line: i + 1,
                text: line.to_string(),
            })?;
            let count: u64 = count.parse().map_err(|_| FoldedError::BadCount {
                line: i + 1,
                count: count.to_string(),
            })?;
            folded.add(stack, count);
        }
        Ok(folded)
    }

    /// The stacks as folded text, one `stack count` line each, sorted by stack.
    pub fn to_text(&self) -> String {
        self.stacks
            .iter()
            .map(|(s, n)| format!("{s} {n}\n"))
            .collect()
    }

    /// The sum of all counts.
    pub fn total(&self) -> u64 {
        self.stacks.values().sum()
    }

    /// Every stack (frames joined by `;`) with its count, sorted by stack.
    pub fn stacks(&self) -> impl Iterator<Item = (&str, u64)> {
        self.stacks.iter().map(|(s, n)| (s.as_str(), *n))
    }

    /// The count of one stack.
    pub fn get(&self, stack: &str) -> u64 {
        self.stacks.get(stack).copied().unwrap_or(0)
    }

    /// Every count multiplied by `factor` (rounded); stacks that round to zero are dropped.
    pub fn scaled(&self, factor: f64) -> Folded {
        let mut out = Folded::default();
        for (s, n) in &self.stacks {
            out.add(s, (*n as f64 * factor).round() as u64);
        }
        out
    }

    /// Wall time per stage, summed over the case: `publish;<stage>` for each stage, and `publish` for the
    /// time of a publish outside every stage (its self time).
    pub fn wall(result: &CaseResult) -> Folded {
        let mut folded = Folded::default();
        for s in &result.stages {
            folded.add(&format!("publish;{}", s.stage.name()), s.total_ns);
        }
        folded.add("publish", result.outside_stages_ns());
        folded
    }

    /// tracing-flame's output (`all-threads; publish; send 1234` per span exit) merged into stacks. Only
    /// stacks under a `publish` span are kept: a client library's spans count where they run inside a
    /// publish; its background work (lapin's `io_loop` thread) is not one publish's and is left out.
    pub fn from_tracing_flame(text: &str) -> Folded {
        let mut folded = Folded::default();
        for line in text.lines() {
            let Some((stack, count)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            let frames: Vec<&str> = stack.split("; ").skip(1).collect();
            if frames.first() == Some(&"publish") {
                folded.add(&frames.join(";"), count);
            }
        }
        folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_folded_text() {
        let f = Folded::parse("publish;send 10\npublish 5\npublish;send 2\n").unwrap();
        assert_eq!(f.to_text(), "publish 5\npublish;send 12\n");
        assert_eq!(f.total(), 17);
        assert_eq!(
            Folded::parse("publish;send ten").unwrap_err().to_string(),
            "line 1: \"ten\" is not a whole number"
        );
        assert_eq!(
            Folded::parse("publish 1\n\nnospace")
                .unwrap_err()
                .to_string(),
            "line 3: expected `frame;frame count`, got \"nospace\""
        );
    }

    #[test]
    fn reads_tracing_flame_output() {
        let f = Folded::from_tracing_flame(
            "all-threads; publish 40\nall-threads; publish; send 100\nall-threads; publish; send 50\n",
        );
        assert_eq!(f.to_text(), "publish 40\npublish;send 150\n");
        assert_eq!(f.scaled(10.0).get("publish;send"), 1500);
    }
}
