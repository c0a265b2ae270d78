//! Checks of a single value that every part of a case uses: a name that can name a file, a count, a
//! duration.

use super::locator::ScenarioFile;
use crate::scenario::ScenarioError;
use std::time::Duration;
use toml::Spanned;

/// A scenario or case name, which names files in the run folder.
pub(super) fn check_file_name(
    file: &ScenarioFile,
    name: &Spanned<String>,
    what: &str,
) -> Result<(), ScenarioError> {
    let ok = !name.get_ref().is_empty()
        && name
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.get_ref().starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(file.error(
            name.span(),
            format!("{what} {:?} cannot name a file", name.get_ref()),
            Some("use letters, digits, '-', '_' and '.' (it names files in the run folder)".into()),
        ))
    }
}

/// A count `key` of at least `min` (0 or 1).
pub(super) fn positive(
    file: &ScenarioFile,
    key: &str,
    v: &Spanned<i64>,
    min: i64,
) -> Result<u64, ScenarioError> {
    if *v.get_ref() < min {
        let allowed = if min == 0 {
            "zero or more"
        } else {
            "1 or more"
        };
        return Err(file.error(
            v.span(),
            format!("`{key}` must be {allowed}, not {}", v.get_ref()),
            None,
        ));
    }
    Ok(*v.get_ref() as u64)
}

/// A duration `key`, written like "30s", longer than zero.
pub(super) fn parse_duration(
    file: &ScenarioFile,
    key: &str,
    v: &Spanned<String>,
) -> Result<Duration, ScenarioError> {
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(file.error(v.span(), format!("`{key}` must be longer than zero"), None)),
        Err(e) => Err(file.error(
            v.span(),
            format!("`{key}` = {:?} is not a duration: {e}", v.get_ref()),
            Some("write it like \"30s\", \"500ms\" or \"2m\"".into()),
        )),
    }
}
