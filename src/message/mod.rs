//! Celery task messages (protocol v2) exactly as Celery 5 / kombu 5 put them on the wire.
//!
//! A [`TaskTemplate`] is built once per case from the scenario's `[task]`: body, headers, and kombu's JSON
//! envelope with placeholders where the per-publish ids go. A [`TaskMessage`] is one publisher's copy; its
//! [`TaskMessage::renew`] writes fresh ids into the prepared bytes in place, so encoding a publish allocates
//! nothing. See `docs/celery-wire.md` for the format.

use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::sync::Arc;

mod python;
use python::truncate_repr;
pub use python::{python_json, python_repr, python_repr_tuple};

/// Length of a hyphenated UUID string.
const UUID_LEN: usize = 36;
/// Stand-in for the task id inside the envelope template (exactly [`UUID_LEN`] bytes).
const TASK_ID_PLACEHOLDER: &str = "TASKBENCH_TASK_ID_PLACEHOLDER_000001";
/// Stand-in for kombu's per-message delivery tag inside the envelope template.
const DELIVERY_TAG_PLACEHOLDER: &str = "TASKBENCH_DELIVERY_TAG_PLACEHOLDER01";
/// Size of the big-endian length prefix of a raw-transport frame.
pub const FRAME_PREFIX_LEN: usize = 4;

/// What to publish: the `[task]` table of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    /// Registered Celery task name, e.g. `tasks.add`.
    pub name: String,
    /// Positional arguments (a JSON array).
    pub args: Vec<Value>,
    /// Keyword arguments (a JSON object, in file order).
    pub kwargs: Map<String, Value>,
    /// Queue (and, on AMQP, exchange and routing key) to publish to.
    pub queue: String,
    /// Pad the body to exactly this many bytes with a trailing string argument.
    pub payload_bytes: Option<usize>,
    /// Message priority (0..=9).
    pub priority: u8,
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec {
            name: "tasks.add".into(),
            args: vec![json!(2), json!(2)],
            kwargs: Map::new(),
            queue: "taskbench".into(),
            payload_bytes: None,
            priority: 0,
        }
    }
}

/// Why a task spec cannot be turned into a message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error(
        "payload_bytes = {wanted} is smaller than the unpadded body ({minimum} bytes); use at least {minimum}"
    )]
    PayloadTooSmall { wanted: usize, minimum: usize },
    #[error("the task's arguments contain taskbench's id placeholder `{0}`; change the arguments")]
    PlaceholderInArgs(&'static str),
}

/// Everything about a task message that is the same for every publish of a case.
#[derive(Debug)]
pub struct TaskTemplate {
    spec: TaskSpec,
    body: Vec<u8>,
    argsrepr: String,
    kwargsrepr: String,
    origin: String,
    reply_to: String,
    /// Length prefix + kombu envelope, with placeholders for the ids.
    frame: Vec<u8>,
    id_offsets: Vec<usize>,
    tag_offsets: Vec<usize>,
}

impl TaskTemplate {
    /// Builds the template for `spec`.
    pub fn new(spec: &TaskSpec) -> Result<Arc<TaskTemplate>, MessageError> {
        let args = padded_args(spec)?;
        let body = python_json(&json!([
            args,
            spec.kwargs,
            {"callbacks": null, "errbacks": null, "chain": null, "chord": null}
        ]));
        let argsrepr = truncate_repr(python_repr_tuple(&args));
        let kwargsrepr = truncate_repr(python_repr(&Value::Object(spec.kwargs.clone())));
        let origin = format!(
            "gen{}@{}",
            std::process::id(),
            gethostname::gethostname().to_string_lossy()
        );
        let reply_to = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut template = TaskTemplate {
            spec: spec.clone(),
            body,
            argsrepr,
            kwargsrepr,
            origin,
            reply_to,
            frame: Vec::new(),
            id_offsets: Vec::new(),
            tag_offsets: Vec::new(),
        };
        let envelope = template.kombu_envelope_json(TASK_ID_PLACEHOLDER, DELIVERY_TAG_PLACEHOLDER);
        let mut frame = Vec::with_capacity(FRAME_PREFIX_LEN + envelope.len());
        frame.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
        frame.extend_from_slice(&envelope);
        template.id_offsets = find_all(&frame, TASK_ID_PLACEHOLDER.as_bytes());
        template.tag_offsets = find_all(&frame, DELIVERY_TAG_PLACEHOLDER.as_bytes());
        // The id sits in headers.id, headers.root_id and properties.correlation_id; the tag once.
        if template.id_offsets.len() != 3 {
            return Err(MessageError::PlaceholderInArgs(TASK_ID_PLACEHOLDER));
        }
        if template.tag_offsets.len() != 1 {
            return Err(MessageError::PlaceholderInArgs(DELIVERY_TAG_PLACEHOLDER));
        }
        template.frame = frame;
        Ok(Arc::new(template))
    }

