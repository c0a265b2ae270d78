//! A Celery task message as AMQP properties: Celery's headers as a FieldTable with the value types py-amqp
//! decodes correctly, and the message properties, built once per case and stamped with each task id.
//!
//! lapin takes `BasicProperties` by value, so every publish needs its own copy; the copy is a clone of a
//! prepared template plus two header inserts (`id`, `root_id`) and the correlation id. Nothing is looked up
//! or formatted per publish.

use crate::message::TaskTemplate;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::Value;
use std::collections::BTreeMap;

/// AMQP delivery mode 2: the broker writes the message to disk (Celery's default).
const PERSISTENT: u8 = 2;

/// What every publish of a case sends, minus the task id.
pub struct WireTemplate {
    /// Every property but the per-publish ones (`headers`, `correlation_id`).
    base: BasicProperties,
    /// Celery's headers with placeholders for `id` and `root_id` (a map, so a copy's values can be
    /// replaced in place without building key strings).
    headers: BTreeMap<ShortString, AMQPValue>,
}

impl WireTemplate {
    pub fn new(template: &TaskTemplate) -> Self {
        // The placeholder id only fixes the headers' shape; each publish overwrites both ids.
        let headers = template
            .headers("")
            .into_iter()
            .map(|(key, value)| (ShortString::from(key), amqp_value(&value)))
            .collect();
        let base = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(PERSISTENT)
            .with_priority(template.spec().priority)
            .with_reply_to(template.reply_to().into());
        WireTemplate { base, headers }
    }

    /// The properties (headers included) of the publish of task `id`.
    #[inline]
    pub fn properties(&self, id: &str) -> BasicProperties {
        let mut headers = self.headers.clone();
        for key in ["id", "root_id"] {
            if let Some(value) = headers.get_mut(key) {
                *value = AMQPValue::LongString(LongString::from(id));
            }
        }
        self.base
            .clone()
            .with_headers(FieldTable::from(headers))
            .with_correlation_id(ShortString::from(id))
    }
}

/// A JSON header value as the AMQP type a Python worker (py-amqp) decodes back to the same value: strings
/// as long strings `S`, booleans `t`, integers as signed 32-bit `I` (64-bit `l` only when they do not fit),
/// floats `d`, lists `A`, objects `F`, null `V`. Never a short int or a short string.
pub fn amqp_value(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => match i32::try_from(i) {
                Ok(small) => AMQPValue::LongInt(small),
                Err(_) => AMQPValue::LongLongInt(i),
            },
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => AMQPValue::LongString(n.to_string().into()),
        },
        Value::String(s) => AMQPValue::LongString(s.as_str().into()),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(amqp_value).collect::<Vec<_>>(),
        )),
        Value::Object(map) => {
            let mut table = FieldTable::default();
            for (k, v) in map {
                table.insert(k.as_str().into(), amqp_value(v));
            }
            AMQPValue::FieldTable(table)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{TaskSpec, TaskTemplate};

    fn header<'a>(props: &'a BasicProperties, key: &str) -> &'a AMQPValue {
        props
            .headers()
            .as_ref()
            .unwrap()
            .inner()
            .get(key)
            .unwrap_or_else(|| panic!("header {key} missing"))
    }

    #[test]
    fn headers_have_the_types_py_amqp_reads_back() {
        let t = TaskTemplate::new(&TaskSpec::default()).unwrap();
        let wire = WireTemplate::new(&t);
        let id = "0f0e0d0c-0b0a-4908-8706-050403020100";
        let p = wire.properties(id);
        let table = p.headers().as_ref().unwrap();
        assert_eq!(table.inner().len(), 19, "Celery sends 19 headers");
        assert_eq!(header(&p, "lang"), &AMQPValue::LongString("py".into()));
        assert_eq!(
            header(&p, "task"),
            &AMQPValue::LongString("tasks.add".into())
        );
        assert_eq!(header(&p, "id"), &AMQPValue::LongString(id.into()));
        assert_eq!(header(&p, "root_id"), &AMQPValue::LongString(id.into()));
        assert_eq!(header(&p, "shadow"), &AMQPValue::Void);
        assert_eq!(header(&p, "retries"), &AMQPValue::LongInt(0));
        assert_eq!(
            header(&p, "timelimit"),
            &AMQPValue::FieldArray(vec![AMQPValue::Void, AMQPValue::Void].into())
        );
        assert_eq!(
            header(&p, "argsrepr"),
            &AMQPValue::LongString("(2, 2)".into())
        );
        assert_eq!(header(&p, "ignore_result"), &AMQPValue::Boolean(false));
        assert_eq!(
            header(&p, "stamps"),
            &AMQPValue::FieldTable(FieldTable::default())
        );
        for (key, value) in table {
            assert!(
                !matches!(
                    value,
                    AMQPValue::ShortString(_)
                        | AMQPValue::ShortInt(_)
                        | AMQPValue::ShortShortInt(_)
                        | AMQPValue::ShortUInt(_)
                        | AMQPValue::ShortShortUInt(_)
                ),
                "{key} has a type py-amqp misreads: {value:?}"
            );
        }
        assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), id);
        assert_eq!(p.reply_to().as_ref().unwrap().as_str(), t.reply_to());
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(p.priority(), &Some(0));
        assert_eq!(
            p.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(p.content_encoding().as_ref().unwrap().as_str(), "utf-8");
    }

    #[test]
    fn numbers_keep_their_width() {
        assert_eq!(
            amqp_value(&serde_json::json!(7)),
            AMQPValue::LongInt(7),
            "small ints are I"
        );
        assert_eq!(
            amqp_value(&serde_json::json!(5_000_000_000i64)),
            AMQPValue::LongLongInt(5_000_000_000)
        );
        assert_eq!(amqp_value(&serde_json::json!(1.5)), AMQPValue::Double(1.5));
    }
}
