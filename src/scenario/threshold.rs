//! Comparisons over a case's figures: the operator and quantity words that `taskbench compare --fail-if`
//! and a scenario's thresholds both read, so `p99 > +10%` and `p99 = "< 2ms"` parse the same way; and the
//! thresholds themselves (`[thresholds]`, a case's `thresholds`), checked at the end of each case.

named_enum! {
    /// A comparison operator, named by its symbol.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub enum Op {
        #[serde(rename = "<")]
        Lt => "<",
        #[serde(rename = "<=")]
        Le => "<=",
        #[serde(rename = ">")]
        Gt => ">",
        #[serde(rename = ">=")]
        Ge => ">=",
        #[serde(rename = "==")]
        Eq => "==",
    }
}

impl Op {
    /// Splits a leading operator off `text` (after leading spaces); `None` when there is none.
    pub fn split(text: &str) -> Option<(Op, &str)> {
        let t = text.trim_start();
        // The longest operator that starts `t`, so `<=` is not read as `<` followed by `=`.
        Op::ALL
            .into_iter()
            .filter(|op| t.starts_with(op.name()))
            .max_by_key(|op| op.name().len())
            .map(|op| (op, t[op.name().len()..].trim()))
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
}

/// What a quantity measures, which decides how its number is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A latency: a duration such as `2ms`, `850us`, `1.5s` (a bare number is nanoseconds).
    Duration,
    /// A plain number (publishes per second, a count); `_` and `,` may group digits.
    Number,
    /// A size in bytes such as `512KiB`, `2MiB`, `1GB` (a bare number is bytes).
    Bytes,
}

/// A quantity that is not of its kind; the message says how to write one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("{0:?} is not a duration (write it like 2ms, 850us, 1.5s)")]
    NotADuration(String),
    #[error("{0:?} is not a size (write it like 512KiB, 2MiB, 1GB)")]
    NotASize(String),
}

/// Reads `text` as a quantity of `kind`, in nanoseconds for durations. The error says what was expected.
pub fn quantity(text: &str, kind: Kind) -> Result<f64, QuantityError> {
    let t = text.trim();
    let plain: String = t.chars().filter(|c| !matches!(c, '_' | ',')).collect();
    if let Ok(v) = plain.parse::<f64>()
        && v.is_finite()
    {
        return Ok(v);
    }
    match kind {
        Kind::Number => Err(QuantityError::NotANumber(t.to_string())),
        Kind::Bytes => {
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (number, unit) = t.split_at(split);
            let scale: f64 = match unit.trim() {
                "B" => 1.0,
                "KB" | "kB" => 1e3,
                "MB" => 1e6,
                "GB" => 1e9,
                "KiB" => 1024.0,
                "MiB" => 1024.0 * 1024.0,
                "GiB" => 1024.0 * 1024.0 * 1024.0,
                _ => return Err(QuantityError::NotASize(t.to_string())),
            };
            number
                .parse::<f64>()
                .map(|v| v * scale)
                .map_err(|_| QuantityError::NotASize(t.to_string()))
        }
        Kind::Duration => {
            let not_a_duration = || QuantityError::NotADuration(t.to_string());
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (number, unit) = t.split_at(split);
            let scale = match unit.trim() {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                _ => return Err(not_a_duration()),
            };
            number
                .parse::<f64>()
                .map(|v| v * scale)
                .map_err(|_| not_a_duration())
        }
    }
}

named_enum! {
    /// A figure of a finished case that a threshold bounds, named by its key in a `[thresholds]` table and
    /// in summary.json. The order is the order thresholds are listed in.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Metric {
        P50 => "p50",
        P90 => "p90",
        P99 => "p99",
        P999 => "p999",
        Max => "max",
        Throughput => "throughput",
        Errors => "errors",
        /// AMQP flow control: how long the broker's memory or disk alarm blocked publishing (facts).
        Blocked => "blocked",
        /// Python clients: the share of the harnesses' time inside the publish call (facts), 0 to 1.
        HarnessBusy => "harness_busy",
        /// The largest resident-memory growth per 10,000 publishes among the case's processes (bytes).
        RssGrowthPer10k => "rss_growth_per_10k",
        /// CPU time per publish of taskbench and the case's harnesses together.
        CpuPerPublish => "cpu_per_publish",
        /// `taskbench search`: the highest rate found and confirmed under the budget (publishes per second).
        /// A run has none: `compare` and `--fail-if` read it, a scenario's thresholds cannot set it.
        MaxRate => "max_rate",
    }
}

impl Metric {
    /// A latency quantile (0..=1), or `None` for throughput and errors (max is the 1.0 quantile).
    pub const fn quantile(self) -> Option<f64> {
        match self {
            Metric::P50 => Some(0.5),
            Metric::P90 => Some(0.9),
            Metric::P99 => Some(0.99),
            Metric::P999 => Some(0.999),
            Metric::Max => Some(1.0),
            Metric::Throughput
            | Metric::Errors
            | Metric::Blocked
            | Metric::HarnessBusy
            | Metric::RssGrowthPer10k
            | Metric::CpuPerPublish
            | Metric::MaxRate => None,
        }
    }

    /// A figure of this metric for people: `1.20ms`, `35,000`, `93.4%`.
    pub fn show(self, value: f64) -> String {
        match (self, self.kind()) {
            (Metric::HarnessBusy, _) => format!("{:.1}%", 100.0 * value),
            (_, Kind::Bytes) => crate::human::human_bytes_signed(value),
            (_, Kind::Duration) => crate::human::human_ns(value.max(0.0).round() as u64),
            (_, Kind::Number) => crate::human::human_count(value.max(0.0).round() as u64),
        }
    }

