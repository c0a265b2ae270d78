//! Several tasks in one scenario (`[tasks.NAME]`, a case's `task`) and the Python settings set once at the
//! top of the file: what is planned, and every error a user can hit, with the exact message they see.

use super::*;
use crate::catalog::Client;

/// Three named tasks and a `[task]`; `cases` follows.
fn shop(cases: &str) -> String {
    format!(
        r#"name = "shop"
[task]
name = "shop.tasks.ping"
args = []
[tasks.send_email]
name = "shop.tasks.send_email"
args = ["a@example.com", "hello"]
queue = "emails"
[tasks.charge]
name = "shop.tasks.charge"
args = [42]
kwargs = {{ currency = "EUR" }}
[tasks.resize]
name = "shop.tasks.resize_image"
kwargs = {{ path = "cat.png", width = 128 }}
{cases}"#
    )
}

fn case(name: &str, extra: &str) -> String {
    format!("[[case]]\nname = \"{name}\"\nbackend = \"unix\"\npath = \"raw\"\n{extra}\n")
}

#[test]
fn each_case_publishes_the_task_it_names_else_the_scenarios_task() {
    let text = shop(
        &[
            case("email", "task = \"send_email\""),
            case("charge", "task = \"charge\"\npriority = 3"),
            case("resize", "task = \"resize\"\nqueue = \"images\""),
            case("ping", ""),
        ]
        .concat(),
    );
    let s = parse(&text, "s.toml").unwrap();
    let planned: Vec<(&str, &str, &str, u8)> = s
        .cases
        .iter()
        .map(|c| {
            let t = c.task.spec();
            (
                c.name.as_str(),
                t.name.as_str(),
                t.queue.as_str(),
                t.priority,
            )
        })
        .collect();
    assert_eq!(
        planned,
        [
            ("email", "shop.tasks.send_email", "emails", 0),
            ("charge", "shop.tasks.charge", "taskbench", 3),
            ("resize", "shop.tasks.resize_image", "images", 0),
            ("ping", "shop.tasks.ping", "taskbench", 0),
        ]
    );
    let charge = s.cases[1].task.spec();
    assert_eq!(charge.args, [serde_json::json!(42)]);
    assert_eq!(charge.kwargs["currency"], "EUR");
    assert_eq!(
        s.cases[2].task.spec().args,
        Vec::<serde_json::Value>::new(),
        "a named task without args has none (not tasks.add's [2, 2])"
    );
}

#[test]
fn a_named_task_starts_from_the_defaults_not_from_the_scenarios_task() {
    let text = "name = \"t\"\n[task]\nname = \"a.b\"\nqueue = \"q\"\npriority = 5\n[tasks.x]\nname = \"x.y\"\n"
        .to_string()
        + &case("c", "task = \"x\"");
    let s = parse(&text, "s.toml").unwrap();
    let t = s.cases[0].task.spec();
    assert_eq!(
        (t.name.as_str(), t.queue.as_str(), t.priority, t.args.len()),
        ("x.y", "taskbench", 0, 0)
    );
}

#[test]
fn a_case_naming_a_task_the_scenario_does_not_have() {
    assert_eq!(
        err(&shop(&case("c", "task = \"send_mail\""))),
        "s.toml:20:8: case \"c\": no task \"send_mail\" in [tasks]\n  hint: tasks: send_email, charge, resize"
    );
}

#[test]
fn a_case_naming_a_task_by_its_celery_name_is_told_the_key() {
    assert_eq!(
        err(&shop(&case("c", "task = \"shop.tasks.charge\""))),
        "s.toml:20:8: case \"c\": no task \"shop.tasks.charge\" in [tasks]\n  hint: `task` takes the key of a [tasks.KEY] table, not the Celery name: [tasks.charge] has name = \"shop.tasks.charge\", so write task = \"charge\""
    );
}