    /// The scenario's task.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// The message body: JSON `[args, kwargs, embed]` with Python's separators.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// `reply_to`: one uuid per run, as Celery uses its app's oid.
    pub fn reply_to(&self) -> &str {
        &self.reply_to
    }

    /// Size in bytes of a raw-transport frame (prefix included).
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }

    /// Celery's headers for task `id`, in Celery's order, as JSON values.
    pub fn headers(&self, id: &str) -> Vec<(&'static str, Value)> {
        vec![
            ("lang", json!("py")),
            ("task", json!(self.spec.name)),
            ("id", json!(id)),
            ("shadow", Value::Null),
            ("eta", Value::Null),
            ("expires", Value::Null),
            ("group", Value::Null),
            ("group_index", Value::Null),
            ("retries", json!(0)),
            ("timelimit", json!([null, null])),
            ("root_id", json!(id)),
            ("parent_id", Value::Null),
            ("argsrepr", json!(self.argsrepr)),
            ("kwargsrepr", json!(self.kwargsrepr)),
            ("origin", json!(self.origin)),
            ("ignore_result", json!(false)),
            ("replaced_task_nesting", json!(0)),
            ("stamped_headers", Value::Null),
            ("stamps", json!({})),
        ]
    }

    /// kombu's Redis-transport envelope for one message, as bytes.
    fn kombu_envelope_json(&self, id: &str, delivery_tag: &str) -> Vec<u8> {
        let headers: Map<String, Value> = self
            .headers(id)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let envelope = json!({
            "body": base64::engine::general_purpose::STANDARD.encode(&self.body),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "correlation_id": id,
                "reply_to": self.reply_to,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": self.spec.queue},
                "priority": self.spec.priority,
                "body_encoding": "base64",
                "delivery_tag": delivery_tag,
            }
        });
        python_json(&envelope)
    }
}

/// One publisher's message: the template's bytes with this publish's ids written in.
#[derive(Debug)]
pub struct TaskMessage {
    template: Arc<TaskTemplate>,
    frame: Vec<u8>,
    /// This message's own generator of the ids' random bits (see [`random_uuid`]).
    rng: fastrand::Rng,
}

impl Clone for TaskMessage {
    /// A copy with the same bytes and a generator of its own, so the two never renew to the same ids.
    fn clone(&self) -> Self {
        TaskMessage {
            template: self.template.clone(),
            frame: self.frame.clone(),
            rng: fastrand::Rng::new(),
        }
    }
}

impl TaskMessage {
    /// A message with fresh ids.
    pub fn new(template: Arc<TaskTemplate>) -> Self {
        let frame = template.frame.clone();
        let mut message = TaskMessage {
            template,
            frame,
            rng: fastrand::Rng::new(),
        };
        message.renew();
        message
    }

    /// Gives this message a fresh task id and delivery tag, in place: no allocation.
    pub fn renew(&mut self) {
        let id = random_uuid(&mut self.rng);
        let tag = random_uuid(&mut self.rng);
        for &at in &self.template.id_offsets {
            self.frame[at..at + UUID_LEN].copy_from_slice(&id);
        }
        for &at in &self.template.tag_offsets {
            self.frame[at..at + UUID_LEN].copy_from_slice(&tag);
        }
    }

    /// The template this message was made from.
    pub fn template(&self) -> &TaskTemplate {
        &self.template
    }

