//! A case's distance and faults (`rtt`, `jitter`, `[[case.fault]]`): what is planned, and every error a
//! user can hit, with the exact message they see.

use super::*;
use crate::scenario::{CaseEvent, EventKind, Wire};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn rtt_is_a_scenario_default_a_case_overrides_and_faults_come_in_time_order() {
    let s = parse(
        r#"name = "t"
rtt = "1ms"
jitter = "100us"
duration = "10s"
[[case]]
name = "a"
backend = "redis"
path = "pooled"
[[case]]
name = "b"
backend = "amqp"
path = "pooled"
rtt = "0ms"
[[case.fault]]
at = "6s"
kind = "reset"
[[case.fault]]
at = "2s"
kind = "blackhole"
for = "2s"
"#,
        "s.toml",
    )
    .unwrap();
    assert_eq!(
        s.cases[0].wire,
        Some(Wire {
            rtt: ms(1),
            jitter: Duration::from_micros(100)
        })
    );
    assert!(s.cases[0].events.is_empty());
    assert_eq!(s.cases[1].wire.unwrap().rtt, Duration::ZERO);
    assert_eq!(
        s.cases[1].events,
        [
            CaseEvent {
                at: ms(2000),
                length: ms(2000),
                kind: EventKind::Blackhole
            },
            CaseEvent {
                at: ms(6000),
                length: Duration::ZERO,
                kind: EventKind::Reset
            },
        ]
    );
}

#[test]
fn a_fault_alone_goes_through_the_proxy_with_no_rtt() {
    let s = parse(
        &one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.fault]]\nat = \"1s\"\nkind = \"reset\"",
        ),
        "s.toml",
    )
    .unwrap();
    assert_eq!(s.cases[0].wire.unwrap().rtt, Duration::ZERO);
    assert!(
        parse(
            &one_case("backend = \"redis\"\npath = \"pooled\""),
            "s.toml"
        )
        .unwrap()
        .cases[0]
            .wire
            .is_none()
    );
}

#[test]
fn rtt_on_a_local_backend_is_refused() {
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\nrtt = \"1ms\""
        )),
        "s.toml:6:7: case \"c\": `rtt`, `jitter` and `[[case.fault]]` apply to a broker's network; the unix \
         backend is local\n  hint: use them on amqp or redis cases (set a scenario-wide rtt on each broker case \
         instead)"
    );
}

#[test]
fn a_fault_past_the_case_duration_is_refused() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\nduration = \"5s\"\n[[case.fault]]\nat = \"4s\"\nkind = \"blackhole\"\nfor = \"2s\""
        )),
        "s.toml:8:6: case \"c\": this fault ends at 6s into the measured run, past the case's duration (5s)\n  \
         hint: make `duration` longer, or the fault earlier or shorter, so the case sees what follows it"
    );
}

#[test]
fn an_unknown_fault_kind_is_refused() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.fault]]\nat = \"1s\"\nkind = \"partition\""
        )),
        "s.toml:8:8: case \"c\": a fault's `kind` is \"partition\", which taskbench does not know\n  hint: write \
         one of: blackhole, reset (in [[case.fault]])"
    );
}

#[test]
fn a_blackhole_without_for_is_refused() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.fault]]\nat = \"1s\"\nkind = \"blackhole\""
        )),
        "s.toml:8:8: case \"c\": a blackhole needs `for`, how long it lasts, longer than zero\n  hint: write it \
         like { at = \"5s\", kind = \"blackhole\", for = \"2s\" }"
    );
}

#[test]
fn bad_rtt_and_jitter_without_rtt_are_refused() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\nrtt = \"1 parsec\""
        )),
        "s.toml:6:7: case \"c\": `rtt` = \"1 parsec\" is not a duration: unknown time unit \"parsec\", supported \
         units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)\n  hint: write it \
         like \"1ms\", \"500us\" or \"0ms\""
    );
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\njitter = \"1ms\""
        )),
        "s.toml:6:10: case \"c\": `jitter` needs an `rtt` to vary around\n  hint: add rtt = \"1ms\" (or rtt = \
         \"0ms\")"
    );
}

