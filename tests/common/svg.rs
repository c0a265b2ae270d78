//! Reading report.html's plots: the inline SVG of a plot, its plot area, its texts and its case lines
//! (plotters' SVG, parsed with roxmltree).

/// The inline SVG of report.html's plot `id`.
pub fn plot_svg(html: &str, id: &str) -> String {
    let open = format!("id=\"{id}\">");
    let start = html
        .find(&format!("{open}<svg"))
        .unwrap_or_else(|| panic!("no {id} plot"))
        + open.len();
    let end = start + html[start..].find("</svg>").unwrap() + "</svg>".len();
    html[start..end].to_string()
}

/// A rectangle in an SVG's pixels.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

impl Bounds {
    pub fn contains(&self, (x, y): (f64, f64)) -> bool {
        (self.left..=self.right).contains(&x) && (self.top..=self.bottom).contains(&y)
    }
}

pub fn attr(n: roxmltree::Node, name: &str) -> f64 {
    n.attribute(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in {n:?}"))
}

/// The plot area: what the mesh covers. plotters draws the grid (and an error's red cross, left out)
/// as `<line>`s, the axes, the data and the legend's marks as other elements.
pub fn plot_area(doc: &roxmltree::Document) -> Bounds {
    let mut b = Bounds {
        left: f64::MAX,
        top: f64::MAX,
        right: f64::MIN,
        bottom: f64::MIN,
    };
    for n in doc.descendants().filter(|n| n.has_tag_name("line")) {
        if n.attribute("stroke") == Some("#FF0000") {
            continue;
        }
        for (x, y) in [("x1", "y1"), ("x2", "y2")] {
            b.left = b.left.min(attr(n, x));
            b.right = b.right.max(attr(n, x));
            b.top = b.top.min(attr(n, y));
            b.bottom = b.bottom.max(attr(n, y));
        }
    }
    assert!(b.left < b.right && b.top < b.bottom, "no mesh: {b:?}");
    b
}

/// Each `<text>`'s anchor and content.
pub fn texts(doc: &roxmltree::Document) -> Vec<((f64, f64), String)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            let text = n.text().unwrap_or_default().trim().to_string();
            ((attr(n, "x"), attr(n, "y")), text)
        })
        .collect()
}

/// The points of each line drawn in `colour` (`#RRGGBB`) at 2 px inside `area`: a case's line.
pub fn case_lines(doc: &roxmltree::Document, area: Bounds, colour: &str) -> Vec<Vec<(f64, f64)>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| {
            n.attribute("stroke")
                .is_some_and(|s| s.eq_ignore_ascii_case(colour))
                && n.attribute("stroke-width") == Some("2")
        })
        .map(|n| {
            n.attribute("points")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.split_once(','))
                .map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap()))
                .collect::<Vec<(f64, f64)>>()
        })
        .filter(|points| points.iter().all(|p| area.contains(*p)))
        .collect()
}

/// Each case's swatch colour in report.html's table, by case name.
pub fn table_colours(html: &str, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|name| {
            let row = &html[html
                .find(&format!("data-case=\"{name}\""))
                .unwrap_or_else(|| panic!("{name} not in the table"))..];
            let at = row.find("background: ").unwrap() + "background: ".len();
            row[at..at + 7].to_string()
        })
        .collect()
}
