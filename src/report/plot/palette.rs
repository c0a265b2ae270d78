//! The report's colours: one per case (twenty that stay apart on a white page, the same in the table's
//! swatches and in every plot) and one per stage of the breakdown bars.

use plotters::style::RGBColor;

/// One colour per case, in case order: Okabe-Ito's colour-blind-safe seven first, then thirteen more picked
/// so that no two of the twenty are closer than 25 in CIELAB (ΔE*76, where about 2 is the least a person
/// can tell apart) and none is too light to see on white. A scenario of more cases reuses them from the top.
const CASE_COLOURS: [RGBColor; 20] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x00, 0x00), // black
    RGBColor(0x88, 0x22, 0x55), // wine
    RGBColor(0x33, 0x22, 0x88), // indigo
    RGBColor(0x99, 0x99, 0x33), // olive
    RGBColor(0xA5, 0x00, 0x26), // crimson
    RGBColor(0x7F, 0x7F, 0x7F), // grey
    RGBColor(0x65, 0x45, 0x22), // brown
    RGBColor(0x2C, 0xA0, 0x2C), // green
    RGBColor(0xFF, 0x33, 0x99), // rose
    RGBColor(0x94, 0x67, 0xBD), // lavender
    RGBColor(0x00, 0x00, 0xFF), // pure blue
    RGBColor(0xC2, 0xB2, 0x80), // sand
    RGBColor(0x00, 0xCC, 0xCC), // cyan
    RGBColor(0xCC, 0x00, 0xCC), // magenta
];

/// The colour of case number `i`.
pub fn case_colour(i: usize) -> RGBColor {
    CASE_COLOURS[i % CASE_COLOURS.len()]
}

/// A case's colour as CSS.
pub fn case_colour_css(i: usize) -> String {
    css(case_colour(i))
}

/// Where a breakdown row goes in a bar: stages in `Stage::ALL` order, then the time outside stages.
pub fn stage_order(stage: &str) -> usize {
    crate::stage::Stage::ALL
        .iter()
        .position(|s| s.name() == stage)
        .unwrap_or(crate::stage::STAGE_COUNT)
}

/// A stage's colour as CSS, for the legend under the bars.
pub fn stage_colour_css(stage: &str) -> String {
    css(stage_colour(stage))
}

/// The colour of a stage (or of the time outside stages) in the breakdown bars.
pub fn stage_colour(stage: &str) -> RGBColor {
    match stage {
        "connect" => RGBColor(0, 114, 178),
        "handshake" => RGBColor(86, 180, 233),
        "channel" => RGBColor(0, 158, 115),
        "declare" => RGBColor(153, 153, 51),
        "bind" => RGBColor(68, 170, 153),
        "acquire" => RGBColor(204, 121, 167),
        "options" => RGBColor(102, 153, 204),
        "route" => RGBColor(17, 119, 51),
        "encode" => RGBColor(230, 159, 0),
        "argsrepr" => RGBColor(221, 204, 119),
        "signals" => RGBColor(204, 102, 119),
        "send" => RGBColor(213, 94, 0),
        "confirm" => RGBColor(136, 34, 85),
        "release" => RGBColor(170, 68, 153),
        "close" => RGBColor(51, 34, 136),
        "result" => RGBColor(102, 17, 0),
        _ => RGBColor(170, 170, 170),
    }
}

fn css(RGBColor(r, g, b): RGBColor) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CIELAB (D65) of an sRGB colour.
    fn lab(RGBColor(r, g, b): RGBColor) -> [f64; 3] {
        let linear = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let (r, g, b) = (linear(r), linear(g), linear(b));
        let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
        let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
        let f = |t: f64| {
            if t > 0.008856 {
                t.cbrt()
            } else {
                7.787 * t + 16.0 / 116.0
            }
        };
        [
            116.0 * f(y) - 16.0,
            500.0 * (f(x) - f(y)),
            200.0 * (f(y) - f(z)),
        ]
    }

    fn delta_e(a: RGBColor, b: RGBColor) -> f64 {
        let (a, b) = (lab(a), lab(b));
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
    }

    #[test]
    fn twenty_cases_get_colours_a_reader_tells_apart_on_white() {
        for i in 0..20 {
            for j in i + 1..20 {
                let d = delta_e(case_colour(i), case_colour(j));
                assert!(
                    d >= 25.0,
                    "cases {i} and {j}: {} and {} are only {d:.1} apart",
                    case_colour_css(i),
                    case_colour_css(j)
                );
            }
            let lightness = lab(case_colour(i))[0];
            assert!(
                lightness <= 76.0,
                "case {i}'s {} is too light for a white page (L* {lightness:.0})",
                case_colour_css(i)
            );
        }
        // Sanity of the measure: a colour and a slightly lighter one are close.
        assert!(delta_e(RGBColor(0, 114, 178), RGBColor(0, 118, 182)) < 3.0);
    }
}
