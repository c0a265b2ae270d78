//! Flamegraph SVGs from folded stacks, and differential flamegraphs between two cases, rendered with inferno.

use super::folded::Folded;
use inferno::flamegraph::{self, Options};
use std::io;

/// Frames narrower than this many pixels are left out; small, so short stages (encode) stay visible.
const MIN_WIDTH_PX: f64 = 0.01;

/// How to draw a flamegraph.
#[derive(Debug, Clone, Default)]
pub struct SvgStyle {
    /// Image width in pixels (inferno's default when `None`).
    pub width: Option<usize>,
    /// A title replacing the default one.
    pub title: Option<String>,
    /// A flame chart (stacks in the order seen) rather than a flame graph (merged, sorted).
    pub flame_chart: bool,
}

fn options<'a>(title: &str, subtitle: &str, style: &SvgStyle) -> Options<'a> {
    let mut opt = Options::default();
    opt.title = style.title.clone().unwrap_or_else(|| title.to_string());
    opt.subtitle = Some(subtitle.to_string());
    opt.count_name = "ns".into();
    opt.min_width = MIN_WIDTH_PX;
    opt.image_width = style.width;
    opt.flame_chart = style.flame_chart;
    opt.deterministic = true;
    opt
}

/// An SVG flamegraph of `folded`.
pub fn render(
    folded: &Folded,
    title: &str,
    subtitle: &str,
    style: &SvgStyle,
) -> io::Result<Vec<u8>> {
    let text = folded.to_text();
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options(title, subtitle, style), text.lines(), &mut svg)?;
    Ok(svg)
}

/// Differential folded text (`stack before after`) of two profiles already normalised per publish.
pub fn differential(before: &Folded, after: &Folded) -> io::Result<String> {
    let mut out = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        before.to_text().as_bytes(),
        after.to_text().as_bytes(),
        &mut out,
    )?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A differential flamegraph: frame widths from `after`, each frame red where its inclusive time (the frame
/// and everything under it) grew against `before`, blue where it shrank, and its tooltip giving that change
/// and its self-time change as shares of `before`'s total.
pub fn render_diff(
    before: &Folded,
    after: &Folded,
    title: &str,
    subtitle: &str,
    style: &SvgStyle,
) -> io::Result<Vec<u8>> {
    let diff = differential(before, after)?;
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options(title, subtitle, style), diff.lines(), &mut svg)?;
    let svg = String::from_utf8_lossy(&svg);
    let changes = super::diff::frame_changes(before, after);
    Ok(super::diff::by_inclusive_change(&svg, &changes, before.total()).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Folded {
        Folded::parse("publish;connect 5000\npublish;encode 70\npublish;send 1200\npublish 30\n")
            .unwrap()
    }

    #[test]
    fn svg_is_well_formed_with_one_frame_per_stage() {
        let svg = render(&sample(), "t", "s", &SvgStyle::default()).unwrap();
        let text = String::from_utf8(svg).unwrap();
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(&text, options).expect("well-formed XML");
        let titles: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .filter_map(|n| n.text())
            .collect();
        for stage in ["connect", "encode", "send"] {
            let frames = titles
                .iter()
                .filter(|t| t.starts_with(&format!("{stage} (")))
                .count();
            assert_eq!(frames, 1, "{stage}: {titles:?}");
        }
        assert!(
            titles
                .iter()
                .any(|t| t.starts_with("publish (6,300 ns, 100.00%)")),
            "{titles:?}"
        );
    }

    #[test]
    fn a_case_against_itself_has_no_growth() {
        let diff = differential(&sample(), &sample()).unwrap();
        for line in diff.lines() {
            let f: Vec<&str> = line.rsplitn(3, ' ').collect();
            assert_eq!(f[0], f[1], "{line}");
        }
        assert_eq!(diff.lines().count(), 4);
    }

    #[test]
    fn growth_shows_in_the_diff() {
        let after = Folded::parse(
            "publish;connect 5000\npublish;encode 70\npublish;send 2400\npublish 30\n",
        )
        .unwrap();
        let diff = differential(&sample(), &after).unwrap();
        assert!(diff.contains("publish;send 1200 2400"), "{diff}");
        render_diff(&sample(), &after, "d", "s", &SvgStyle::default()).unwrap();
    }

    /// (title, fill) of every frame of an SVG.
    fn frames(svg: &[u8]) -> Vec<(String, String)> {
        let text = String::from_utf8(svg.to_vec()).unwrap();
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(&text, options).expect("well-formed XML");
        doc.descendants()
            .filter(|n| n.has_tag_name("g"))
            .filter_map(|g| {
                let title = g.children().find(|c| c.has_tag_name("title"))?.text()?;
                let fill = g
                    .children()
                    .find(|c| c.has_tag_name("rect"))?
                    .attribute("fill")?;
                Some((title.to_string(), fill.to_string()))
            })
            .collect()
    }

    #[test]
    fn a_diff_colours_and_titles_every_frame_by_its_inclusive_change() {
        // A new handler under the task's send: its self time is new, and so is the inclusive time of every
        // frame above it; the frames beside it did not change.
        let before = Folded::parse(
            "publish (h.py:1);apply_async (task.py:5);send_task (base.py:9);Producer.publish (k.py:2) 700\n\
             publish (h.py:1);apply_async (task.py:5) 300\n",
        )
        .unwrap();
        let after = Folded::parse(
            "publish (h.py:1);apply_async (task.py:5);send_task (base.py:9);Producer.publish (k.py:2) 700\n\
             publish (h.py:1);apply_async (task.py:5);send_task (base.py:9);Signal.send (s.py:3);<locals>.handler (shop/celery.py:25) 250\n\
             publish (h.py:1);apply_async (task.py:5) 300\n",
        )
        .unwrap();
        let svg = render_diff(&before, &after, "d", "s", &SvgStyle::default()).unwrap();
        let frames = frames(&svg);
        let find = |name: &str| {
            frames
                .iter()
                .find(|(t, _)| t.starts_with(&format!("{name} +")))
                .unwrap_or_else(|| panic!("{name}: {frames:?}"))
                .clone()
        };
        let (title, fill) = find("send_task (base.py:9)");
        assert_eq!(
            title,
            "send_task (base.py:9) +25.00% (inclusive +25.00%: 700ns → 950ns per publish; self +0.00%: 0ns → 0ns)"
        );
        assert_eq!(fill, "rgb(255,100,100)", "as red as the largest growth");
        let (title, _) = find("<locals>.handler (shop/celery.py:25)");
        assert!(
            title.contains("inclusive +25.00%") && title.contains("self +25.00%"),
            "{title}"
        );
        let (title, fill) = find("apply_async (task.py:5)");
        assert!(
            title.contains("inclusive +25.00%") && title.contains("self +0.00%"),
            "{title}"
        );
        assert_eq!(fill, "rgb(255,100,100)");
        let (title, fill) = find("Producer.publish (k.py:2)");
        assert!(title.contains("inclusive +0.00%"), "{title}");
        assert_eq!(fill, "rgb(250,250,250)", "unchanged");
        assert!(
            find("all")
                .0
                .starts_with("all +25.00% (inclusive +25.00%: 1.00µs → 1.25µs")
        );
    }
}
