//! What a differential flamegraph says about each frame: the change in its inclusive time (the frame and
//! everything it called) and in its self time between two profiles, and inferno's SVG recoloured and
//! retitled by the inclusive change, so the whole path down to what got slower is red, not only the leaf.

use super::folded::Folded;
use crate::human::human_ns;
use std::collections::{BTreeMap, BTreeSet};

/// One call path's time (per publish, in ns) in the profile before and the profile after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameChange {
    /// The frame and everything under it.
    pub before_inclusive: u64,
    pub after_inclusive: u64,
    /// The frame alone (stacks that end at it).
    pub before_self: u64,
    pub after_self: u64,
}

impl FrameChange {
    pub fn inclusive_delta(&self) -> i64 {
        self.after_inclusive as i64 - self.before_inclusive as i64
    }

    pub fn self_delta(&self) -> i64 {
        self.after_self as i64 - self.before_self as i64
    }
}

/// Every call path of either profile (frames joined by `;`; `""` is the whole profile) with its times in
/// both.
pub fn frame_changes(before: &Folded, after: &Folded) -> BTreeMap<String, FrameChange> {
    let mut out: BTreeMap<String, FrameChange> = BTreeMap::new();
    for (profile, is_after) in [(before, false), (after, true)] {
        for (stack, n) in profile.stacks() {
            let mut ends = vec![0];
            ends.extend(stack.match_indices(';').map(|(i, _)| i));
            ends.push(stack.len());
            ends.dedup();
            let last = ends.len() - 1;
            for (k, end) in ends.into_iter().enumerate() {
                let change = out.entry(stack[..end].to_string()).or_default();
                let (inclusive, own) = if is_after {
                    (&mut change.after_inclusive, &mut change.after_self)
                } else {
                    (&mut change.before_inclusive, &mut change.before_self)
                };
                *inclusive += n;
                if k == last && end > 0 {
                    *own += n;
                }
            }
        }
    }
    out
}

/// The frames two profiles have in common, by name; markers such as `(harness)` are left out. Empty means a
/// diff of the two would compare nothing with nothing.
pub fn frames_in_common<'a>(a: &'a Folded, b: &Folded) -> BTreeSet<&'a str> {
    let names = |f: &Folded| -> BTreeSet<String> {
        f.stacks()
            .flat_map(|(s, _)| s.split(';'))
            .filter(|f| !f.starts_with('('))
            .map(str::to_string)
            .collect()
    };
    let theirs = names(b);
    a.stacks()
        .flat_map(|(s, _)| s.split(';'))
        .filter(|f| theirs.contains(*f))
        .collect()
}

/// `+1.23%` of `total`.
fn percent_of(delta: i64, total: u64) -> String {
    if total == 0 {
        return "-".into();
    }
    format!("{:+.2}%", delta as f64 * 100.0 / total as f64)
}

/// A frame's label: its name and the change in its inclusive time, as a share of the base profile's total.
pub fn frame_label(name: &str, change: &FrameChange, base_total: u64) -> String {
    format!(
        "{name} {}",
        percent_of(change.inclusive_delta(), base_total)
    )
}

/// A frame's tooltip: its label, then in parentheses the change in its inclusive and in its self time, as
/// shares of the base profile's total and as ns per publish. (inferno's script labels a zoomed frame with
/// its tooltip up to the last parenthesis, which is then [`frame_label`].)
pub fn frame_title(name: &str, change: &FrameChange, base_total: u64) -> String {
    format!(
        "{} (inclusive {}: {} → {} per publish; self {}: {} → {})",
        frame_label(name, change, base_total),
        percent_of(change.inclusive_delta(), base_total),
        human_ns(change.before_inclusive),
        human_ns(change.after_inclusive),
        percent_of(change.self_delta(), base_total),
        human_ns(change.before_self),
        human_ns(change.after_self),
    )
}

/// inferno's differential scale: red for growth, blue for shrinking, paler the smaller against `max`.
fn colour(delta: i64, max: i64) -> String {
    let max = max.max(1);
    let c = |v: i64| 100 + 150 * (max - v.abs()) / max;
    match delta.signum() {
        0 => "rgb(250,250,250)".into(),
        1 => format!("rgb(255,{0},{0})", c(delta)),
        _ => format!("rgb({0},{0},255)", c(delta)),
    }
}

/// One drawn frame of inferno's SVG: where its title text and fill value are, and where it sits.
struct DrawnFrame {
    title: std::ops::Range<usize>,
    fill: std::ops::Range<usize>,
    /// The label drawn in the frame.
    text: std::ops::Range<usize>,
    /// Of the frames' area, in percent.
    width_pct: f64,
    name: String,
    y: i64,
    x: u64,
    width: u64,
}