    /// The current task id.
    pub fn id(&self) -> &str {
        let at = self.template.id_offsets[0];
        std::str::from_utf8(&self.frame[at..at + UUID_LEN]).expect("uuid is ascii")
    }

    /// The current delivery tag (kombu's per-message uuid).
    pub fn delivery_tag(&self) -> &str {
        let at = self.template.tag_offsets[0];
        std::str::from_utf8(&self.frame[at..at + UUID_LEN]).expect("uuid is ascii")
    }

    /// The message body (the same for every publish of a case).
    pub fn body(&self) -> &[u8] {
        &self.template.body
    }

    /// kombu's JSON envelope, what one Redis `LPUSH` carries.
    pub fn envelope(&self) -> &[u8] {
        &self.frame[FRAME_PREFIX_LEN..]
    }

    /// A raw-transport frame: 4-byte big-endian length, then the envelope.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }
}

/// A random (version 4, RFC 4122 variant) uuid, hyphenated in lower case as Python's `str(uuid.uuid4())`.
///
/// The 122 random bits come from the message's own generator (wyrand, which `fastrand::Rng::new` seeds from
/// its thread's generator, itself seeded from a hash of the time and the thread's id) rather than a thread's
/// ChaCha generator: a tenth of the instructions. Not cryptographic, and needs not be: every generator walks
/// the same cycle of 2^64 states from its own seed, so two publishers repeat an id only if their seeds land
/// within each other's run (a birthday bound near 2e-5 for 10,000 publishers of 1M publishes each). Celery's
/// workers only read the id as a string.
#[inline]
fn random_uuid(rng: &mut fastrand::Rng) -> [u8; UUID_LEN] {
    let bytes = *uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
        .into_uuid()
        .as_bytes();
    hyphenated(&bytes)
}

/// Two lower-case hex digits for each byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    pairs
};

/// Where each byte's two hex digits go in a hyphenated uuid (8-4-4-4-12).
const HEX_AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/// `bytes` as a hyphenated lower-case uuid, a table lookup per byte.
#[inline]
fn hyphenated(bytes: &[u8; 16]) -> [u8; UUID_LEN] {
    let mut out = [b'-'; UUID_LEN];
    for (&b, at) in bytes.iter().zip(HEX_AT) {
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[b as usize]);
    }
    out
}

