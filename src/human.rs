//! Numbers for people: durations and sizes in the unit that fits, counts with thousands separators.

/// A duration in nanoseconds in human units with three significant digits: `850ns`, `12.3µs`, `1.25ms`.
pub fn human_ns(ns: u64) -> String {
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    // Pick the unit after rounding to three digits, so 999,999 ns reads 1.00ms, not 1000µs.
    let units = [(1e3, "µs"), (1e6, "ms"), (1e9, "s")];
    let mut pick = units[0];
    for unit in units {
        if ns as f64 / unit.0 >= 0.9995 {
            pick = unit;
        }
    }
    let value = ns as f64 / pick.0;
    let decimals = if value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}{}", pick.1)
}

/// A rate (per second): whole and grouped from 100 up (`1,667`), with one decimal below (`19.4`), so the
/// steps of a slow path's search do not all read the same.
pub fn human_rate(per_s: f64) -> String {
    if per_s >= 99.95 {
        human_count(per_s.round() as u64)
    } else {
        format!("{:.1}", per_s.max(0.0))
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn human_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A size in bytes in binary units with three significant digits, signed when negative (a memory growth
/// can be): `512B`, `1.50KiB`, `-12.3MiB`.
pub fn human_bytes_signed(bytes: f64) -> String {
    let sign = if bytes < 0.0 { "-" } else { "" };
    let b = bytes.abs();
    if b < 1024.0 {
        return format!("{sign}{b:.0}B");
    }
    let units = [
        (1024.0, "KiB"),
        (1024.0 * 1024.0, "MiB"),
        (1024.0 * 1024.0 * 1024.0, "GiB"),
    ];
    let mut pick = units[0];
    for unit in units {
        if b / unit.0 >= 0.9995 {
            pick = unit;
        }
    }
    let value = b / pick.0;
    let decimals = if value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    format!("{sign}{value:.decimals$}{}", pick.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_ns(850), "850ns");
        assert_eq!(human_ns(12_345), "12.3µs");
        assert_eq!(human_ns(1_254_000), "1.25ms");
        assert_eq!(human_ns(250_000_000), "250ms");
        assert_eq!(human_ns(3_000_000_000), "3.00s");
        assert_eq!(human_ns(999_999), "1.00ms");
        assert_eq!(human_ns(99_960), "100µs");
        assert_eq!(human_ns(9_999), "10.0µs");
        assert_eq!(human_count(0), "0");
        assert_eq!(human_count(1234567), "1,234,567");
        assert_eq!(human_count(100), "100");
        assert_eq!(human_rate(1666.67), "1,667");
        assert_eq!(human_rate(19.375), "19.4");
        assert_eq!(human_rate(99.96), "100");
        assert_eq!(human_bytes_signed(512.0), "512B");
        assert_eq!(human_bytes_signed(1536.0), "1.50KiB");
        assert_eq!(human_bytes_signed(-12.3 * 1024.0 * 1024.0), "-12.3MiB");
    }
}
