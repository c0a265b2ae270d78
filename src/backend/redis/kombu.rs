//! The names kombu's Redis transport uses for a queue: its priority lists and its binding sets.
//!
//! kombu 5.7 (`kombu/transport/redis.py`): a queue is up to four Redis lists, one per priority step
//! (0, 3, 6, 9); a message of priority `p` goes to the step `bisect_right(steps, p) - 1` picks, so 0-2 go to
//! the bare queue name, 3-5 to `queue\x06\x163`, 6-8 to `queue\x06\x166` and 9 to `queue\x06\x169`. On Redis
//! 0 is the highest priority (the worker BRPOPs the bare list first). Declaring a queue adds
//! `"<routing_key>\x06\x16<pattern>\x06\x16<queue>"` to `_kombu.binding.<exchange>` and
//! `_kombu.binding_permanent.<exchange>`; Celery's default exchange for a queue is named after it.

/// kombu's separator between a queue name and its priority step, and between the parts of a binding.
pub const SEP: &str = "\x06\x16";
/// kombu's priority steps (`PRIORITY_STEPS`).
pub const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];

/// The priority step a message of priority `priority` is stored under (`Channel.priority`).
pub fn priority_step(priority: u8) -> u8 {
    PRIORITY_STEPS
        .iter()
        .copied()
        .rev()
        .find(|&step| step <= priority)
        .unwrap_or(0)
}

/// The Redis list a message of `priority` on `queue` is pushed to (`Channel._q_for_pri`).
pub fn list_for(queue: &str, priority: u8) -> String {
    match priority_step(priority) {
        0 => queue.to_string(),
        step => format!("{queue}{SEP}{step}"),
    }
}

/// The four lists that make up `queue`, highest priority first (what the worker BRPOPs).
pub fn lists(queue: &str) -> [String; 4] {
    PRIORITY_STEPS.map(|step| list_for(queue, step))
}

/// The binding sets kombu adds a queue to when it declares it: `_kombu.binding.<queue>` and kombu 5.7's
/// `_kombu.binding_permanent.<queue>`.
pub fn binding_keys(queue: &str) -> [String; 2] {
    [
        format!("_kombu.binding.{queue}"),
        format!("_kombu.binding_permanent.{queue}"),
    ]
}

/// The member of the binding sets for Celery's direct exchange `queue` routed to `queue` with key `queue`.
pub fn binding_member(queue: &str) -> String {
    format!("{queue}{SEP}{SEP}{queue}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_to_kombus_lists() {
        let expected = [
            "q",
            "q",
            "q",
            "q\x06\x163",
            "q\x06\x163",
            "q\x06\x163",
            "q\x06\x166",
            "q\x06\x166",
            "q\x06\x166",
            "q\x06\x169",
        ];
        for (p, want) in expected.iter().enumerate() {
            assert_eq!(list_for("q", p as u8), *want, "priority {p}");
        }
        assert_eq!(lists("q"), ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]);
    }

    #[test]
    fn binding_is_routing_key_pattern_queue() {
        assert_eq!(binding_member("tb"), "tb\x06\x16\x06\x16tb");
        assert_eq!(
            binding_keys("tb"),
            ["_kombu.binding.tb", "_kombu.binding_permanent.tb"]
        );
    }
}