/// Where the value of `attr="..."` is in `tag`.
fn attr(tag: &str, attr: &str) -> Option<std::ops::Range<usize>> {
    let key = format!(" {attr}=\"");
    let start = tag.find(&key)? + key.len();
    let end = start + tag[start..].find('"')?;
    Some(start..end)
}

fn drawn_frames(svg: &str) -> Vec<DrawnFrame> {
    const OPEN: &str = "<g><title>";
    let mut frames = Vec::new();
    let mut from = 0;
    while let Some(at) = svg[from..].find(OPEN) {
        let title_start = from + at + OPEN.len();
        from = title_start;
        let Some(title_len) = svg[title_start..].find("</title>") else {
            break;
        };
        let title = title_start..title_start + title_len;
        let Some(rect_at) = svg[title.end..].find("<rect ") else {
            break;
        };
        let rect_start = title.end + rect_at;
        let Some(rect_len) = svg[rect_start..].find("/>") else {
            break;
        };
        let rect = &svg[rect_start..rect_start + rect_len];
        let number = |name: &str| attr(rect, name).and_then(|r| rect[r].parse::<f64>().ok());
        let (Some(fill), Some(y), Some(x), Some(width)) = (
            attr(rect, "fill"),
            number("y"),
            number("fg:x"),
            number("fg:w"),
        ) else {
            continue;
        };
        let rect_end = rect_start + rect_len;
        let Some(text) = svg[rect_end..].find("<text ").and_then(|at| {
            let start = rect_end + at + svg[rect_end + at..].find('>')? + 1;
            Some(start..start + svg[start..].find("</text>")?)
        }) else {
            continue;
        };
        let width_pct = attr(rect, "width")
            .and_then(|r| rect[r].trim_end_matches('%').parse::<f64>().ok())
            .unwrap_or(0.0);
        let title_text = unescape(&svg[title.clone()]);
        let name = title_text
            .rsplit_once(" (")
            .map_or(title_text.as_str(), |(name, _)| name)
            .to_string();
        frames.push(DrawnFrame {
            title,
            fill: rect_start + fill.start..rect_start + fill.end,
            text,
            width_pct,
            name,
            y: y as i64,
            x: x as u64,
            width: width as u64,
        });
        from = rect_end;
    }
    frames
}

/// inferno's default font size and width (in font sizes) of a character, which its labels are cut to.
const FONT_SIZE: f64 = 12.0;
const FONT_WIDTH: f64 = 0.59;

/// `label` cut to the characters that fit in a frame `width_pct` wide, as inferno cuts names: `..` at the
/// end of a cut one, nothing when not even three characters fit.
fn fitted(label: &str, width_pct: f64, image_width: f64) -> String {
    let fits = (width_pct / (100.0 * FONT_SIZE * FONT_WIDTH / image_width)).trunc() as usize;
    if fits < 3 {
        String::new()
    } else if label.chars().count() < fits {
        label.to_string()
    } else {
        label.chars().take(fits - 2).chain("..".chars()).collect()
    }
}

