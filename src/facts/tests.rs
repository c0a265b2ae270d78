//! The facts' sentences, JSON shape and merging, as a reader and `merge` rely on them.

use super::*;
use std::collections::BTreeMap;

fn celery() -> PythonFacts {
    PythonFacts {
        client: "celery".into(),
        interpreter: "python3".into(),
        versions: Some(PythonVersions {
            celery: "5.7.0".into(),
            kombu: "5.7.0".into(),
            python: "3.11.7".into(),
            executable: "/venv/bin/python".into(),
        }),
        pids: vec![41, 42],
        stages: BTreeMap::from([("send".into(), vec!["Producer.publish".into()])]),
        published: 100,
        timed_calls: 900,
        busy_ns: 934,
        span_ns: 1000,
        busy_share: None,
        timed_calls_per_publish: None,
        profilers: vec![],
        queue: Some("taskbench".into()),
        routed_queue: None,
        died: vec![],
        logs: None,
    }
    .with_shares(false)
}

#[test]
fn a_harness_that_died_is_named_with_when_and_what_it_printed_last() {
    let p = PythonFacts {
        died: vec![HarnessDeath {
            pid: 42,
            after_s: Some(1.25),
            how: "exited in the middle of the case (was killed by signal 9)".into(),
            last_output: "its output (/tmp/x/harness-1.log) ends: publishing".into(),
        }],
        ..celery()
    };
    let figures = p.events();
    assert!(
        figures.contains(&"1 of 2 harnesses died during the case".to_string()),
        "{figures:?}"
    );
    assert!(figures.contains(&"harness pid 42 exited in the middle of the case (was killed by signal 9) 1.25 s into the measured publishes: its publisher stopped there (one harness error), the others went on; its output (/tmp/x/harness-1.log) ends: publishing".to_string()), "{figures:?}");
    // Shards list the deaths of each.
    let merged = CaseFacts::merged(
        [
            &CaseFacts {
                python: Some(p.clone()),
                ..CaseFacts::default()
            },
            &CaseFacts {
                python: Some(p.clone()),
                ..CaseFacts::default()
            },
        ],
        false,
    );
    assert_eq!(merged.python.unwrap().died.len(), 2);
    // A case where none died says nothing of it, in its notes or its JSON.
    assert!(celery().events().is_empty());
    assert!(p.notes().ends_with(&figures));
    assert!(!serde_json::to_string(&celery()).unwrap().contains("died"));
}

#[test]
fn two_cases_of_one_client_share_every_sentence_but_their_figures() {
    let a = celery();
    let b = PythonFacts {
        pids: vec![77],
        busy_ns: 500,
        ..celery()
    }
    .with_shares(false);
    let (na, nb) = (a.notes(), b.notes());
    let shared: Vec<&String> = na.iter().filter(|n| nb.contains(n)).collect();
    assert_eq!(
        shared,
        [&na[0], &na[1], &na[4]],
        "the version line, the stage map and the timed calls are the same words for both"
    );
    assert_eq!(a.described(), b.described());
    assert_eq!(na[2], "harness pid 41, 42");
    assert!(na[3].contains("inside the publish call 93% of the time"));
    assert!(nb[3].contains("inside the publish call 50% of the time"));
}

#[test]
fn a_routed_task_says_where_the_app_sends_it_and_where_it_went() {
    assert_eq!(celery().routing_note(), None, "nothing routes the task");
    let derived = PythonFacts {
        queue: Some("taskbench.emails".into()),
        routed_queue: Some("emails".into()),
        ..celery()
    };
    let note = derived.routing_note().unwrap();
    assert!(
        note.starts_with("routing: the app routes the task to queue \"emails\";")
            && note.contains("its own queue \"taskbench.emails\" instead"),
        "{note}"
    );
    assert!(derived.described().contains(&note));
    let into_app = PythonFacts {
        queue: Some("emails".into()),
        ..derived.clone()
    };
    assert!(
        into_app
            .routing_note()
            .unwrap()
            .contains("published into it (publish_to_routed_queue = true)")
    );
    let json = serde_json::to_value(&derived).unwrap();
    assert_eq!(
        (&json["queue"], &json["routed_queue"]),
        (&"taskbench.emails".into(), &"emails".into())
    );
    let back: PythonFacts = serde_json::from_value(json).unwrap();
    assert_eq!(back, derived);
}

