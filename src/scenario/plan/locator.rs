//! Where a scenario's errors point: the scenario file ([`ScenarioFile`]) turns a byte span into
//! file:line:column, and a case's locator ([`CaseLocator`]) also names the case in the message.

use crate::scenario::ScenarioError;
use std::ops::Range;

/// The scenario file being planned, its name and text: turns a byte span of it into a file:line:column error.
pub(super) struct ScenarioFile<'a> {
    /// What errors call the file (its path as given).
    pub(super) name: &'a str,
    text: &'a str,
}

impl<'a> ScenarioFile<'a> {
    /// The scenario file called `name` in errors, whose contents are `text`.
    pub(super) fn new(name: &'a str, text: &'a str) -> Self {
        ScenarioFile { name, text }
    }

    /// The locator of the case called `name` in this file.
    pub(super) fn case<'b>(&'b self, name: &'b str) -> CaseLocator<'b> {
        CaseLocator { file: self, name }
    }

    /// An error at `span`, about the scenario as a whole or a value that reads the same wherever it is set.
    pub(super) fn error(
        &self,
        span: Range<usize>,
        message: String,
        hint: Option<String>,
    ) -> ScenarioError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ScenarioError {
            file: self.name.to_string(),
            line,
            column,
            message,
            hint,
        }
    }
}

/// One `[[case]]` of the scenario file: errors at a key of that case, their message led by the case's name
/// (`case "NAME": ...`).
pub(super) struct CaseLocator<'a> {
    /// The file the case is in, for errors about a value that do not name the case (a count or duration
    /// reads the same in a case as in the scenario's defaults).
    pub(super) file: &'a ScenarioFile<'a>,
    /// The case's `name`.
    name: &'a str,
}

impl CaseLocator<'_> {
    /// An error at `span`, a key of this case, whose message names the case.
    pub(super) fn error(
        &self,
        span: Range<usize>,
        message: String,
        hint: Option<String>,
    ) -> ScenarioError {
        self.file
            .error(span, format!("case {:?}: {message}", self.name), hint)
    }
}