/// The width of the picture (the first `width` attribute, the outer `<svg>`'s).
fn image_width(svg: &str) -> f64 {
    attr(svg, "width")
        .and_then(|r| svg[r].parse().ok())
        .unwrap_or(1200.0)
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The call path of every drawn frame (`""` for the root), from the frames' depths (their rows, deepest
/// highest in the picture) and the frame below each that spans it.
fn call_paths(frames: &[DrawnFrame]) -> Vec<String> {
    let mut rows: Vec<i64> = frames.iter().map(|f| f.y).collect();
    rows.sort_unstable_by(|a, b| b.cmp(a));
    rows.dedup();
    let depth = |f: &DrawnFrame| rows.iter().position(|y| *y == f.y).unwrap_or(0);
    let mut order: Vec<usize> = (0..frames.len()).collect();
    order.sort_by_key(|&i| (depth(&frames[i]), frames[i].x));
    let mut paths = vec![String::new(); frames.len()];
    // The frames of the row below, by start: (x, width, path).
    let mut below: Vec<(u64, u64, String)> = Vec::new();
    let mut row: Vec<(u64, u64, String)> = Vec::new();
    let mut current = 0;
    for i in order {
        let f = &frames[i];
        let d = depth(f);
        if d != current {
            below = std::mem::take(&mut row);
            current = d;
        }
        let path = if d == 0 {
            String::new()
        } else {
            let k = below.partition_point(|(x, _, _)| *x <= f.x);
            match k.checked_sub(1).map(|k| &below[k]) {
                Some((_, _, p)) if p.is_empty() => f.name.clone(),
                Some((_, _, p)) => format!("{p};{}", f.name),
                None => f.name.clone(),
            }
        };
        row.push((f.x, f.width, path.clone()));
        paths[i] = path;
    }
    paths
}

/// inferno's differential SVG with every frame's fill, label and tooltip replaced: coloured and labelled by
/// the change in its inclusive time, its tooltip adding its self-time change (see [`frame_title`]). `base_total` is the
/// base profile's total per publish, what the percentages are of.
pub fn by_inclusive_change(
    svg: &str,
    changes: &BTreeMap<String, FrameChange>,
    base_total: u64,
) -> String {
    let frames = drawn_frames(svg);
    let width = image_width(svg);
    let paths = call_paths(&frames);
    let found: Vec<Option<&FrameChange>> = paths.iter().map(|p| changes.get(p)).collect();
    let max = found
        .iter()
        .flatten()
        .map(|c| c.inclusive_delta().abs())
        .max()
        .unwrap_or(1);
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for ((frame, change), path) in frames.iter().zip(&found).zip(&paths) {
        let Some(change) = change else { continue };
        let name = if path.is_empty() { "all" } else { &frame.name };
        edits.push((
            frame.title.clone(),
            escape(&frame_title(name, change, base_total)),
        ));
        edits.push((frame.fill.clone(), colour(change.inclusive_delta(), max)));
        let label = fitted(
            &frame_label(name, change, base_total),
            frame.width_pct,
            width,
        );
        edits.push((frame.text.clone(), escape(&label)));
    }
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = String::with_capacity(svg.len() + edits.len() * 64);
    let mut at = 0;
    for (range, text) in edits {
        out.push_str(&svg[at..range.start]);
        out.push_str(&text);
        at = range.end;
    }
    out.push_str(&svg[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(text: &str) -> Folded {
        Folded::parse(text).unwrap()
    }

    #[test]
    fn inclusive_change_counts_everything_under_a_frame() {
        // A new handler under send_task: the leaf is new, every frame above it grew by as much.
        let before = folded("apply;send_task;publish 700\napply;send_task 100\napply 200\n");
        let after = folded(
            "apply;send_task;publish 700\napply;send_task;signal;handler 300\napply;send_task 101\napply 200\n",
        );
        let changes = frame_changes(&before, &after);
        let at = |p: &str| changes[p];
        assert_eq!(at("").inclusive_delta(), 301);
        assert_eq!(at("apply").inclusive_delta(), 301);
        assert_eq!(at("apply").self_delta(), 0);
        assert_eq!(at("apply;send_task").inclusive_delta(), 301);
        assert_eq!(at("apply;send_task").self_delta(), 1);
        assert_eq!(at("apply;send_task;signal").inclusive_delta(), 300);
        assert_eq!(at("apply;send_task;signal").self_delta(), 0);
        assert_eq!(at("apply;send_task;publish").inclusive_delta(), 0);
        assert_eq!(
            frame_title("send_task", &at("apply;send_task"), before.total()),
            "send_task +30.10% (inclusive +30.10%: 800ns → 1.10µs per publish; self +0.10%: 100ns → 101ns)"
        );
    }

    #[test]
    fn frames_gone_from_after_show_as_shrunk() {
        let changes = frame_changes(&folded("a;b 10\na 5\n"), &folded("a 5\n"));
        assert_eq!(changes["a;b"].inclusive_delta(), -10);
        assert_eq!(changes["a"].inclusive_delta(), -10);
        assert_eq!(changes["a"].self_delta(), 0);
    }

    #[test]
    fn common_frames_leave_markers_out() {
        let python = folded("(harness) 5\npublish (h.py:1);Task.apply_async (t.py:2) 10\n");
        let spans = folded("publish;send 10\n(harness) 1\n");
        assert!(frames_in_common(&python, &spans).is_empty());
        let other = folded("publish (h.py:1);Task.apply_async (t.py:2);x 3\n");
        assert_eq!(
            frames_in_common(&python, &other)
                .into_iter()
                .collect::<Vec<_>>(),
            ["Task.apply_async (t.py:2)", "publish (h.py:1)"]
        );
    }

    #[test]
    fn labels_are_cut_to_fit_as_inferno_cuts_them() {
        // 1200 px wide: a character is 7.08 px, 0.59 % of the picture.
        assert_eq!(fitted("send +25.00%", 10.0, 1200.0), "send +25.00%");
        assert_eq!(fitted("send +25.00%", 3.0, 1200.0), "sen..");
        assert_eq!(fitted("send +25.00%", 1.0, 1200.0), "");
    }

    #[test]
    fn colours_scale_with_the_change() {
        assert_eq!(colour(10, 10), "rgb(255,100,100)");
        assert_eq!(colour(5, 10), "rgb(255,175,175)");
        assert_eq!(colour(-10, 10), "rgb(100,100,255)");
        assert_eq!(colour(0, 10), "rgb(250,250,250)");
    }
}