#[test]
fn a_harness_that_never_came_up_is_named_by_its_interpreter() {
    let p = PythonFacts {
        versions: None,
        pids: vec![],
        ..celery()
    };
    assert_eq!(p.notes()[0], "client celery (python3)");
}

#[test]
fn an_open_loop_has_no_busy_share() {
    let p = celery().with_shares(true);
    assert_eq!(p.busy_share, None);
    assert!(
        !p.notes()
            .iter()
            .any(|n| n.contains("inside the publish call"))
    );
}

#[test]
fn shards_add_up_to_the_shares_of_their_sums() {
    let a = CaseFacts {
        python: Some(celery()),
        flow_control: Some(FlowControl {
            blocked: 1,
            unblocked: 1,
            reason: Some("low on memory".into()),
            blocked_ns: 10,
            longest_blocked_ns: 10,
        }),
        queue_held_before: Some(4),
    };
    let b = CaseFacts {
        python: Some(PythonFacts {
            pids: vec![77],
            busy_ns: 66,
            span_ns: 1000,
            ..celery()
        }),
        flow_control: Some(FlowControl {
            blocked: 2,
            unblocked: 1,
            reason: None,
            blocked_ns: 30,
            longest_blocked_ns: 25,
        }),
        queue_held_before: Some(3),
    };
    let m = CaseFacts::merged([&a, &b], false);
    let p = m.python.unwrap();
    assert_eq!(p.pids, [41, 42, 77]);
    assert_eq!(p.busy_share, Some(0.5), "(934 + 66) / (1000 + 1000)");
    assert_eq!(p.timed_calls_per_publish, Some(9.0));
    let f = m.flow_control.unwrap();
    assert_eq!(
        (f.blocked, f.unblocked, f.blocked_ns, f.longest_blocked_ns),
        (3, 2, 40, 25)
    );
    assert_eq!(f.reason.as_deref(), Some("low on memory"));
    assert_eq!(m.queue_held_before, Some(4));
}

#[test]
fn flow_control_says_no_block_and_how_long_a_block_lasted() {
    let none = FlowControl::default();
    assert!(
        none.note()
            .starts_with("flow control: connection.blocked 0 times")
    );
    let blocked = FlowControl {
        blocked: 2,
        unblocked: 1,
        reason: Some("low on memory".into()),
        blocked_ns: 1_500_000_000,
        longest_blocked_ns: 1_000_000_000,
    };
    assert_eq!(
        blocked.note(),
        "flow control: connection.blocked 2 times (\"low on memory\"), connection.unblocked 1 times; \
         publishing blocked 1s 500ms in total, longest 1s; still blocked when the case ended (its time \
         counted until the connection closed)"
    );
}

#[test]
fn a_profiler_says_its_failures_and_how_they_are_drawn() {
    let p = ProfilerFacts {
        view: "pywall".into(),
        title: "Python wall-clock (pywall) profile".into(),
        samples: 90,
        failed: 10,
        errors: vec![],
        failed_drawn_as: Some("drawn as the frame (unreadable)".into()),
        sampled_share: None,
    };
    assert_eq!(
        p.note().unwrap(),
        "Python wall-clock (pywall) profile: py-spy took 90 samples and failed 10 (10.0%), drawn as the frame (unreadable)"
    );
    let turns = ProfilerFacts {
        sampled_share: Some(0.437),
        ..p.clone()
    };
    assert_eq!(
        turns.note().unwrap(),
        "Python wall-clock (pywall) profile: py-spy took 90 samples and failed 10 (10.0%), drawn as the frame (unreadable), in its turns over 44% of the measured publishes' time, its ns scaled up to all of it"
    );
    let quiet = ProfilerFacts {
        samples: 0,
        failed: 0,
        ..p
    };
    assert_eq!(quiet.note(), None);
}

#[test]
fn empty_sections_are_left_out_of_the_json() {
    let facts = CaseFacts {
        queue_held_before: Some(3),
        ..CaseFacts::default()
    };
    let json = serde_json::to_string(&facts).unwrap();
    assert_eq!(json, r#"{"queue_held_before":3}"#);
    assert_eq!(serde_json::from_str::<CaseFacts>(&json).unwrap(), facts);
    assert!(serde_json::from_str::<CaseFacts>("{}").unwrap().is_empty());
}
