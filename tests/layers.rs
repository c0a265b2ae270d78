//! The crate's modules form layers that import downward only (ARCHITECTURE.md draws them). This test reads
//! every `crate::<module>` reference in `src/` outside `#[cfg(test)]` code, grouped ones
//! (`crate::{a::X, b::{c, d}}`) included, and fails when a module reaches up (or sideways within the
//! bottom layer), or when a new top-level module has not been given a layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level module -> the modules it uses, each with the first file that does.
type Graph = BTreeMap<String, BTreeMap<String, PathBuf>>;

/// Top-level modules, bottom layer first. A module may use only modules on layers below its own.
const LAYERS: &[&[&str]] = &[
    // The shared words: import nothing of the crate.
    &[
        "catalog",
        "endpoint",
        "error",
        "facts",
        "host",
        "human",
        "message",
        "resources",
        "settle",
        "stage",
    ],
    &["scenario"],
    &["record"],
    &["engine"],
    &["sink"],
    &["wire"],
    &["backend"],
    &["summary"],
    &["profile"],
    &["run"],
    &["report"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file under `src/` belongs to (`src/backend/amqp/mod.rs` -> `backend`).
fn top_module(src: &Path, file: &Path) -> String {
    let first = file.strip_prefix(src).unwrap().components().next().unwrap();
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of `file` that is not test code: a file named `tests.rs` or `fake.rs` under a `#[cfg(test)]
/// mod` declaration is all test code; elsewhere, see [`without_tests`].
fn non_test_code(file: &Path) -> Option<String> {
    let name = file.file_name().unwrap().to_string_lossy();
    if name == "tests.rs" || name == "fake.rs" {
        return None;
    }
    Some(without_tests(&std::fs::read_to_string(file).unwrap()))
}

/// `text`, a source file, without its test code. Test code is the inline `#[cfg(test)] mod tests { ... }`
/// block, which comes last, so everything from it on is dropped; a `#[cfg(test)] mod fake;` declaration
/// only names a file and is skipped as a line (the code after it is read).
fn without_tests(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            let item = lines.peek().map_or("", |l| l.trim());
            if item.ends_with('{') && item.contains("mod ") {
                break;
            }
            lines.next();
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every module `crate::<name>` or `crate::{<name>, ...}` names in `code`, skipping doc and line comments.
/// In a group (which may span lines, and nest) only the first segment of each item is a module of the
/// crate: `crate::{a::X, b::{c, d}}` names `a` and `b`.
fn crate_references(code: &str) -> Vec<String> {
    let code: Vec<&str> = code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect();
    let code = code.join("\n");
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => found.extend(group_heads(group)),
            None => {
                let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
    }
    found
}

/// The first segment of each item of the group `group` opens (the text after its `{`), up to its `}`.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut item_start) = (1, true);
    let mut chars = group.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => item_start = true,
            c if depth == 1 && item_start && is_ident(c) => {
                let mut name = c.to_string();
                while let Some(&next) = chars.peek().filter(|&&n| is_ident(n)) {
                    name.push(next);
                    chars.next();
                }
                heads.push(name);
                item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// Adds what `code`, from `file` in the top-level module `module`, uses to `graph`.
fn add_uses(graph: &mut Graph, module: &str, file: &Path, code: &str) {
    let entry = graph.entry(module.to_string()).or_default();
    for used in crate_references(code) {
        if used != module {
            entry.entry(used).or_insert_with(|| file.to_path_buf());
        }
    }
}

/// (module -> modules it uses) over the non-test code of `src/`.
fn imports(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let module = top_module(src, &file);
        if module == "lib" || module == "main" {
            continue;
        }
        let code = non_test_code(&file).unwrap_or_default();
        add_uses(&mut graph, &module, &file, &code);
    }
    graph
}

/// Each use in `graph` that breaks the layers, and each module without a layer, as a message naming the
/// file (under `src`).
fn layer_problems(graph: &Graph, src: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for (module, uses) in graph {
        let Some(layer) = layer_of(module) else {
            problems.push(format!(
                "module `{module}` has no layer: add it to LAYERS in tests/layers.rs and to ARCHITECTURE.md"
            ));
            continue;
        };
        for (used, file) in uses {
            match layer_of(used) {
                Some(l) if l < layer => {}
                Some(_) => problems.push(format!(
                    "{}: `{module}` uses `crate::{used}`, which is not on a lower layer",
                    file.strip_prefix(src).unwrap().display()
                )),
                None => problems.push(format!(
                    "{}: `{module}` uses `crate::{used}`, which has no layer",
                    file.strip_prefix(src).unwrap().display()
                )),
            }
        }
    }
    problems
}

#[test]
fn modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = layer_problems(&imports(&src), &src);
    assert!(
        problems.is_empty(),
        "imports that break the layers (ARCHITECTURE.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    // The checker itself: a reference in code counts, one in a comment does not.
    let code =
        "use crate::engine::Target;\n/// see [`crate::cli`]\nlet x = crate::report::human(1);";
    assert_eq!(crate_references(code), ["engine", "report"]);
    // A group names a module per item, on one line or several, nested or not; `as` renames nothing here.
    let grouped = r#"
        use crate::{scenario, stage::Stage};
        use crate::{
            record::{CaseResult, Recorder},
            // crate::cli
            report::{html::{self, Page}, table},
            summary as s,
        };
    "#;
    assert_eq!(
        crate_references(grouped),
        ["scenario", "stage", "record", "report", "summary"]
    );
    // ...and a grouped import that reaches up is reported, with its file.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut fake = Graph::new();
    add_uses(&mut fake, "engine", &src.join("engine/mod.rs"), grouped);
    assert_eq!(
        layer_problems(&fake, &src),
        [
            "engine/mod.rs: `engine` uses `crate::report`, which is not on a lower layer",
            "engine/mod.rs: `engine` uses `crate::summary`, which is not on a lower layer",
        ]
    );
    // And the real graph is not empty (a broken walk would pass vacuously).
    let graph = imports(&src);
    assert!(graph["backend"].contains_key("engine"), "{graph:?}");
    assert!(graph["cli"].len() >= 3, "{graph:?}");
}

#[test]
fn test_code_is_left_out_and_what_follows_a_test_only_declaration_is_read() {
    // A file laid out as engine/mod.rs was: a test double declared early, code after it, tests last.
    let file = r#"//! The engine.
#[cfg(test)]
pub(crate) mod fake;
use crate::record::Recorder;
pub use crate::scenario::Case;

#[cfg(test)]
mod tests {
    use crate::cli::main;
}
"#;
    assert_eq!(
        crate_references(&without_tests(file)),
        ["record", "scenario"],
        "the code past `mod fake;` counts, the inline tests do not"
    );
}
