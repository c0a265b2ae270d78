//! What the command line's clap definition generates for the user's system: shell completion scripts
//! (`taskbench completions SHELL`) and man pages (`taskbench man [--out DIR]`), so they never drift from the
//! flags themselves.

use super::args::Cli;
use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// The completion script for `shell`.
pub(super) fn completions(shell: Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "taskbench", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// taskbench(1), the page of the whole command with its list of subcommands, in roff.
pub(super) fn man_page() -> anyhow::Result<String> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the man page")?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

/// Writes taskbench.1 and one page per subcommand (taskbench-run.1, ...) into `dir` (created if needed);
/// returns the files written.
pub(super) fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    // The same pages generate_to wrote: the command's own and each visible subcommand's.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let pages = std::iter::once(&cmd).chain(cmd.get_subcommands().filter(|s| !s.is_hide_set()));
    Ok(pages
        .map(|c| dir.join(clap_mangen::Man::new(c.clone()).get_filename()))
        .collect())
}
