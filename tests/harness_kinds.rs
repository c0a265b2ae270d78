//! The Python harness names error kinds and stages by string, and taskbench reads a name it does not know
//! as `send` (an error) or drops it (a stage): these tests read the harness's source and check every name it
//! can send against taskbench's own lists, so a misspelt or renamed kind fails here instead of being
//! counted under another one.

use taskbench::error::ErrorKind;
use taskbench::stage::Stage;

const HARNESS: &str = include_str!("../src/backend/python/harness.py");

/// The lines of the indented block that follows the line `header` (a `class` or `def`), up to the next line
/// that is not indented.
fn block_after(header: &str) -> Vec<&'static str> {
    let mut lines = HARNESS.lines().skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "harness.py has no line {header:?}");
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// The string a line such as `    NAME = "value"` assigns, if it is one.
fn assigned_string(line: &str) -> Option<&str> {
    let (name, value) = line.trim().split_once(" = ")?;
    let value = value.strip_prefix('"')?.strip_suffix('"')?;
    name.chars()
        .all(|c| c.is_ascii_uppercase() || c == '_')
        .then_some(value)
}

/// The first argument of a call whose text starts right after its `(`: up to the first comma outside
/// brackets and strings.
fn first_argument(call: &str) -> &str {
    let (mut depth, mut quote) = (0i32, None);
    for (i, c) in call.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') if depth == 0 => return &call[..i],
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => return &call[..i],
            _ => {}
        }
    }
    call
}

/// Whether `expression` can only be a kind of the `ErrorKind` class: one of its names, a call of `kind_of`,
/// or a choice (`A if COND else B`) between such.
fn is_a_harness_kind(expression: &str) -> bool {
    let e = expression.trim();
    if let Some((when_true, rest)) = e.split_once(" if ")
        && let Some((_, when_false)) = rest.rsplit_once(" else ")
    {
        return is_a_harness_kind(when_true) && is_a_harness_kind(when_false);
    }
    e.starts_with("ErrorKind.") || e.starts_with("kind_of(")
}

#[test]
fn every_error_kind_the_harness_names_is_one_of_taskbench() {
    let kinds: Vec<&str> = block_after("class ErrorKind:")
        .into_iter()
        .filter_map(assigned_string)
        .collect();
    assert!(
        kinds.len() >= 2,
        "harness.py's ErrorKind names too few kinds to have been read: {kinds:?}"
    );
    for kind in kinds {
        assert!(
            ErrorKind::from_name(kind).is_some(),
            "harness.py reports the error kind {kind:?}, which taskbench does not have (it would count as \
             `send`); kinds: {}",
            ErrorKind::NAMES.join(", ")
        );
    }
}

#[test]
fn the_harness_reports_kinds_only_through_its_error_kind_class() {
    // `kind_of` answers an exception's kind for an `e` line; each answer is a name of the class.
    let returns: Vec<&str> = block_after("def kind_of(exc):")
        .into_iter()
        .filter_map(|l| l.trim().strip_prefix("return "))
        .collect();
    assert!(!returns.is_empty(), "kind_of has no return in harness.py");
    for value in returns {
        assert!(
            value.starts_with("ErrorKind."),
            "kind_of returns {value:?}, not a name of harness.py's ErrorKind"
        );
    }
    // An `e` line carries what kind_of answered.
    let error_lines: Vec<&str> = HARNESS
        .match_indices("f\"e {")
        .map(|(i, _)| &HARNESS[i..])
        .collect();
    assert!(!error_lines.is_empty(), "harness.py writes no `e` line");
    for line in error_lines {
        assert!(
            line.starts_with("f\"e {kind_of("),
            "an `e` line's kind is not kind_of's: {}",
            line.lines().next().unwrap_or_default()
        );
    }
    // `fail(kind, message)` writes the `f` line; its kind is a name of the class too.
    let calls: Vec<&str> = HARNESS
        .match_indices("fail(")
        .filter(|(i, _)| !HARNESS[..*i].ends_with("def "))
        .map(|(i, m)| first_argument(&HARNESS[i + m.len()..]))
        .collect();
    assert!(!calls.is_empty(), "harness.py never calls fail");
    for kind in calls {
        assert!(
            is_a_harness_kind(kind),
            "fail() is given the kind {kind:?}, not a name of harness.py's ErrorKind"
        );
    }
}

#[test]
fn every_stage_the_harness_times_is_one_of_taskbench() {
    // STAGE_FUNCTIONS rows: ("stage", "module", "Class", "attribute").
    let rows: Vec<&str> = HARNESS
        .lines()
        .skip_while(|l| !l.starts_with("STAGE_FUNCTIONS = ["))
        .skip(1)
        .take_while(|l| *l != "]")
        .collect();
    assert!(!rows.is_empty(), "harness.py has no STAGE_FUNCTIONS rows");
    for row in rows {
        let stage = row
            .trim()
            .strip_prefix("(\"")
            .and_then(|r| r.split_once('"'))
            .map(|(stage, _)| stage);
        let Some(stage) = stage else {
            panic!("a STAGE_FUNCTIONS row that is not (\"stage\", ...): {row:?}");
        };
        assert!(
            Stage::from_name(stage).is_some(),
            "harness.py times the stage {stage:?}, which taskbench does not have (its time would be \
             dropped); stages: {}",
            Stage::NAMES.join(", ")
        );
    }
}