fn padded_args(spec: &TaskSpec) -> Result<Vec<Value>, MessageError> {
    let mut args = spec.args.clone();
    let Some(wanted) = spec.payload_bytes else {
        return Ok(args);
    };
    let body_len = |args: &Vec<Value>| {
        python_json(&json!([args, spec.kwargs, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}])).len()
    };
    args.push(Value::String(String::new()));
    let minimum = body_len(&args);
    if wanted < minimum {
        return Err(MessageError::PayloadTooSmall { wanted, minimum });
    }
    args.pop();
    args.push(Value::String("x".repeat(wanted - minimum)));
    Ok(args)
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_2_2_body_is_byte_for_byte_celerys() {
        let t = TaskTemplate::new(&TaskSpec::default()).unwrap();
        let expected =
            br#"[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
        assert_eq!(expected.len(), 81);
        assert_eq!(t.body(), expected);
    }

    #[test]
    fn envelope_matches_kombu_key_for_key() {
        let t = TaskTemplate::new(&TaskSpec::default()).unwrap();
        let m = TaskMessage::new(t);
        let text = std::str::from_utf8(m.envelope()).unwrap();
        assert!(text.starts_with(r#"{"body": "W1syLCAyXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "tasks.add", "id": ""#), "{text}");
        let v: Value = serde_json::from_slice(m.envelope()).unwrap();
        // An object's keys, in the order they were written.
        let keys = |o: &Value| -> Vec<String> { o.as_object().unwrap().keys().cloned().collect() };
        assert_eq!(
            keys(&v),
            [
                "body",
                "content-encoding",
                "content-type",
                "headers",
                "properties"
            ]
        );
        assert_eq!(
            keys(&v["headers"]),
            [
                "lang",
                "task",
                "id",
                "shadow",
                "eta",
                "expires",
                "group",
                "group_index",
                "retries",
                "timelimit",
                "root_id",
                "parent_id",
                "argsrepr",
                "kwargsrepr",
                "origin",
                "ignore_result",
                "replaced_task_nesting",
                "stamped_headers",
                "stamps"
            ]
        );
        assert_eq!(
            keys(&v["properties"]),
            [
                "correlation_id",
                "reply_to",
                "delivery_mode",
                "delivery_info",
                "priority",
                "body_encoding",
                "delivery_tag"
            ]
        );
        assert_eq!(v["headers"]["id"], m.id());
        assert_eq!(v["headers"]["root_id"], m.id());
        assert_eq!(v["properties"]["correlation_id"], m.id());
        assert_eq!(v["properties"]["delivery_tag"], m.delivery_tag());
        assert_eq!(v["headers"]["argsrepr"], "(2, 2)");
        assert_eq!(v["headers"]["kwargsrepr"], "{}");
        assert_eq!(v["properties"]["delivery_info"]["routing_key"], "taskbench");
        assert!(v["headers"]["origin"].as_str().unwrap().starts_with("gen"));
        let frame = m.frame();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
    }

    #[test]
    fn renew_gives_fresh_uuid4_ids() {
        let t = TaskTemplate::new(&TaskSpec::default()).unwrap();
        let mut m = TaskMessage::new(t);
        let first = m.id().to_string();
        m.renew();
        assert_ne!(first, m.id());
        let parsed = uuid::Uuid::parse_str(m.id()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(m.id(), m.delivery_tag());
    }

    #[test]
    fn ids_read_back_as_random_uuids_written_as_python_writes_them() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            let text = random_uuid(&mut rng);
            let text = std::str::from_utf8(&text).unwrap();
            let parsed = uuid::Uuid::parse_str(text).unwrap();
            assert_eq!(parsed.get_version(), Some(uuid::Version::Random), "{text}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{text}");
            // str(uuid.uuid4()): hyphenated, lower case.
            assert_eq!(text, parsed.hyphenated().to_string());
        }
    }

    #[test]
    fn a_copied_message_renews_to_ids_of_its_own() {
        let t = TaskTemplate::new(&TaskSpec::default()).unwrap();
        let mut a = TaskMessage::new(t);
        let mut b = a.clone();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            a.renew();
            b.renew();
            assert!(seen.insert(a.id().to_string()), "{} came twice", a.id());
            assert!(seen.insert(b.id().to_string()), "{} came twice", b.id());
        }
    }

    #[test]
    fn payload_bytes_pads_body_to_exact_size() {
        let spec = TaskSpec {
            payload_bytes: Some(1000),
            ..TaskSpec::default()
        };
        let t = TaskTemplate::new(&spec).unwrap();
        assert_eq!(t.body().len(), 1000);
        let v: Value = serde_json::from_slice(t.body()).unwrap();
        assert_eq!(v[0].as_array().unwrap().len(), 3);
    }

    #[test]
    fn payload_bytes_below_minimum_is_rejected() {
        let spec = TaskSpec {
            payload_bytes: Some(10),
            ..TaskSpec::default()
        };
        assert_eq!(
            TaskTemplate::new(&spec).unwrap_err(),
            MessageError::PayloadTooSmall {
                wanted: 10,
                minimum: 85
            }
        );
    }

    #[test]
    fn python_repr_matches_python() {
        assert_eq!(python_repr_tuple(&[json!(1)]), "(1,)");
        assert_eq!(python_repr_tuple(&[]), "()");
        assert_eq!(
            python_repr_tuple(&[
                json!("it's"),
                json!(null),
                json!(true),
                json!(1.0),
                json!([1, {"a": "b"}])
            ]),
            r#"("it's", None, True, 1.0, [1, {'a': 'b'}])"#
        );
    }

    #[test]
    fn python_json_escapes_non_ascii_like_python() {
        assert_eq!(
            python_json(&json!({"k": ["é", 1]})),
            br#"{"k": ["\u00e9", 1]}"#
        );
        assert_eq!(python_json(&json!("😀")), br#""\ud83d\ude00""#);
    }
}