    /// How its values are written: a duration for latencies and the blocked time, else a number.
    pub const fn kind(self) -> Kind {
        match (self.quantile(), self) {
            (Some(_), _) | (None, Metric::Blocked | Metric::CpuPerPublish) => Kind::Duration,
            (None, Metric::RssGrowthPer10k) => Kind::Bytes,
            _ => Kind::Number,
        }
    }
}

/// One budget of a case, e.g. `p99 < 2ms`: the case fails when its figure does not satisfy it.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub op: Op,
    /// In ns for latencies, publishes per second for throughput, a count for errors.
    pub value: f64,
    /// As written in the scenario, e.g. `< 2ms`.
    pub text: String,
}

/// Why the value of a threshold key cannot be read, as the scenario's error says it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("threshold `{metric}` = {text:?} has no comparison operator")]
    NoOperator { metric: Metric, text: String },
    #[error("threshold `{metric}` = {text:?} is relative; a scenario's thresholds are absolute")]
    Relative { metric: Metric, text: String },
    #[error("threshold `{metric}` = {text:?}: {quantity}")]
    Quantity {
        metric: Metric,
        text: String,
        quantity: QuantityError,
    },
}

/// Why a whole threshold expression (`p99 < 5ms`) cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdExpressionError {
    #[error("{text:?}: unknown metric {word:?}")]
    UnknownMetric { text: String, word: String },
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
}

impl Threshold {
    /// Reads the value of a threshold key (`"< 2ms"`); the error says what is expected.
    pub fn parse(metric: Metric, text: &str) -> Result<Threshold, ThresholdError> {
        let (op, value) = Op::split(text).ok_or_else(|| ThresholdError::NoOperator {
            metric,
            text: text.to_string(),
        })?;
        if value.ends_with('%') {
            return Err(ThresholdError::Relative {
                metric,
                text: text.to_string(),
            });
        }
        let value =
            quantity(value, metric.kind()).map_err(|quantity| ThresholdError::Quantity {
                metric,
                text: text.to_string(),
                quantity,
            })?;
        Ok(Threshold {
            metric,
            op,
            value,
            text: text.trim().to_string(),
        })
    }

    /// Reads a whole expression, `METRIC OP VALUE` (`p99 < 5ms`), as `taskbench search --budget` takes it.
    pub fn parse_expression(text: &str) -> Result<Threshold, ThresholdExpressionError> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(t.len());
        let (word, rest) = t.split_at(split);
        let word = if word == "p99.9" { "p999" } else { word };
        let metric =
            Metric::from_name(word).ok_or_else(|| ThresholdExpressionError::UnknownMetric {
                text: t.to_string(),
                word: word.to_string(),
            })?;
        Ok(Threshold::parse(metric, rest)?)
    }

    /// Whether `actual` satisfies the threshold; a figure the case does not have (no publish succeeded)
    /// satisfies none.
    pub fn passes(&self, actual: Option<f64>) -> bool {
        actual.is_some_and(|a| self.op.holds(a, self.value))
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
        assert_eq!(quantity("2MiB", Kind::Bytes), Ok(2.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("1.5 KB", Kind::Bytes), Ok(1500.0));
        assert_eq!(quantity("4096", Kind::Bytes), Ok(4096.0));
        assert_eq!(
            quantity("2 parsecs", Kind::Bytes).unwrap_err().to_string(),
            "\"2 parsecs\" is not a size (write it like 512KiB, 2MiB, 1GB)"
        );
    }

    #[test]
    fn operators_serialise_as_their_symbol() {
        for op in Op::ALL {
            assert_eq!(serde_json::to_value(op).unwrap(), op.name());
        }
    }

    #[test]
    fn thresholds_read_absolute_bounds() {
        let t = Threshold::parse(Metric::P99, "< 2ms").unwrap();
        assert_eq!((t.op, t.value, t.text.as_str()), (Op::Lt, 2e6, "< 2ms"));
        assert!(t.passes(Some(1.9e6)) && !t.passes(Some(2e6)) && !t.passes(None));
        let t = Threshold::parse(Metric::Errors, "== 0").unwrap();
        assert!(t.passes(Some(0.0)) && !t.passes(Some(1.0)));
        let t = Threshold::parse(Metric::Throughput, ">= 10_000").unwrap();
        assert!(t.passes(Some(1e4)));
        let e = Threshold::parse(Metric::P99, "2ms").unwrap_err();
        assert_eq!(
            e.to_string(),
            "threshold `p99` = \"2ms\" has no comparison operator"
        );
        let e = Threshold::parse(Metric::P99, "< +10%").unwrap_err();
        assert!(matches!(e, ThresholdError::Relative { .. }), "{e}");
        assert!(e.to_string().contains("absolute"), "{e}");
        let t = Threshold::parse_expression(" p99.9 <= 5ms").unwrap();
        assert_eq!((t.metric, t.op, t.value), (Metric::P999, Op::Le, 5e6));
        let e = Threshold::parse_expression("p98 < 5ms").unwrap_err();
        assert_eq!(e.to_string(), "\"p98 < 5ms\": unknown metric \"p98\"");
        let e = Threshold::parse(Metric::Throughput, "> 1ms").unwrap_err();
        assert_eq!(
            e.to_string(),
            "threshold `throughput` = \"> 1ms\": \"1ms\" is not a number"
        );
    }
}
