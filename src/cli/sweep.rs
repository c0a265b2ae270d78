//! `run --sweep concurrency=1,2,4`: reads the levels, and turns the scenario into one closed-loop run of
//! each selected case per level (the scenario loaded again with the level's concurrency, each case renamed
//! `<case>-c<N>`), refusing an open-loop case. The results become sweep.json in `report::sweep`.

use crate::report::sweep::{SweepSlot, level_name};
use crate::scenario::{self, Overrides, Scenario};
use std::path::Path;

/// The levels of `--sweep concurrency=...`, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SweepLevels(pub(super) Vec<usize>);

const EXAMPLE: &str = "e.g. --sweep concurrency=1,2,4,8,16";

/// Parses `concurrency=1,2,4,8,16`: at least two distinct levels of 1 or more.
pub(super) fn parse_sweep(s: &str) -> Result<SweepLevels, String> {
    let Some((param, levels)) = s.split_once('=') else {
        return Err(format!(
            "{s:?} is not a sweep: write PARAMETER=LEVELS, {EXAMPLE}"
        ));
    };
    if param.trim() != "concurrency" {
        return Err(format!(
            "{:?} cannot be swept: only concurrency can ({EXAMPLE})",
            param.trim()
        ));
    }
    let mut out = Vec::new();
    for level in levels.split(',').map(str::trim) {
        match level.parse::<usize>() {
            Ok(0) => {
                return Err(format!(
                    "concurrency level 0 in {s:?}: each level is a number of publishers, 1 or more"
                ));
            }
            Ok(n) if out.contains(&n) => {
                return Err(format!("concurrency level {n} is given twice in {s:?}"));
            }
            Ok(n) => out.push(n),
            Err(_) => {
                return Err(format!(
                    "{level:?} in {s:?} is not a concurrency: give whole numbers of publishers \
                     separated by commas, {EXAMPLE}"
                ));
            }
        }
    }
    if out.len() < 2 {
        return Err(format!(
            "{s:?} has one level: a sweep needs two or more ({EXAMPLE})"
        ));
    }
    Ok(SweepLevels(out))
}

/// The scenario at `path` with each case of `names` (all when empty) once per level, the levels of a case
/// together, and which case and level each run is. Refuses an open-loop case.
pub(super) fn expand(
    path: &Path,
    overrides: &Overrides,
    names: &[String],
    levels: &SweepLevels,
) -> anyhow::Result<(Scenario, Vec<SweepSlot>)> {
    let mut base: Option<Scenario> = None;
    let mut per_level = Vec::new();
    for &n in &levels.0 {
        let overrides = Overrides {
            concurrency: Some(n),
            ..overrides.clone()
        };
        let mut scenario = scenario::load_with(path, &overrides)?;
        scenario.select(names)?;
        if let Some(open) = scenario.cases.iter().find(|c| c.rate.is_some()) {
            anyhow::bail!(
                "case {:?} is an open loop (`rate` in {}): a concurrency sweep runs closed loops; remove its \
                 `rate`, or leave the case out with --case",
                open.name,
                path.display()
            );
        }
        per_level.push((n, std::mem::take(&mut scenario.cases)));
        base.get_or_insert(scenario);
    }
    let mut expanded = base.expect("a sweep has two levels or more");
    let names: Vec<String> = per_level[0].1.iter().map(|c| c.name.clone()).collect();
    let mut plan = Vec::new();
    for i in 0..names.len() {
        for (n, cases) in &per_level {
            let mut case = cases[i].clone();
            plan.push(SweepSlot {
                case: case.name.clone(),
                concurrency: *n,
            });
            case.name = level_name(&case.name, *n);
            if names.contains(&case.name) {
                anyhow::bail!(
                    "the sweep names its runs <case>-c<N>, and {:?} is already a case's name in {}; rename \
                     that case",
                    case.name,
                    path.display()
                );
            }
            expanded.cases.push(case);
        }
    }
    Ok((expanded, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_levels_in_order() {
        assert_eq!(
            parse_sweep("concurrency=1,2,4,8,16").unwrap(),
            SweepLevels(vec![1, 2, 4, 8, 16])
        );
        assert_eq!(
            parse_sweep("concurrency = 4, 1").unwrap(),
            SweepLevels(vec![4, 1])
        );
    }

    #[test]
    fn refuses_bad_sweeps_with_what_to_write() {
        for (input, says) in [
            ("foo", "is not a sweep: write PARAMETER=LEVELS"),
            ("rate=1,2", "\"rate\" cannot be swept: only concurrency"),
            ("concurrency=0,1", "level 0"),
            (
                "concurrency=1,x",
                "\"x\" in \"concurrency=1,x\" is not a concurrency",
            ),
            ("concurrency=1,-2", "is not a concurrency"),
            ("concurrency=", "is not a concurrency"),
            ("concurrency=2,2", "level 2 is given twice"),
            ("concurrency=4", "has one level"),
        ] {
            let e = parse_sweep(input).unwrap_err();
            assert!(e.contains(says), "{input}: {e}");
        }
    }
}