#[test]
fn a_broker_event_needs_no_proxy_and_joins_the_faults_in_time_order() {
    let s = parse(
        &one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.event]]\nat = \"2s\"\nkind = \"kill-connections\"",
        ),
        "s.toml",
    )
    .unwrap();
    assert!(
        s.cases[0].wire.is_none(),
        "a broker event alone needs no proxy"
    );
    assert_eq!(
        s.cases[0].events,
        [CaseEvent {
            at: ms(2000),
            length: Duration::ZERO,
            kind: EventKind::KillConnections
        }]
    );
    let s = parse(
        &one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.event]]\nat = \"2s\"\nkind = \"kill-connections\"\n[[case.fault]]\nat = \"1s\"\nkind = \"reset\"",
        ),
        "s.toml",
    )
    .unwrap();
    assert!(s.cases[0].wire.is_some());
    let kinds: Vec<_> = s.cases[0].events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Reset, EventKind::KillConnections]);
}

#[test]
fn an_unknown_event_kind_and_a_fault_kind_in_case_event_are_refused() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.event]]\nat = \"1s\"\nkind = \"reboot\""
        )),
        "s.toml:8:8: case \"c\": an event's `kind` is \"reboot\", which taskbench does not know\n  hint: write \
         one of: kill-connections, restart (in [[case.event]])"
    );
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.event]]\nat = \"1s\"\nkind = \"reset\""
        )),
        "s.toml:8:8: case \"c\": an event's `kind` is \"reset\", which taskbench does not know\n  hint: write \
         one of: kill-connections, restart (in [[case.event]])"
    );
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.fault]]\nat = \"1s\"\nkind = \"kill-connections\""
        )),
        "s.toml:8:8: case \"c\": a fault's `kind` is \"kill-connections\", which taskbench does not know\n  hint: \
         write one of: blackhole, reset (in [[case.fault]])"
    );
}

#[test]
fn a_broker_event_with_a_length_is_refused() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.event]]\nat = \"1s\"\nkind = \"kill-connections\"\nfor = \"1s\""
        )),
        "s.toml:9:7: case \"c\": kill-connections is an instant: it has no `for`\n  hint: write it like { at = \
         \"5s\", kind = \"kill-connections\" }"
    );
}

#[test]
fn a_broker_event_on_a_local_backend_is_refused_and_on_amqp_planned() {
    assert_eq!(
        err(&one_case(
            "backend = \"unix\"\npath = \"raw\"\n[[case.event]]\nat = \"1s\"\nkind = \"kill-connections\""
        )),
        "s.toml:6:1: case \"c\": `[[case.event]]` is a broker-side event; the unix backend is local: there is no \
         broker to act on\n  hint: use it on redis and amqp cases"
    );
    let s = parse(
        &one_case(
            "backend = \"amqp\"\npath = \"pooled\"\n[[case.event]]\nat = \"1s\"\nkind = \"kill-connections\"",
        ),
        "s.toml",
    )
    .unwrap();
    assert_eq!(s.cases[0].events[0].kind, EventKind::KillConnections);
}

#[test]
fn a_broker_event_past_the_case_duration_is_refused() {
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\nduration = \"5s\"\n[[case.event]]\nat = \"5s\"\nkind = \"kill-connections\""
        )),
        "s.toml:8:6: case \"c\": this event ends at 5s into the measured run, past the case's duration (5s)\n  \
         hint: make `duration` longer, or the event earlier or shorter, so the case sees what follows it"
    );
}

#[test]
fn a_restart_is_planned_on_amqp_with_its_for_and_refused_on_redis() {
    let s = parse(
        &one_case(
            "backend = \"amqp\"\npath = \"pooled\"\n[[case.event]]\nat = \"1s\"\nkind = \"restart\"\nfor = \"2s\"",
        ),
        "s.toml",
    )
    .unwrap();
    assert_eq!(
        s.cases[0].events,
        [CaseEvent {
            at: ms(1000),
            length: ms(2000),
            kind: EventKind::Restart
        }]
    );
    assert!(s.cases[0].wire.is_none(), "a broker event needs no proxy");
    assert_eq!(
        err(&one_case(
            "backend = \"redis\"\npath = \"pooled\"\n[[case.event]]\nat = \"1s\"\nkind = \"restart\""
        )),
        "s.toml:6:1: case \"c\": a restart is carried out on amqp only: Redis has no command that stops it and \
         starts it again\n  hint: on redis use kill-connections, or stop and start the server yourself; for the \
         network, [[case.fault]] kind = \"reset\""
    );
}
