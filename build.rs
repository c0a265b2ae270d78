//! Records the git commit taskbench is built from (TASKBENCH_GIT_COMMIT, empty outside a git checkout), so
//! every summary.json says which code measured it, and asks Cargo to re-run this script only when that
//! commit can have changed: a second build of an unchanged tree must be a no-op.
//!
//! Cargo re-runs a build script on every build when a `rerun-if-changed` path does not exist, so only
//! files that exist are named: the checkout's own HEAD (`git rev-parse --git-dir`; in a worktree `.git` is a
//! file and HEAD lives under the main repository), and the current branch's ref in the common git dir
//! (`git rev-parse --git-common-dir`): its loose file `refs/heads/<branch>`, or, when the branch is only in
//! `packed-refs`, that file and the folder the loose file will appear in at the next commit. Outside git (a
//! source tarball, `cargo install`) it names build.rs itself, so the script runs once.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by Cargo"));
    let commit = git(&manifest_dir, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_default();
    println!("cargo:rustc-env=TASKBENCH_GIT_COMMIT={commit}");
    let watched = files_that_move_head(&manifest_dir);
    if watched.is_empty() {
        println!("cargo:rerun-if-changed=build.rs");
    }
    for path in watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The existing files (or folders) whose change can move HEAD to another commit; empty outside git.
fn files_that_move_head(manifest_dir: &Path) -> Vec<PathBuf> {
    let Some(git_dir) = git(manifest_dir, &["rev-parse", "--git-dir"]) else {
        return Vec::new();
    };
    let Some(common_dir) = git(manifest_dir, &["rev-parse", "--git-common-dir"]) else {
        return Vec::new();
    };
    // Relative answers are relative to the directory git ran in; joining keeps an absolute one as it is.
    let (git_dir, common_dir) = (manifest_dir.join(git_dir), manifest_dir.join(common_dir));
    let mut watched = vec![git_dir.join("HEAD")];
    // On a branch, the branch's ref moves at each commit; detached, HEAD itself holds the commit.
    if let Some(branch_ref) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        let reftable = common_dir.join("reftable");
        if reftable.is_dir() {
            watched.push(reftable);
        } else {
            let loose = common_dir.join(&branch_ref);
            if loose.is_file() {
                watched.push(loose);
            } else {
                // Packed: a commit writes the loose file, so watch the folder it will appear in.
                let refs = common_dir.join("refs");
                let mut folders = loose
                    .ancestors()
                    .skip(1)
                    .take_while(|dir| dir.starts_with(&refs));
                watched.extend(folders.find(|dir| dir.is_dir()).map(Path::to_path_buf));
                watched.push(common_dir.join("packed-refs"));
            }
        }
    }
    watched.retain(|path| path.exists());
    watched
}

/// `git ARGS` run in `dir`: its trimmed output, or `None` when git is missing, fails or prints nothing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
