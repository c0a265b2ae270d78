//! HdrHistogram percentile-distribution text (`.hgrm`), values in microseconds: the format HdrHistogram's
//! plotter and `HistogramLogProcessor` read.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Nanoseconds per output unit (microseconds).
const SCALE: f64 = 1000.0;
/// Quantile steps per halving of the distance to 100%, as HdrHistogram prints by default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The percentile distribution of `h` (recorded in ns), printed in µs.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h)
    );
    out
}

/// HdrHistogram's sub-bucket count: the smallest power of two holding 2 x 10^significant-figures.
fn sub_buckets(h: &Histogram<u64>) -> u64 {
    (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_reads_like_hdrhistogram() {
        let mut h = crate::record::new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap();
        }
        let text = percentile_distribution(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       1.000 0.000000000000          1           1.00"
        );
        let last_value = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        assert_eq!(*last_value, "   10002.431 1.000000000000      10000");
        assert_eq!(
            lines[lines.len() - 2],
            "#[Max     =    10002.431, Total count    =        10000]"
        );
        assert_eq!(
            lines[lines.len() - 1],
            "#[Buckets =           30, SubBuckets     =         2048]"
        );
        // Every data line: value, quantile, cumulative count, all increasing.
        let mut prev = (0.0f64, 0.0f64, 0u64);
        for l in &lines[2..lines.len() - 3] {
            let f: Vec<&str> = l.split_whitespace().collect();
            let row = (
                f[0].parse::<f64>().unwrap(),
                f[1].parse::<f64>().unwrap(),
                f[2].parse::<u64>().unwrap(),
            );
            assert!(row.0 >= prev.0 && row.1 >= prev.1 && row.2 >= prev.2, "{l}");
            prev = row;
        }
    }
}