#[test]
fn a_case_naming_a_task_in_a_scenario_without_tasks() {
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\ntask = \"send_email\""
        )),
        "s.toml:6:8: case \"c\": `task = \"send_email\"` names a task, but the scenario has no [tasks]\n  hint: define it as [tasks.send_email] with its Celery name (name = \"...\") and args; or remove `task` to publish [task]"
    );
}

#[test]
fn with_named_tasks_and_no_task_table_every_case_must_name_one() {
    let text = "name = \"t\"\n[tasks.a]\nname = \"x.a\"\n[tasks.b]\nname = \"x.b\"\n".to_string()
        + &case("first", "task = \"a\"")
        + &case("second", "");
    assert_eq!(
        err(&text),
        "s.toml:12:8: case \"second\": names no `task`, and the scenario has no [task] to fall back on\n  hint: add task = \"NAME\" to the case, NAME one of a, b; or a [task] table for the cases that name none"
    );
}

#[test]
fn malformed_task_tables_and_task_keys() {
    let unix = "[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n";
    // [[tasks]], a list, instead of named tables.
    assert_eq!(
        err(&format!("name = \"t\"\n[[tasks]]\nname = \"a\"\n{unix}")),
        "s.toml:2:1: invalid type: sequence, expected named task tables, like [tasks.send_email] with name = \"shop.tasks.send_email\""
    );
    // [tasks] written for [task].
    assert_eq!(
        err(&format!("name = \"t\"\n[tasks]\nname = \"a\"\n{unix}")),
        "s.toml:3:8: invalid type: string \"a\", expected a table of task keys (name, args, kwargs, queue, priority, payload_bytes): [task] for the task every case publishes, [tasks.KEY] for a named one"
    );
    let e = err(&format!("name = \"t\"\n[tasks.a]\nnme = \"a\"\n{unix}"));
    assert!(
        e.starts_with("s.toml:3:1: unknown field `nme`, expected one of `name`"),
        "{e}"
    );
    assert_eq!(
        err(&format!("name = \"t\"\n[tasks.a]\nargs = [1]\n{unix}")),
        "s.toml:2:1: [tasks.a] has no `name`\n  hint: give it the Celery name of the task to publish, e.g. name = \"proj.tasks.a\""
    );
    assert_eq!(
        err(&format!("name = \"t\"\n[tasks.a]\nname = \"\"\n{unix}")),
        "s.toml:3:8: task `name` is empty"
    );
    // A task written inline in the case instead of named.
    assert_eq!(
        err(&format!(
            "name = \"t\"\n[tasks.a]\nname = \"x\"\n{unix}task = {{ name = \"x\" }}\n"
        )),
        "s.toml:8:8: invalid type: map, expected the key of a named task, like task = \"send_email\" for a [tasks.send_email] table"
    );
}

#[test]
fn a_too_long_queue_of_a_named_task_is_reported_where_it_is_written() {
    let long = "q".repeat(256);
    assert_eq!(
        err(&format!(
            "name = \"t\"\n[tasks.a]\nname = \"x\"\nqueue = \"{long}\"\n[[case]]\nname = \"c\"\nbackend = \"amqp\"\npath = \"fresh\"\ntask = \"a\"\n"
        )),
        "s.toml:4:9: case \"c\": the queue name is 256 bytes long; AMQP allows at most 255\n  hint: an AMQP queue name (and routing key) is a short string: use a shorter `queue`"
    );
}

fn celery(name: &str, extra: &str) -> String {
    format!(
        "[[case]]\nname = \"{name}\"\nbackend = \"redis\"\npath = \"acquire\"\nclient = \"celery\"\n{extra}\n"
    )
}

