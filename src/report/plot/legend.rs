//! A plot's legend in its own strip right of the plot area, so it never covers a line: one row per case (in
//! columns when they do not fit the height), its width taken from the longest name.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// How an entry is marked: a case's line (with a dot), or the red cross of an interval with errors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mark {
    Line,
    Cross,
}

/// One row of a legend.
#[derive(Clone, Debug)]
pub struct Entry {
    pub label: String,
    pub colour: RGBColor,
    pub mark: Mark,
}

/// The y of the first row: level with the top of the plot area under a chart's caption.
const TOP: i32 = 44;
const ROW: i32 = 18;
const SWATCH: i32 = 22;
/// Width of one character at the legend's font size, a little more than the average of sans-serif faces.
const CHAR_PX: f64 = 6.0;
/// Names longer than this are cut (the table lists them whole).
const MAX_CHARS: usize = 40;

fn shown(label: &str) -> String {
    if label.chars().count() <= MAX_CHARS {
        label.to_string()
    } else {
        let cut: String = label.chars().take(MAX_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// Rows per column and column width (px) of a legend of `entries` in a strip `height` px tall.
fn layout(entries: &[Entry], height: u32) -> (usize, i32) {
    let rows = ((height as i32 - TOP - 8) / ROW).max(1) as usize;
    let chars = entries
        .iter()
        .map(|e| shown(&e.label).chars().count())
        .max()
        .unwrap_or(0);
    let column = SWATCH + 10 + (chars as f64 * CHAR_PX).ceil() as i32 + 18;
    (rows, column)
}

/// Splits `root` into the plot area (left) and a legend strip (right), draws the legend of `entries` in the
/// strip and returns the plot area. Without entries the whole of `root` is the plot area.
pub fn beside<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    entries: &[Entry],
) -> anyhow::Result<DrawingArea<SVGBackend<'a>, Shift>> {
    if entries.is_empty() {
        return Ok(root.clone());
    }
    let (width, height) = root.dim_in_pixel();
    let (rows, column) = layout(entries, height);
    let columns = entries.len().div_ceil(rows) as i32;
    let strip = (columns * column + 8).min(width as i32 / 2);
    let (plot, legend) = root.split_horizontally(width as i32 - strip);
    let font = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (k, e) in entries.iter().enumerate() {
        let x = (k / rows) as i32 * column;
        let y = TOP + (k % rows) as i32 * ROW;
        let e_colour = e.colour;
        match e.mark {
            Mark::Line => {
                legend.draw(&PathElement::new(
                    vec![(x, y), (x + SWATCH, y)],
                    e_colour.stroke_width(2),
                ))?;
                legend.draw(&Circle::new((x + SWATCH / 2, y), 3, e_colour.filled()))?;
            }
            Mark::Cross => legend.draw(&Cross::new(
                (x + SWATCH / 2, y),
                5,
                e_colour.stroke_width(2),
            ))?,
        }
        legend.draw(&Text::new(
            shown(&e.label),
            (x + SWATCH + 10, y),
            font.clone(),
        ))?;
    }
    Ok(plot)
}

/// The legend of cases `(index, name)`, in their colours.
pub fn of_cases<'n>(cases: impl IntoIterator<Item = (usize, &'n str)>) -> Vec<Entry> {
    cases
        .into_iter()
        .map(|(k, name)| Entry {
            label: name.to_string(),
            colour: super::palette::case_colour(k),
            mark: Mark::Line,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize, name: &str) -> Vec<Entry> {
        (0..n)
            .map(|k| Entry {
                label: format!("{name}-{k}"),
                colour: BLACK,
                mark: Mark::Line,
            })
            .collect()
    }

    #[test]
    fn a_legend_too_tall_for_the_plot_takes_more_columns_and_long_names_are_cut() {
        let (rows, column) = layout(&entries(14, "case"), 340);
        assert!(
            rows >= 14,
            "14 cases fit one column of a 340 px plot: {rows}"
        );
        assert!(column < 150, "short names, narrow column: {column}");
        let (rows, _) = layout(&entries(40, "case"), 340);
        assert!(40usize.div_ceil(rows) >= 3, "40 rows take columns");
        let long = "x".repeat(90);
        assert_eq!(shown(&long).chars().count(), MAX_CHARS);
        assert!(shown(&long).ends_with('…'));
    }
}