#[test]
fn celery_app_pythonpath_and_python_are_set_once_and_overridden_per_case() {
    let text = format!(
        "name = \"t\"\npython = \"/venv/bin/python\"\ncelery_app = \"shop.celery:app\"\npythonpath = \"src\"\n{}{}{}[[case]]\nname = \"k\"\nbackend = \"amqp\"\npath = \"pooled\"\nclient = \"kombu\"\n",
        celery("shared", ""),
        celery(
            "own",
            "celery_app = \"other.celery:app\"\npythonpath = \"/abs\"\npython = \"/usr/bin/python3\""
        ),
        "[[case]]\nname = \"taskbench\"\nbackend = \"redis\"\npath = \"pooled\"\n",
    );
    let s = parse(&text, "dir/s.toml").unwrap();
    let client = |i: usize| s.cases[i].options.python().cloned();
    let shared = client(0).unwrap();
    assert_eq!(
        (shared.python, shared.celery_app, shared.pythonpath),
        (
            PathBuf::from("/venv/bin/python"),
            Some("shop.celery:app".to_string()),
            Some(PathBuf::from("dir/src")),
        ),
        "a relative pythonpath at the top is relative to the scenario file"
    );
    let own = client(1).unwrap();
    assert_eq!(
        (own.python, own.celery_app, own.pythonpath),
        (
            PathBuf::from("/usr/bin/python3"),
            Some("other.celery:app".to_string()),
            Some(PathBuf::from("/abs")),
        )
    );
    assert!(client(2).is_none(), "a taskbench case takes none of them");
    let kombu = client(3).unwrap();
    assert_eq!(kombu.client, Client::Kombu);
    assert_eq!(
        (kombu.celery_app, kombu.pythonpath),
        (None, Some(PathBuf::from("dir/src"))),
        "a kombu case has no app, and takes the shared pythonpath"
    );
}

#[test]
fn a_shared_celery_app_or_pythonpath_that_no_case_uses_is_refused() {
    let taskbench = "[[case]]\nname = \"c\"\nbackend = \"redis\"\npath = \"pooled\"\n";
    let kombu =
        "[[case]]\nname = \"k\"\nbackend = \"redis\"\npath = \"pooled\"\nclient = \"kombu\"\n";
    assert_eq!(
        err(&format!(
            "name = \"t\"\ncelery_app = \"shop.celery:app\"\n{taskbench}"
        )),
        "s.toml:2:14: `celery_app` is set for the whole scenario, but no case has client = \"celery\"\n  hint: add client = \"celery\" to the cases that should publish through it, or remove `celery_app`"
    );
    assert_eq!(
        err(&format!(
            "name = \"t\"\ncelery_app = \"shop.celery:app\"\n{kombu}"
        )),
        "s.toml:2:14: `celery_app` is set for the whole scenario, but no case has client = \"celery\"\n  hint: add client = \"celery\" to the cases that should publish through it, or remove `celery_app`"
    );
    assert_eq!(
        err(&format!("name = \"t\"\npythonpath = \"src\"\n{taskbench}")),
        "s.toml:2:14: `pythonpath` is set for the whole scenario, but no case has client = \"celery\" or client = \"kombu\"\n  hint: add client = \"celery\" or client = \"kombu\" to the cases that should publish through it, or remove `pythonpath`"
    );
    // python at the top stays accepted without a Python case, as before.
    parse(
        &format!("name = \"t\"\npython = \"/venv/bin/python\"\n{taskbench}"),
        "s.toml",
    )
    .unwrap();
    parse(
        &format!("name = \"t\"\npythonpath = \"src\"\n{kombu}"),
        "s.toml",
    )
    .unwrap();
}

#[test]
fn a_shared_celery_app_or_pythonpath_is_checked_where_it_is_written() {
    let c = celery("c", "");
    assert_eq!(
        err(&format!("name = \"t\"\ncelery_app = \"shop\"\n{c}")),
        "s.toml:2:14: celery_app \"shop\" is not `module:attribute`\n  hint: e.g. celery_app = \"proj.celery:app\" (with pythonpath = the directory proj is in)"
    );
    assert_eq!(
        err(&format!("name = \"t\"\npythonpath = \"\"\n{c}")),
        "s.toml:2:14: `pythonpath` is empty"
    );
}
